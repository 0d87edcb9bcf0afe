"""What an operator may do to an instrument, whichever interface the request arrives through.

OPC UA methods, `shuttled simulate` and tests all go through this one class, so the checks (unit
exists, protocol valid and fits the unit, parameters within bounds, command allowed in the
state, reason given) are made once, and every accepted change is journaled and checkpointed
before it is announced (ARCHITECTURE.md: the engine's state, persisted first, is the one source
of truth; interfaces mirror it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from drivers.clock import Clock
from protocols import CommandRefused, ParameterError, ProtocolInvalid, load_protocol_text
from protocols.model import Protocol
from protocols.state_machine import Command, RunState, apply_command
from shuttled.config import DaemonConfig, UnitConfig
from shuttled.engine import batch_binding
from shuttled.engine.load_checks import check_protocol_fits_unit
from shuttled.engine.operations_errors import OperationRefused
from shuttled.engine.persistence import RunPersistence
from shuttled.engine.protocol_approval import ProtocolApprovals, Signer
from shuttled.engine.unit_run import UnitRun
from shuttled.records.journal import Journal

__all__ = ["LoadResult", "OperationRefused", "Operations"]


@dataclass(frozen=True)
class LoadResult:
    template_id: str  # empty when the protocol was refused
    errors: list[str]  # `LINE:COL: message`, one per problem


class Operations:
    def __init__(
        self,
        config: DaemonConfig,
        runs: dict[str, UnitRun],
        journal: Journal,
        clock: Clock,
        persistence: RunPersistence,
        approvals: ProtocolApprovals | None = None,
    ) -> None:
        """`approvals`: the protocol library and its lifecycle (SPEC §12), where the daemon has
        an operator interface to sign with; None for the digital twin of an analysis."""
        self.config = config
        self.approvals = approvals
        self.runs = runs
        self.journal = journal
        self.clock = clock
        self.persistence = persistence
        # The cartridge each unit's controller reports installed (SPEC §12), for the check at
        # Start; the composition root wires the devices' view in, a test its own. None: unknown.
        self.installed_cartridge: Callable[[str], str | None] = lambda _unit: None
        self.unit_configs = {u.unit_id: u for u in config.units}
        self.templates: dict[str, dict[str, Protocol]] = {u: {} for u in self.unit_configs}
        self.last_loaded: dict[str, str] = {}
        for unit, template_id, text in journal.load_templates():
            if unit in self.templates:
                self._remember(unit, load_protocol_text(text, f"<template {template_id}>"))

    def _unit(self, unit: str) -> UnitConfig:
        config = self.unit_configs.get(unit)
        if config is None:
            known = ", ".join(self.unit_configs)
            raise OperationRefused(OperationRefused.ARGUMENT, f"no unit {unit!r} (units: {known})")
        return config

    @staticmethod
    def _reason(reason: str) -> str:
        if not reason or not reason.strip():
            raise OperationRefused(OperationRefused.ARGUMENT, "a reason is required")
        return reason.strip()

    def _remember(self, unit: str, protocol: Protocol) -> None:
        self.templates[unit][protocol.identity] = protocol
        self.last_loaded[unit] = protocol.identity

    def load_protocol(self, unit: str, text: str, user: str) -> LoadResult:
        """Never fails on a bad protocol: the errors are the answer (SPEC §5 LoadProtocol)."""
        unit_config = self._unit(unit)
        try:
            protocol = load_protocol_text(text, "<LoadProtocol>")
        except ProtocolInvalid as invalid:
            return LoadResult("", [e.located for e in invalid.errors])
        problems = check_protocol_fits_unit(protocol, unit_config)
        if problems:
            return LoadResult("", [f"1:1: {problem}" for problem in problems])
        if self.approvals is not None:
            try:
                self.approvals.register(protocol, user)
            except OperationRefused as conflict:  # same name@version, other content
                return LoadResult("", [f"1:1: {conflict.message}"])
        self.journal.record_template(unit, protocol.identity, protocol.text, user, self.clock.now())
        self._remember(unit, protocol)
        return LoadResult(protocol.identity, [])

    def start(
        self,
        unit: str,
        template_id: str | None,
        parameters: dict[str, float],
        reason: str,
        user: str,
        *,
        batch_id: str | None = None,
        cartridge_id: str | None = None,
        signer: Signer | None = None,
    ) -> str:
        """A new run, bound to its batch and the installed cartridge (SPEC §12, batch_binding:
        required with a `performed` signature in GMP mode, optional outside it)."""
        self._unit(unit)
        reason = self._reason(reason)
        template_id = template_id or self.last_loaded.get(unit)
        protocol = self.templates[unit].get(template_id or "")
        if protocol is None and template_id:
            protocol = self._from_library(unit, template_id, user)
        if protocol is None:
            loaded = ", ".join(self.templates[unit]) or "none"
            raise OperationRefused(
                OperationRefused.ARGUMENT,
                f"protocol {template_id!r} is not loaded on {unit} (loaded: {loaded})",
            )
        try:
            resolved = protocol.resolve_parameters(parameters)
        except ParameterError as error:
            raise OperationRefused(OperationRefused.ARGUMENT, error.message) from None
        run = self.runs[unit]
        if run.state != RunState.IDLE:
            raise OperationRefused(
                OperationRefused.STATE,
                f"Start is not allowed in state {run.state.value} (allowed in: IDLE)",
            )
        if self.approvals is not None:
            self.approvals.check_startable(protocol.identity)
        elif self.config.gmp:
            raise OperationRefused(OperationRefused.STATE,
                                   "GMP mode needs the protocol library (an operator interface)")
        binding = batch_binding.bind(
            unit, batch_id, cartridge_id, self.installed_cartridge(unit), self.config.gmp
        )
        batch_binding.check_performed(signer, self.config.gmp, "Start")
        now = self.clock.now()
        run_id, number = self.journal.new_run_id(self.config.instrument_id, unit)
        if signer is not None:  # signed before the run exists: a failure starts nothing
            record = batch_binding.run_record(run_id, binding, protocol.identity, resolved)
            self._sign(batch_binding.RUN_RECORD_KIND, run_id, record, signer, unit)
        self.journal.record_run_start(
            run_id, number, unit, protocol.identity, protocol.text, resolved, now,
            batch_id=binding.batch_id, cartridge_id=binding.cartridge_id,
        )
        run.start(protocol, resolved, run_id, now, reason=reason, user=user)
        run.batch_id, run.cartridge_id = binding.batch_id, binding.cartridge_id
        self.persistence.persist([run], now, force=True)
        return run_id

    def _sign(self, kind: str, run_id: str, record: dict, signer: Signer, unit: str) -> None:
        """A `performed` signature in the signature book, chained into the audit trail."""
        if self.approvals is None:
            raise OperationRefused(OperationRefused.STATE,
                                   "signing needs the signature book (an operator interface)")
        self.approvals.signatures.sign(
            record_kind=kind, record_id=run_id, record_sha256=batch_binding.record_sha256(record),
            signer=signer.name, role=signer.role, full_name=signer.full_name,
            meaning=signer.meaning, comment=signer.comment, unit=unit,
        )

    def _from_library(self, unit: str, identity: str, user: str) -> Protocol | None:
        """A protocol imported or loaded elsewhere on this instrument starts on any unit it
        fits, without loading the file again: the library's text is the approved one."""
        if self.approvals is None:
            return None
        entry = self.approvals.library.get(identity)
        if entry is None or not entry.intact:
            return None
        result = self.load_protocol(unit, entry.text, user)
        if result.template_id != identity:
            raise OperationRefused(OperationRefused.ARGUMENT,
                                   f"{identity} does not fit {unit}: {'; '.join(result.errors)}")
        return self.templates[unit][identity]

    def command(
        self, unit: str, command: Command, reason: str, user: str, signer: Signer | None = None
    ) -> None:
        """Hold, Restart, Stop, Abort or Reset; in GMP mode Abort is signed `performed`."""
        self._unit(unit)
        reason = self._reason(reason)
        run = self.runs[unit]
        now = self.clock.now()
        try:
            if command == Command.ABORT:
                batch_binding.check_performed(signer, self.config.gmp, "Abort")
                if signer is not None:
                    apply_command(run.state, command)  # refused before anything is signed
                    record = batch_binding.abort_record(run.run_id or "", run.batch_id, reason)
                    self._sign(batch_binding.ABORT_RECORD_KIND, run.run_id or "", record, signer,
                               unit)
            run.command(command, reason, now, user=user)
        except CommandRefused as refused:
            raise OperationRefused(OperationRefused.STATE, refused.reason) from None
        self.persistence.persist([run], now, force=True)
