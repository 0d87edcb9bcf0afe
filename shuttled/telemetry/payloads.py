"""The JSON payloads of SPEC §6, built from plain values (pure: no I/O, no clock).

Historians key on source timestamps, so `ts` is always the moment the value was measured or the
event happened (ISO-8601 UTC with milliseconds), never the moment of publishing, which after an
outage can be hours later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shuttled.engine.unit_run import RunEvent, UnitRun


def iso_ts(epoch_s: float) -> str:
    """`2026-01-31T12:00:00.123Z`."""
    stamp = datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def number(value: float) -> float | None:
    """JSON has no NaN: a value that is not there is null."""
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else round(value, 6)


@dataclass(frozen=True, slots=True)
class Topics:
    """`<prefix>/<instrument>/...`; one place that knows the layout."""

    prefix: str
    instrument: str

    @property
    def status(self) -> str:
        return f"{self.prefix}/{self.instrument}/status"

    def state(self, unit: str) -> str:
        return f"{self.prefix}/{self.instrument}/{unit}/state"

    def telemetry(self, unit: str) -> str:
        return f"{self.prefix}/{self.instrument}/{unit}/telemetry"

    def events(self, unit: str) -> str:
        return f"{self.prefix}/{self.instrument}/{unit}/events"

    @property
    def instrument_events(self) -> str:
        """Events of the instrument as a whole (audit anchors), beside the units' own."""
        return f"{self.prefix}/{self.instrument}/events"


def status_payload(online: bool, epoch_s: float, version: str, units: list[str]) -> dict:
    return {"online": online, "ts": iso_ts(epoch_s), "version": version, "units": units}


def state_of(run: UnitRun) -> tuple[str, str | None, str | None, str | None, str]:
    """What the retained state topic shows; a change in it is what triggers a publish."""
    phase = run.phase
    return (
        run.state.value,
        phase.name if phase is not None else None,
        run.run_id,
        run.protocol.identity if run.protocol is not None else None,
        run.hold_reason,
    )


def state_payload(state: tuple, epoch_s: float) -> dict:
    value, phase, run_id, protocol, hold_reason = state
    return {
        "ts": iso_ts(epoch_s),
        "state": value,
        "phase": phase,
        "run_id": run_id,
        "protocol": protocol,
        "hold_reason": hold_reason,
    }


def telemetry_payload(seq: int, epoch_s: float, values: dict[str, float], quality: str) -> dict:
    """`historical` is set when the message leaves the outbox, not here (see Publisher)."""
    payload: dict[str, Any] = {"ts": iso_ts(epoch_s), "seq": seq}
    payload.update({key: number(value) for key, value in values.items()})
    payload["quality"] = quality
    return payload


def run_event_payload(event: RunEvent, run_id: str | None, epoch_s: float) -> dict:
    """A state change, phase, step or engine alarm; operator actions carry `user` and `reason`.

    The engine records a command as `<command>: <reason>` (a start as `start <protocol>:
    <reason>`), so the split gives a historian the action and the reason as separate fields.
    """
    payload: dict[str, Any] = {
        "ts": iso_ts(epoch_s),
        "type": event.kind,
        "state": event.state.value,
        "run_id": run_id,
        "detail": event.detail,
        "user": event.user,
    }
    if event.user != "system" and event.kind == "state":
        action, _, reason = event.detail.partition(": ")
        payload["action"] = action.split(" ", 1)[0]
        payload["reason"] = reason
    return payload


def anchor_event_payload(anchor: dict[str, Any]) -> dict:
    """A signed audit anchor (SPEC §12) as written to `audit-anchors`: with these fields a copy
    kept off the instrument can be checked against the instrument's public key."""
    fields = ("count", "hash", "utc", "key", "previous", "signature")
    return {"ts": anchor["utc"], "type": "audit_anchor", **{k: anchor[k] for k in fields},
            "user": "system"}


def alarm_event_payload(
    name: str, active: bool, message: str, run_id: str | None, epoch_s: float
) -> dict:
    return {
        "ts": iso_ts(epoch_s),
        "type": "alarm",
        "alarm": name,
        "active": active,
        "run_id": run_id,
        "detail": message,
        "user": "system",
    }
