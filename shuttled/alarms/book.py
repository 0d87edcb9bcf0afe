"""The daemon's one alarm model: what the control loop raises and clears, with its lifecycle.

The loop keeps deciding whether a condition is present (`ControlLoop.alarms`, every tick); the
book turns each tick's set into ISA-18.2 transitions (SPEC §13), takes operators' acknowledgements
and shelves, expires shelves on the daemon's clock and suppresses by design the alarms of
devices an idle unit does not use. Each transition is journaled (fsynced) first, then audited,
then handed to the listeners (MQTT, OPC UA Alarms & Conditions), in that order and in the
order it happened.

A restart neither loses nor repeats an alarm: the lifecycle is restored from the journal, and an
alarm that was active is not cleared until the loop has had `settle_syncs` ticks to see it
again (a pump's latched alarm is only surveyed every few ticks): seen again, it simply carries
on as the same occurrence; not seen by then, it clears once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from shuttled.alarms.model import (
    IDLE_STATES,
    Alarm,
    AlarmRefused,
    Transition,
    severity_of,
    suppressible,
)
from shuttled.records.alarm_journal import AlarmJournal

log = structlog.get_logger("shuttled.alarms")

DEFAULT_MAX_SHELVE_S = 8 * 3600.0
SETTLE_SYNCS = 3
Listener = Callable[[list[Transition]], None]
UnitStates = Mapping[str, tuple[str, str | None]]  # unit -> (run state, run id)


class ClockLike(Protocol):
    def now(self) -> float: ...
    def to_epoch(self, t: float) -> float: ...


class AuditLike(Protocol):
    def append_many(self, entries: list[dict[str, Any]]) -> Any: ...


# The audit record's method for each transition; an operator's call is audited under the name
# of the OPC UA method it called (Acknowledge, TimedShelve2...), passed in by the caller.
AUDIT_METHODS = {
    "raised": "AlarmRaised", "cleared": "AlarmCleared", "shelve_expired": "AlarmShelveExpired",
    "unshelved": "AlarmUnshelved", "suppressed": "AlarmSuppressed",
    "unsuppressed": "AlarmUnsuppressed",
}  # fmt: skip


class AlarmBook:
    def __init__(
        self,
        journal_path: Path,
        clock: ClockLike,
        max_shelve_s: float = DEFAULT_MAX_SHELVE_S,
        audit: AuditLike | None = None,
        settle_syncs: int = SETTLE_SYNCS,
    ) -> None:
        self.clock = clock
        self.max_shelve_s = max_shelve_s
        self.audit = audit
        self.settle_syncs = settle_syncs
        self._journal = AlarmJournal(journal_path)
        self.alarms: dict[tuple[str, str], Alarm] = {}
        for data in self._journal.load_states():
            try:
                alarm = Alarm.from_json(data)
            except TypeError:
                continue
            self.alarms[(alarm.unit, alarm.name)] = alarm
        self._seq = self._journal.last_seq()
        self._unconfirmed = {key for key, alarm in self.alarms.items() if alarm.active}
        self._syncs = 0
        self._units: dict[str, tuple[str, str | None]] = {}
        self._listeners: list[Listener] = []
        if self._unconfirmed:
            log.info("alarms restored", active=len(self._unconfirmed),
                     current=sum(a.current for a in self.alarms.values()))

    def close(self) -> None:
        self._journal.close()

    def subscribe(self, listener: Listener) -> None:
        """Called with every batch of transitions, after they are journaled and audited."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # --- what the control loop says, every tick -----

    def sync(
        self, now: float, active: Mapping[str, Mapping[str, str]], units: UnitStates
    ) -> list[Transition]:
        """This tick's active alarms per unit (name -> message) and each unit's run: raise,
        clear, suppress or unsuppress, and expire shelves. Returns the transitions."""
        self._units.update(units)
        self._syncs += 1
        settling = self._syncs <= self.settle_syncs
        changes: list[Transition] = []
        for unit, names in active.items():
            for name, message in names.items():
                key = (unit, name)
                alarm = self.alarms.get(key)
                self._unconfirmed.discard(key)
                if alarm is None:
                    alarm = self.alarms[key] = Alarm(unit, name, severity_of(name))
                alarm.message = message
                if not alarm.active:
                    changes.append(self._raise(alarm, now))
        for key, alarm in self.alarms.items():
            unit, name = key
            if not alarm.active or unit not in active or name in active[unit]:
                continue
            if settling and key in self._unconfirmed:
                continue
            self._unconfirmed.discard(key)
            changes.extend(self._clear(alarm, now))
        changes.extend(self._suppression(now))
        changes.extend(self.expire(now, commit=False))
        self._commit(changes)
        return changes

    def _raise(self, alarm: Alarm, now: float) -> Transition:
        alarm.active, alarm.acked = True, False
        alarm.acked_by = alarm.ack_comment = ""
        alarm.occurrence += 1
        alarm.raised_at = now
        alarm.run_id = self._units.get(alarm.unit, ("", None))[1]
        alarm.suppressed = self._idle(alarm.unit) and suppressible(alarm.name)
        # The loop has logged it (a warning); here only the lifecycle's view, for debugging.
        log.debug("alarm raised", unit=alarm.unit, alarm=alarm.name, severity=alarm.severity,
                  suppressed=alarm.suppressed)
        return self._transition("raised", alarm, now)

    def _clear(self, alarm: Alarm, now: float) -> list[Transition]:
        alarm.active = False
        if alarm.suppressed:  # never annunciated, so nobody needs to acknowledge it
            alarm.acked = True
        log.debug("alarm cleared", unit=alarm.unit, alarm=alarm.name, state=alarm.state)
        changes = [self._transition("cleared", alarm, now)]
        if alarm.shelve_kind == "oneshot":  # a one-shot shelve lasts while the alarm does
            self._end_shelve(alarm)
            changes.append(self._transition("unshelved", alarm, now))
        return changes

    def _idle(self, unit: str) -> bool:
        return self._units.get(unit, ("IDLE", None))[0] in IDLE_STATES

    def _suppression(self, now: float) -> list[Transition]:
        changes = []
        for alarm in self.alarms.values():
            if not alarm.current or not suppressible(alarm.name):
                continue
            should = self._idle(alarm.unit)
            if should and not alarm.suppressed and alarm.active and alarm.acked:
                continue  # already seen: suppression only spares operators what they did not see
            if should != alarm.suppressed:
                alarm.suppressed = should
                if should and not alarm.active:
                    alarm.acked = True
                changes.append(self._transition("suppressed" if should else "unsuppressed",
                                                alarm, now))
        return changes

    def expire(self, now: float, *, commit: bool = True) -> list[Transition]:
        """End every shelve whose time is up: an alarm still active is unacknowledged again
        (it is annunciated as if new); one that cleared meanwhile goes back to normal."""
        changes = []
        for alarm in self.alarms.values():
            if alarm.shelved_until is None or alarm.shelved_until > now:
                continue
            self._end_shelve(alarm)
            if alarm.active:
                alarm.acked = False
                alarm.acked_by = alarm.ack_comment = ""
            else:
                alarm.acked = True
            log.info("alarm shelve expired", unit=alarm.unit, alarm=alarm.name, state=alarm.state)
            changes.append(self._transition("shelve_expired", alarm, now))
        if commit:
            self._commit(changes)
        return changes

    @staticmethod
    def _end_shelve(alarm: Alarm) -> None:
        alarm.shelved_until = None
        alarm.shelve_kind = alarm.shelved_by = alarm.shelve_reason = ""

    # --- what operators do -----

    def find(self, unit: str, name: str) -> Alarm:
        alarm = self.alarms.get((unit, name))
        if alarm is None or not alarm.current:
            raise AlarmRefused(AlarmRefused.UNKNOWN, f"no alarm {name} on {unit}")
        return alarm

    def acknowledge(
        self, unit: str, name: str, comment: str, user: str, role: str,
        method: str = "Acknowledge",
    ) -> Transition:
        """Say "seen": active-unacknowledged -> acknowledged, returned-unacknowledged -> normal."""
        alarm = self.find(unit, name)
        if alarm.acked:
            raise AlarmRefused(AlarmRefused.ALREADY_ACKED,
                               f"{name} on {unit} is already acknowledged")
        now = self.clock.now()
        alarm.acked, alarm.acked_by, alarm.ack_comment = True, user, comment
        change = self._transition("acknowledged", alarm, now, user, role, comment, method)
        self._commit([change])
        return change

    def shelve(
        self, unit: str, name: str, seconds: float | None, reason: str, user: str, role: str,
        method: str = "TimedShelve",
    ) -> Transition:
        """Shelve for `seconds` (at most `max_shelve_s`), or one-shot (None): until the alarm
        clears, and never longer than `max_shelve_s` either."""
        alarm = self.find(unit, name)
        if alarm.shelved:
            raise AlarmRefused(AlarmRefused.ALREADY_SHELVED, f"{name} on {unit} is already "
                               f"shelved ({alarm.shelve_kind})")
        if seconds is not None and not 0.0 < seconds <= self.max_shelve_s:
            raise AlarmRefused(AlarmRefused.SHELVING_TIME,
                               f"shelving time {seconds:g} s is not within (0, "
                               f"{self.max_shelve_s:g}] s (max_shelve_s)")
        now = self.clock.now()
        alarm.shelved_until = now + (self.max_shelve_s if seconds is None else seconds)
        alarm.shelve_kind = "oneshot" if seconds is None else "timed"
        alarm.shelved_by, alarm.shelve_reason = user, reason
        change = self._transition("shelved", alarm, now, user, role, reason, method)
        self._commit([change])
        return change

    def unshelve(
        self, unit: str, name: str, reason: str, user: str, role: str, method: str = "Unshelve"
    ) -> Transition:
        alarm = self.find(unit, name)
        if not alarm.shelved:
            raise AlarmRefused(AlarmRefused.NOT_SHELVED, f"{name} on {unit} is not shelved")
        self._end_shelve(alarm)
        change = self._transition("unshelved", alarm, self.clock.now(), user, role, reason,
                                  method)
        self._commit([change])
        return change

    # --- reading -----

    def current(self, unit: str | None = None, everything: bool = False) -> list[Alarm]:
        """The current list, most severe first: what needs attention (active, or returned
        and unacknowledged); `everything` adds the shelved and the suppressed."""
        found = [
            a for a in self.alarms.values()
            if a.current and (unit is None or a.unit == unit)
            and (everything or not (a.shelved or a.suppressed))
        ]  # fmt: skip
        return sorted(found, key=lambda a: (-a.severity, a.unit, a.name))

    def utc(self, t: float | None) -> str | None:
        """An instant of the daemon's clock as ISO-8601 UTC with milliseconds."""
        if t is None:
            return None
        moment = datetime.fromtimestamp(self.clock.to_epoch(t), UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def describe(self, alarm: Alarm) -> dict[str, Any]:
        """One alarm as shuttlectl, MQTT and the OPC UA list show it (SPEC §13's fields)."""
        return {
            "unit": alarm.unit, "name": alarm.name, "severity": alarm.severity,
            "message": alarm.message, "state": alarm.state, "active": alarm.active,
            "acked": alarm.acked, "shelved": self.utc(alarm.shelved_until),
            "shelve_kind": alarm.shelve_kind, "shelved_by": alarm.shelved_by,
            "shelve_reason": alarm.shelve_reason, "suppressed": alarm.suppressed,
            "acked_by": alarm.acked_by, "ack_comment": alarm.ack_comment,
            "raised": self.utc(alarm.raised_at), "changed": self.utc(alarm.changed_at),
            "occurrence": alarm.occurrence, "run_id": alarm.run_id,
        }  # fmt: skip

    # --- making it durable, then telling -----

    def _transition(
        self, kind: str, alarm: Alarm, now: float, user: str = "system", role: str = "system",
        comment: str = "", method: str = "",
    ) -> Transition:
        self._seq += 1
        alarm.changed_at = now
        snapshot = replace(alarm, extra={"method": method or AUDIT_METHODS.get(kind, kind)})
        return Transition(self._seq, now, self.utc(now) or "", kind, snapshot, user, role,
                          comment)

    def _commit(self, changes: list[Transition]) -> None:
        if not changes:
            return
        states = {(c.alarm.unit, c.alarm.name): c.alarm for c in changes}
        self._journal.record(
            [self.alarms[key].to_json() for key in states], [c.to_json() for c in changes]
        )
        if self.audit is not None:
            self.audit.append_many([self._audit_entry(change) for change in changes])
        for listener in list(self._listeners):
            try:
                listener(changes)
            except Exception:  # a view must never stop the model
                log.exception("alarm listener failed")

    def _audit_entry(self, change: Transition) -> dict[str, Any]:
        a = change.alarm
        arguments: dict[str, Any] = {"alarm": a.name, "occurrence": a.occurrence,
                                     "severity": a.severity, "state": a.state}
        if a.run_id:
            arguments["run_id"] = a.run_id
        if change.kind == "shelved":
            arguments["shelved_until"] = self.utc(a.shelved_until)
            arguments["shelve_kind"] = a.shelve_kind
        return {
            "user": change.user, "role": change.role, "unit": a.unit,
            "method": a.extra["method"], "arguments": arguments, "reason": change.comment,
            "result": "Good", "detail": f"{change.kind}: {a.message}" if a.message else change.kind,
        }  # fmt: skip
