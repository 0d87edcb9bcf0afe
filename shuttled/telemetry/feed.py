"""What happened this tick, turned into MQTT messages: telemetry, events and retained state.

Called once per control tick (ControlLoop.run_until's `on_tick`), so it reads the loop's arrays
right after the kernels wrote them and the runs right after the engine stepped them. Operator
commands arrive between ticks; their events are picked up at the next tick, in the engine's order.
One committed outbox transaction per tick holds every message of that tick and the new `seq`
values, so telemetry can never get ahead of its sequence numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from shuttled.control import safety
from shuttled.engine.unit_run import UnitRun
from shuttled.telemetry import payloads
from shuttled.telemetry.outbox import Outbox
from shuttled.telemetry.payloads import Topics

if TYPE_CHECKING:
    from shuttled.loop.control_loop import ControlLoop
    from shuttled.telemetry.publisher import Publisher


def quality_of(flags: int, temperature: float, alarms: dict[str, str]) -> str:
    """OPC UA's three: bad when the temperature is unusable, stale when a reading is frozen or a
    device is lost (values are then the last good ones), good otherwise."""
    if flags & safety.FLAG_BAD or math.isnan(temperature):
        return "bad"
    if flags & safety.FLAG_STALE or any(name.endswith("_LOST") for name in alarms):
        return "stale"
    return "good"


class TelemetryFeed:
    def __init__(
        self,
        topics: Topics,
        outbox: Outbox,
        publisher: Publisher,
        runs: dict[str, UnitRun],
        to_epoch: Callable[[float], float],
        period_s: float | None,
    ) -> None:
        self.topics = topics
        self.outbox = outbox
        self.publisher = publisher
        self.runs = runs
        self.to_epoch = to_epoch
        self.period_s = period_s
        self.seq = {unit: 0 for unit in runs} | outbox.sequences()
        self._event_cursor = dict.fromkeys(runs, 0)  # a restored run's events are this start's
        self._alarms: dict[str, dict[str, str]] = {unit: {} for unit in runs}
        # True once the alarm model publishes alarm events itself (Telemetry.attach_alarms).
        self.alarms_from_book = False
        self._states: dict[str, tuple] = {}
        self._last_telemetry = -math.inf

    def publish_states(self, now: float) -> None:
        """Retained state of every unit whose state differs from what was last published."""
        for unit, run in self.runs.items():
            state = payloads.state_of(run)
            if self._states.get(unit) != state:
                self._states[unit] = state
                self.publisher.set_retained(
                    self.topics.state(unit), payloads.state_payload(state, self.to_epoch(now))
                )

    def on_tick(self, loop: ControlLoop, now: float) -> None:
        messages: list[tuple[str, dict]] = []
        for unit, run in self.runs.items():
            messages.extend(self._run_events(unit, run))
            if not self.alarms_from_book:
                messages.extend(self._alarm_events(unit, run, loop.alarms.get(unit, {}), now))
        self.publish_states(now)
        sequences: dict[str, int] = {}
        due = self.period_s is None or now - self._last_telemetry >= self.period_s * 0.999
        if due:
            self._last_telemetry = now
            for unit in self.runs:
                self.seq[unit] += 1
                sequences[unit] = self.seq[unit]
                messages.append((self.topics.telemetry(unit), self._telemetry(loop, unit, now)))
        self.outbox.enqueue(messages, sequences, now)
        if messages:
            self.publisher.wake()

    def _telemetry(self, loop: ControlLoop, unit: str, now: float) -> dict:
        i = loop.index[unit]
        temperature = float(loop.measured[i])
        values = {
            "temperature": temperature,
            "temperature_target": float(loop.setpoint[i]),
            "heater": float(loop.heater[i]),
            "density": float(loop.density[i]),
            "growth_rate": float(loop.growth_rate[i]),
            "volume_ml": float(loop.volume[i]),
        }
        quality = quality_of(int(loop.flags[i]), temperature, loop.alarms.get(unit, {}))
        return payloads.telemetry_payload(self.seq[unit], self.to_epoch(now), values, quality,
                                          batch=self.runs[unit].batch_id)

    def _run_events(self, unit: str, run: UnitRun) -> list[tuple[str, dict]]:
        start = self._event_cursor[unit]
        if len(run.events) < start:  # the engine started a fresh list
            start = 0
        new = run.events[start:]
        self._event_cursor[unit] = len(run.events)
        topic = self.topics.events(unit)
        return [
            (topic, payloads.run_event_payload(e, run.run_id, self.to_epoch(e.at))) for e in new
        ]

    def _alarm_events(
        self, unit: str, run: UnitRun, active: dict[str, str], now: float
    ) -> list[tuple[str, dict]]:
        before = self._alarms[unit]
        if active == before:
            return []
        epoch = self.to_epoch(now)
        topic = self.topics.events(unit)
        raised = [
            (topic, payloads.alarm_event_payload(name, True, message, run.run_id, epoch))
            for name, message in active.items()
            if name not in before
        ]
        cleared = [
            (topic, payloads.alarm_event_payload(name, False, message, run.run_id, epoch))
            for name, message in before.items()
            if name not in active
        ]
        self._alarms[unit] = dict(active)
        return raised + cleared
