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

    def alarms(self, unit: str) -> str:
        """Retained: the unit's current alarm list (SPEC §13)."""
        return f"{self.prefix}/{self.instrument}/{unit}/alarms"

    @property
    def instrument_events(self) -> str:
        """Events of the instrument as a whole (audit anchors), beside the units' own."""
        return f"{self.prefix}/{self.instrument}/events"


def status_payload(online: bool, epoch_s: float, version: str, units: list[str]) -> dict:
    return {"online": online, "ts": iso_ts(epoch_s), "version": version, "units": units}


def state_of(
    run: UnitRun,
) -> tuple[str, str | None, str | None, str | None, str, str | None]:
    """What the retained state topic shows; a change in it is what triggers a publish."""
    phase = run.phase
    return (
        run.state.value,
        phase.name if phase is not None else None,
        run.run_id,
        run.protocol.identity if run.protocol is not None else None,
        run.hold_reason,
        run.batch_id,
    )


def state_payload(state: tuple, epoch_s: float) -> dict:
    """`batch`: the chain-of-identity id the run is bound to (SPEC §12), null if none."""
    value, phase, run_id, protocol, hold_reason, *rest = state
    return {
        "ts": iso_ts(epoch_s),
        "state": value,
        "phase": phase,
        "run_id": run_id,
        "protocol": protocol,
        "hold_reason": hold_reason,
        "batch": rest[0] if rest else None,
    }


def telemetry_payload(
    seq: int, epoch_s: float, values: dict[str, float], quality: str, batch: str | None = None
) -> dict:
    """`historical` is set when the message leaves the outbox, not here (see Publisher);
    `batch` is the bound run's chain-of-identity id (SPEC §12), null without one."""
    payload: dict[str, Any] = {"ts": iso_ts(epoch_s), "seq": seq}
    payload.update({key: number(value) for key, value in values.items()})
    payload["quality"] = quality
    payload["batch"] = batch
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


def alarm_transition_payload(transition: dict[str, Any], alarm: dict[str, Any]) -> dict:
    """One alarm lifecycle transition (SPEC §13) on `<unit>/events`. `type`, `alarm`, `active`,
    `run_id`, `detail` and `user` are as before the lifecycle existed (raised and cleared), so
    older consumers keep working; `transition`, `state`, `severity`, `acked`, `shelved`,
    `suppressed` and `comment` are the lifecycle's."""
    return {
        "ts": transition["utc"], "type": "alarm", "alarm": transition["name"],
        "active": transition["active"], "run_id": transition["run_id"],
        "detail": transition["message"], "user": transition["user"],
        "transition": transition["kind"], "state": transition["state"],
        "severity": transition["severity"], "acked": transition["acked"],
        "shelved": alarm["shelved"], "suppressed": transition["suppressed"],
        "comment": transition["comment"], "occurrence": transition["occurrence"],
    }  # fmt: skip


def alarm_list_payload(epoch_s: float, alarms: list[dict[str, Any]]) -> dict:
    """The retained `<unit>/alarms`: every current alarm of the unit (shelved and suppressed
    included, flagged), most severe first."""
    return {"ts": iso_ts(epoch_s), "alarms": alarms}
