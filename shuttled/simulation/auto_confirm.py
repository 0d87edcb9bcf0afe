"""The simulation answers operator steps itself (SPEC §12), so `shuttled simulate --protocol …`
and `shuttlectl analyze` run unattended.

Nothing is hidden: every answer goes through the same checks, signatures and events as a person's
(`OperatorSteps`), signed by the simulation's own accounts — `sim` performs, `sim-verifier`
verifies, two different accounts as a verified step demands — with the comment "answered by the
simulation" on each signature and `"auto": true` in the journaled event, so a batch record can
never pass a simulated answer off as a person's.

Values come from `--confirm NAME=VALUE`, else are made up deterministically from the seed, the
unit and the step (`SIM-LOT-3F2A9C`): the same seed gives the same record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from shuttled.engine.operations import Operations
from shuttled.engine.operator_steps import OPERATOR_STEP, OperatorSteps, WaitingStep
from shuttled.engine.unit_run import UnitRun

SIM_PERFORMER = ("sim", "supervisor", "Simulation supervisor")
SIM_VERIFIER = ("sim-verifier", "operator", "Simulation verifier")


def made_up_value(seed: int, unit: str, step: WaitingStep, name: str) -> str:
    digest = hashlib.sha256(f"{seed}/{unit}/{step.phase}/{step.step}/{name}".encode())
    return f"SIM-{name.upper().replace('_', '-')}-{digest.hexdigest()[:6].upper()}"


class AutoConfirm:
    """An after-tick observer answering every step the given units wait at."""

    def __init__(self, operations: Operations, units: list[str], values: Mapping[str, str],
                 seed: int) -> None:
        self.steps = OperatorSteps(operations)
        self.units = list(units)
        self.values = dict(values)
        self.seed = seed
        self.answered = 0

    def value_of(self, unit: str) -> Callable[[WaitingStep, str], str]:
        def value(step: WaitingStep, name: str) -> str:
            return self.values.get(name) or made_up_value(self.seed, unit, step, name)
        return value

    def answer(self) -> None:
        for unit in self.units:
            if self.steps.answer_automatically(unit, self.value_of(unit), SIM_PERFORMER,
                                               SIM_VERIFIER):
                self.answered += 1

    def __call__(self, _daemon: object) -> None:
        self.answer()


def operator_steps_of(run: UnitRun) -> list[dict[str, Any]]:
    """Every step the run waited at, from its events: phase, step, prompt, recorded names,
    whether a second person verifies, when (hours into the run) and whether it was answered by
    the simulation — what `shuttlectl analyze` tells the people who will run the protocol."""
    steps: list[dict[str, Any]] = []
    for event in run.events:
        if event.kind != OPERATOR_STEP:
            continue
        detail = json.loads(event.detail)
        if detail["action"] == "waiting":
            steps.append({"phase": detail["phase"], "step": detail["step"],
                          "prompt": detail["prompt"], "record": detail["record"],
                          "verify": detail["verify"],
                          "at_h": round((event.at - run.run_started_at) / 3600.0, 3),
                          "auto": False})
        elif steps and detail["record_id"].endswith(f"/{steps[-1]['step']}"):
            steps[-1]["auto"] = bool(detail["auto"])
    return steps
