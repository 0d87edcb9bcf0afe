"""A run's state as a JSON-able record, so it survives the daemon (kill -9, power loss).

The checkpoint holds the exact protocol text (re-validated on restore, and its identity compared,
so a run never continues on a different protocol than it started), the resolved parameters, the
phase and its elapsed process time, and the progress of a transfer by the pump's own counter.

On restore, every run that was active comes back holding with the reason `daemon restarted`
(SPEC §4): the pumps are stopped on the first tick, temperature control goes on, and only an
operator's Restart continues the run — with only the remainder of an interrupted transfer.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from protocols import ProtocolInvalid, load_protocol_text
from protocols.state_machine import RunState
from shuttled.engine.operator_steps import WaitingStep
from shuttled.engine.transfer import TransferProgress
from shuttled.engine.unit_run import UnitRun

DAEMON_RESTARTED = "daemon restarted"
FORMAT = 1


class CheckpointError(Exception):
    pass


def checkpoint_of(run: UnitRun) -> dict[str, Any]:
    protocol = run.protocol
    return {
        "format": FORMAT,
        "unit": run.unit_id,
        "state": run.state.value,
        "run_id": run.run_id,
        "protocol_text": protocol.text if protocol else None,
        "protocol_identity": protocol.identity if protocol else None,
        "parameters": run.parameters,
        "hold_reason": run.hold_reason,
        "phase_index": run.phase_index,
        "phase_elapsed_s": run.phase_elapsed_s,
        "run_started_at": _number(run.run_started_at),
        "ended_at": _number(run.ended_at),
        "step_index": run.step_index,
        "transfer": asdict(run.transfer) if run.transfer else None,
        "delivered_ul": run.delivered_ul,
        # Chain of identity (SPEC §12): a restarted daemon keeps the run bound to its batch and
        # cartridge, so the cartridge check goes on; absent in checkpoints from before batches.
        "batch_id": run.batch_id,
        "cartridge_id": run.cartridge_id,
        # An operator step waiting for people (and its confirmation so far): after kill -9 the
        # run waits at the same step, and a given confirmation is not asked for again.
        "operator_step": run.operator_step.to_json() if run.operator_step else None,
    }


def restore_run(data: dict[str, Any], now: float) -> UnitRun:
    """The run as it was, with an active run put on hold because the daemon restarted."""
    if data.get("format") != FORMAT:
        raise CheckpointError(f"unknown checkpoint format {data.get('format')!r}")
    run = UnitRun(data["unit"])
    text = data.get("protocol_text")
    if text is not None:
        try:
            protocol = load_protocol_text(text, f"<journal {data.get('run_id')}>")
        except ProtocolInvalid as invalid:
            raise CheckpointError(f"journaled protocol no longer loads: {invalid}") from None
        if protocol.identity != data.get("protocol_identity"):
            raise CheckpointError(
                f"journaled protocol is {protocol.identity}, expected {data['protocol_identity']}"
            )
        run.protocol = protocol
    run.state = RunState(data["state"])
    run.run_id = data.get("run_id")
    run.parameters = {k: float(v) for k, v in data.get("parameters", {}).items()}
    run.hold_reason = data.get("hold_reason", "")
    run.phase_index = int(data.get("phase_index", -1))
    run.phase_elapsed_s = float(data.get("phase_elapsed_s", 0.0))
    run.run_started_at = _float(data.get("run_started_at"))
    run.ended_at = _float(data.get("ended_at"))
    run.step_index = int(data.get("step_index", 0))
    transfer = data.get("transfer")
    run.transfer = TransferProgress(**transfer) if transfer else None
    run.delivered_ul = {k: float(v) for k, v in data.get("delivered_ul", {}).items()}
    run.batch_id = data.get("batch_id")
    run.cartridge_id = data.get("cartridge_id")
    waiting = data.get("operator_step")
    run.operator_step = WaitingStep.from_json(waiting) if waiting else None
    run.last_now = now
    if run.state in (RunState.RUNNING, RunState.RESTARTING, RunState.HOLDING, RunState.HELD):
        run.hold_after_restart(now, DAEMON_RESTARTED)
    return run


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)
