"""Operator steps (SPEC §12): a run that waits for people, and their signed answers.

A protocol's `confirm` step stops the phase's step sequence — the run stays RUNNING, temperature
control goes on, no transfer starts — until an operator confirms it (`Confirm` with a value for
every name in `record` and a `performed` signature) and, with `verify: true`, until a second,
different user verifies it (`verified`). The waiting step is part of the run's checkpoint, so it
survives kill -9 and a restart; a hold while waiting is any hold.

The pure part (`wait_at`, `check_confirm`, `apply_confirm`, ...) works on the `UnitRun` alone, so
the engine stays testable without an interface; `OperatorSteps` is the one place where an answer
is checked, signed in the signature book and checkpointed, whichever interface it came from (the
OPC UA methods, `shuttled simulate` answering by itself, the analysis' twin).

Every announcement and answer is a run event of kind `operator_step` whose detail is JSON (see
`step_detail`): the journal, MQTT and the batch record read the same facts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from protocols.model import Confirm
from protocols.state_machine import RunState
from shuttled.engine.operations_errors import OperationRefused
from shuttled.engine.protocol_approval import Signer
from shuttled.records.signatures import SignatureBook, canonical_sha256

if TYPE_CHECKING:
    from shuttled.engine.actions import Action
    from shuttled.engine.operations import Operations
    from shuttled.engine.unit_run import UnitRun

__all__ = [
    "OPERATOR_STEP",
    "RECORD_KIND",
    "OperatorSteps",
    "WaitingStep",
    "apply_confirm",
    "apply_verify",
    "check_confirm",
    "check_verify",
    "wait_at",
]

OPERATOR_STEP = "operator_step"  # RunEvent kind of every announcement and answer
RECORD_KIND = "operator_step"  # SignatureBook record kind; record id `run_id/phase/step`
MAX_VALUE = 200  # a lot number, a bag id: one line
ANSWERABLE = (RunState.RUNNING, RunState.HELD)  # a hold does not stop people from working


@dataclass
class WaitingStep:
    """The confirm step a run is waiting at, and its answer so far (JSON in the checkpoint)."""

    phase: str
    step: int  # index in the phase's steps
    prompt: str
    record: list[str]
    verify: bool
    since: float
    values: dict[str, str] | None = None  # set by Confirm
    performed_by: str = ""
    performed_auto: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # room for later fields, kept as is

    @property
    def confirmed(self) -> bool:
        return self.values is not None

    def record_id(self, run_id: str | None) -> str:
        return f"{run_id}/{self.phase}/{self.step}"

    def content(self, run_id: str | None) -> dict[str, Any]:
        """What the signatures bind to: change any of it and they show as broken."""
        return {"run_id": run_id, "phase": self.phase, "step": self.step,
                "prompt": self.prompt, "values": self.values or {}}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"] = None if math.isnan(self.since) else self.since
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WaitingStep:
        values = data.get("values")
        return cls(
            phase=str(data["phase"]), step=int(data["step"]), prompt=str(data["prompt"]),
            record=[str(n) for n in data.get("record", [])], verify=bool(data.get("verify")),
            since=math.nan if data.get("since") is None else float(data["since"]),
            values=None if values is None else {str(k): str(v) for k, v in values.items()},
            performed_by=str(data.get("performed_by", "")),
            performed_auto=bool(data.get("performed_auto", False)),
            extra=dict(data.get("extra", {})),
        )


def step_detail(run: UnitRun, waiting: WaitingStep, action: str, signer: Signer | None = None,
                auto: bool = False) -> str:
    """The event detail: JSON with `action` (waiting | performed | verified), `phase`, `step`,
    `prompt`, `record`, `verify`, `values`, `by`, `full_name`, `meaning`, `comment`, `auto` and
    `record_id` (the signatures' record id)."""
    return json.dumps({
        "action": action, "phase": waiting.phase, "step": waiting.step, "prompt": waiting.prompt,
        "record": waiting.record, "verify": waiting.verify, "values": waiting.values or {},
        "by": signer.name if signer else "", "full_name": signer.full_name if signer else "",
        "meaning": signer.meaning if signer else "", "comment": signer.comment if signer else "",
        "auto": auto, "record_id": waiting.record_id(run.run_id),
    }, sort_keys=True, ensure_ascii=False)


# --- the pure engine part -----


def wait_at(run: UnitRun, step: Confirm, now: float) -> list[Action]:
    """Called by the tick while the run's next step is `step`: announce it once (also after a
    restart, the restored waiting step is the same one and is not announced again). Nothing for
    the instrument to do: temperature control goes on by itself, no transfer starts."""
    phase = run.phase
    assert phase is not None
    waiting = run.operator_step
    if waiting is not None and (waiting.phase, waiting.step) == (phase.name, run.step_index):
        return []
    waiting = WaitingStep(phase.name, run.step_index, step.prompt, list(step.record),
                          step.verify, now)
    run.operator_step = waiting
    run._record(now, OPERATOR_STEP, run.state, step_detail(run, waiting, "waiting"))
    return []


def _waiting(run: UnitRun) -> WaitingStep:
    waiting = run.operator_step
    if waiting is None or run.state not in ANSWERABLE:
        raise OperationRefused(OperationRefused.STATE,
                               f"no operator step is waiting on {run.unit_id} "
                               f"(state {run.state.value})")
    return waiting


def check_confirm(run: UnitRun, values: Mapping[str, str], meaning: str) -> WaitingStep:
    """The waiting step if `values` answer it exactly; OperationRefused naming what is wrong."""
    waiting = _waiting(run)
    if waiting.confirmed:
        raise OperationRefused(OperationRefused.STATE,
                               f"'{waiting.prompt}' is already confirmed by "
                               f"{waiting.performed_by}; it waits for Verify")
    if meaning != "performed":
        raise OperationRefused(OperationRefused.ARGUMENT,
                               f"Confirm needs a 'performed' signature, not {meaning!r}")
    missing = [name for name in waiting.record if name not in values]
    extra = sorted(name for name in values if name not in waiting.record)
    if missing:
        raise OperationRefused(OperationRefused.ARGUMENT,
                               f"Values needs {', '.join(missing)} for '{waiting.prompt}'")
    if extra:
        expected = ", ".join(waiting.record) or "none"
        raise OperationRefused(OperationRefused.ARGUMENT,
                               f"Values has no place for {', '.join(extra)} "
                               f"(recorded here: {expected})")
    for name, value in values.items():
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_VALUE \
                or not value.isprintable():
            raise OperationRefused(OperationRefused.ARGUMENT,
                                   f"value of {name} must be printable text of 1-{MAX_VALUE} "
                                   "characters")
    return waiting


def check_verify(run: UnitRun, user: str, meaning: str) -> WaitingStep:
    waiting = _waiting(run)
    if not waiting.confirmed:
        raise OperationRefused(OperationRefused.STATE,
                               f"'{waiting.prompt}' is not confirmed yet: Confirm comes first")
    if not waiting.verify:
        raise OperationRefused(OperationRefused.STATE, f"'{waiting.prompt}' needs no Verify")
    if meaning != "verified":
        raise OperationRefused(OperationRefused.ARGUMENT,
                               f"Verify needs a 'verified' signature, not {meaning!r}")
    if user == waiting.performed_by:
        raise OperationRefused(OperationRefused.ARGUMENT,
                               f"{user} confirmed '{waiting.prompt}' and cannot also verify it: "
                               "a second, different person must")
    return waiting


def apply_confirm(run: UnitRun, values: Mapping[str, str], signer: Signer, now: float,
                  auto: bool = False) -> None:
    waiting = check_confirm(run, values, signer.meaning)
    waiting.values = {name: values[name].strip() for name in waiting.record}
    waiting.performed_by, waiting.performed_auto = signer.name, auto
    run._record(now, OPERATOR_STEP, run.state,
                step_detail(run, waiting, "performed", signer, auto), signer.name)
    if not waiting.verify:
        _done(run)


def apply_verify(run: UnitRun, signer: Signer, now: float, auto: bool = False) -> None:
    waiting = check_verify(run, signer.name, signer.meaning)
    run._record(now, OPERATOR_STEP, run.state,
                step_detail(run, waiting, "verified", signer, auto), signer.name)
    _done(run)


def _done(run: UnitRun) -> None:
    """The step is answered: the next tick goes on with the phase's next step."""
    run.operator_step = None
    run.step_index += 1


# --- checked, signed and persisted, for every interface -----

SIMULATION_COMMENT = "answered by the simulation"


class OperatorSteps:
    """Confirm and Verify on a unit: check, sign (signature book), apply, checkpoint."""

    def __init__(self, operations: Operations) -> None:
        self.operations = operations

    @property
    def signatures(self) -> SignatureBook | None:
        approvals = self.operations.approvals
        return approvals.signatures if approvals is not None else None

    def run(self, unit: str) -> UnitRun:
        self.operations._unit(unit)
        return self.operations.runs[unit]

    def confirm(self, unit: str, values: Mapping[str, str], signer: Signer,
                auto: bool = False) -> WaitingStep:
        run = self.run(unit)
        waiting = check_confirm(run, values, signer.meaning)
        content = dict(waiting.content(run.run_id),
                       values={n: values[n].strip() for n in waiting.record})
        self._sign(unit, run, waiting, content, signer)
        apply_confirm(run, values, signer, self.operations.clock.now(), auto)
        self._persist(run)
        return waiting

    def verify(self, unit: str, signer: Signer, auto: bool = False) -> WaitingStep:
        run = self.run(unit)
        waiting = check_verify(run, signer.name, signer.meaning)
        self._sign(unit, run, waiting, waiting.content(run.run_id), signer)
        apply_verify(run, signer, self.operations.clock.now(), auto)
        self._persist(run)
        return waiting

    def _sign(self, unit: str, run: UnitRun, waiting: WaitingStep, content: dict[str, Any],
              signer: Signer) -> None:
        """Written (and audited) before the run moves on: the signature is the evidence."""
        book = self.signatures
        if book is None:  # the analysis' twin: no operator interface, nothing to sign with
            return
        book.sign(record_kind=RECORD_KIND, record_id=waiting.record_id(run.run_id),
                  record_sha256=canonical_sha256(content), signer=signer.name, role=signer.role,
                  full_name=signer.full_name, meaning=signer.meaning, comment=signer.comment,
                  unit=unit)

    def _persist(self, run: UnitRun) -> None:
        self.operations.persistence.persist([run], self.operations.clock.now(), force=True)

    def answer_automatically(self, unit: str, value_of: Callable[[WaitingStep, str], str],
                             performer: tuple[str, str, str],
                             verifier: tuple[str, str, str]) -> bool:
        """Answer the step `unit` waits at as the simulation: `value_of(step, name)` for every
        recorded name, signed by the simulation accounts `(name, role, full name)` — a second
        one verifies — and marked `auto`. True if an answer was given."""
        run = self.operations.runs[unit]
        waiting = run.operator_step
        if waiting is None or run.state != RunState.RUNNING:
            return False
        if not waiting.confirmed:
            answer = {name: value_of(waiting, name) for name in waiting.record}
            self.confirm(unit, answer, Signer(*performer, "performed", SIMULATION_COMMENT),
                         auto=True)
        if run.operator_step is waiting and waiting.confirmed and waiting.verify:
            self.verify(unit, Signer(*verifier, "verified", SIMULATION_COMMENT), auto=True)
        return True
