"""What an operator may do to an instrument, whichever interface the request arrives through.

OPC UA methods, `shuttled simulate` and tests all go through this one class, so the checks (unit
exists, protocol valid and fits the unit, parameters within bounds, command allowed in the
state, reason given) are made once, and every accepted change is journaled and checkpointed
before it is announced (ARCHITECTURE.md: the engine's state, persisted first, is the one source
of truth; interfaces mirror it).
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.clock import Clock
from protocols import CommandRefused, ParameterError, ProtocolInvalid, load_protocol_text
from protocols.model import Protocol
from protocols.state_machine import Command, RunState
from shuttled.config import DaemonConfig, UnitConfig
from shuttled.engine.load_checks import check_protocol_fits_unit
from shuttled.engine.persistence import RunPersistence
from shuttled.engine.unit_run import UnitRun
from shuttled.records.journal import Journal


class OperationRefused(Exception):
    """A refused request; `kind` says why, in the terms OPC UA status codes need."""

    STATE = "state"  # BadInvalidState
    ARGUMENT = "argument"  # BadInvalidArgument

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


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
    ) -> None:
        self.config = config
        self.runs = runs
        self.journal = journal
        self.clock = clock
        self.persistence = persistence
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
    ) -> str:
        self._unit(unit)
        reason = self._reason(reason)
        template_id = template_id or self.last_loaded.get(unit)
        protocol = self.templates[unit].get(template_id or "")
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
        now = self.clock.now()
        run_id, number = self.journal.new_run_id(self.config.instrument_id, unit)
        self.journal.record_run_start(
            run_id, number, unit, protocol.identity, protocol.text, resolved, now
        )
        run.start(protocol, resolved, run_id, now, reason=reason, user=user)
        self.persistence.persist([run], now, force=True)
        return run_id

    def command(self, unit: str, command: Command, reason: str, user: str) -> None:
        """Hold, Restart, Stop, Abort or Reset."""
        self._unit(unit)
        reason = self._reason(reason)
        run = self.runs[unit]
        now = self.clock.now()
        try:
            run.command(command, reason, now, user=user)
        except CommandRefused as refused:
            raise OperationRefused(OperationRefused.STATE, refused.reason) from None
        self.persistence.persist([run], now, force=True)
