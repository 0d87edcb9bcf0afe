"""One alarm's ISA-18.2 lifecycle (SPEC §13), as plain data the whole daemon shares.

The control loop only knows whether a condition is present this tick (`ControlLoop.alarms`);
what an operator has seen, shelved or been spared by design is kept here, per (unit, alarm).
The states are those of ISA-18.2 and OPC UA Part 9: active-unacknowledged, acknowledged,
returned-to-normal-unacknowledged, normal; shelving and suppression-by-design sit on top.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ADVISORY, WARNING, CRITICAL = 200, 500, 800  # OPC UA severities 1–1000 (SPEC §13)

# The conditions that take the heater or the whole unit out of control are critical; a pump or
# the density probe stops a transfer or density control, which a hold makes safe: a warning.
_CRITICAL = frozenset({
    "OVER_TEMPERATURE", "TEMPERATURE_SENSOR_BAD", "TEMPERATURE_SENSOR_STALE",
    "BIOREACTOR_LOST", "HEATER_WRITE_REFUSED",
    "CARTRIDGE_CHANGED",  # another patient's cartridge, or none, under a bound run (SPEC §12)
})  # fmt: skip

ACTIVE_UNACKED = "ACTIVE_UNACKED"
ACTIVE_ACKED = "ACTIVE_ACKED"
RTN_UNACKED = "RTN_UNACKED"  # returned to normal, still unacknowledged
NORMAL = "NORMAL"

# Run states in which a unit uses neither its pumps nor its density probe (SPEC §13:
# "suppressed by design"); RunState values, so this module needs nothing of the engine.
IDLE_STATES = frozenset({"IDLE", "COMPLETE", "STOPPED", "ABORTED"})


def severity_of(name: str) -> int:
    """The severity of an alarm by its name (the loop's names are stable, SPEC §4)."""
    if name in _CRITICAL:
        return CRITICAL
    if name.startswith(("PUMP_", "PROBE_")):
        return WARNING
    return ADVISORY


def suppressible(name: str) -> bool:
    """An alarm of a device an idle unit does not use: its pumps and its density probe."""
    return name.startswith(("PUMP_", "PROBE_"))


@dataclass
class Alarm:
    """The lifecycle of one (unit, alarm). Times are the daemon clock's process seconds
    (`*_at`); `shelved_until` is process time too, so a virtual clock expires shelves."""

    unit: str
    name: str
    severity: int
    message: str = ""
    active: bool = False
    acked: bool = True
    suppressed: bool = False
    shelved_until: float | None = None
    shelve_kind: str = ""  # "timed" | "oneshot" | ""
    shelved_by: str = ""
    shelve_reason: str = ""
    acked_by: str = ""
    ack_comment: str = ""
    raised_at: float | None = None
    changed_at: float = 0.0
    occurrence: int = 0  # how many times it was raised; with `unit` and `name` it names one
    run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        if self.active:
            return ACTIVE_ACKED if self.acked else ACTIVE_UNACKED
        return NORMAL if self.acked else RTN_UNACKED

    @property
    def shelved(self) -> bool:
        return self.shelved_until is not None

    @property
    def current(self) -> bool:
        """In the current list: anything but normal (a shelved, cleared one waits its expiry)."""
        return self.state != NORMAL or self.shelved

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alarm:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class Transition:
    """One change of an alarm's lifecycle: what is audited, journaled, published on MQTT and
    sent as an OPC UA event. `alarm` is a copy of the lifecycle after the change."""

    seq: int
    at: float
    utc: str
    kind: str  # raised, cleared, acknowledged, shelved, unshelved, shelve_expired, suppressed...
    alarm: Alarm
    user: str = "system"
    role: str = "system"
    comment: str = ""

    def to_json(self) -> dict[str, Any]:
        a = self.alarm
        return {
            "seq": self.seq, "at": self.at, "utc": self.utc, "kind": self.kind, "unit": a.unit,
            "name": a.name, "run_id": a.run_id, "state": a.state, "severity": a.severity,
            "message": a.message, "active": a.active, "acked": a.acked,
            "suppressed": a.suppressed, "shelved_until": a.shelved_until,
            "occurrence": a.occurrence, "user": self.user, "role": self.role,
            "comment": self.comment,
        }  # fmt: skip


class AlarmRefused(Exception):
    """An operator's request the lifecycle does not allow; `kind` maps to a status code."""

    UNKNOWN = "unknown"
    ALREADY_ACKED = "already_acked"
    SHELVING_TIME = "shelving_time"
    ALREADY_SHELVED = "already_shelved"
    NOT_SHELVED = "not_shelved"
    ARGUMENT = "argument"

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
