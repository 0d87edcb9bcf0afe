"""Telemetry as `serve` and `simulate` use it: start, feed it each tick, stop.

The connection runs in its own task and never delays READY=1 or a control tick: a broker that is
down at start-up is just an outage that started early.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from shuttled import __version__
from shuttled.alarms import AlarmBook, Transition
from shuttled.config import MqttConfig
from shuttled.engine.unit_run import UnitRun
from shuttled.records.audit_anchors import Anchor
from shuttled.telemetry import payloads
from shuttled.telemetry.feed import TelemetryFeed
from shuttled.telemetry.outbox import Outbox
from shuttled.telemetry.publisher import Publisher

if TYPE_CHECKING:
    from shuttled.loop.control_loop import ControlLoop


class Telemetry:
    def __init__(
        self,
        settings: MqttConfig,
        instrument_id: str,
        journal_path: Path,
        runs: dict[str, UnitRun],
        now: Callable[[], float],
        to_epoch: Callable[[float], float],
    ) -> None:
        """`now` is the daemon's process clock; `to_epoch` maps its time to UTC seconds (the
        service's clock already is wall time; a simulation's starts at 0)."""
        self.topics = payloads.Topics(settings.prefix, instrument_id)
        self.units = list(runs)
        self.alarm_book: AlarmBook | None = None  # attach_alarms
        self.now = now
        self.to_epoch = to_epoch
        self.outbox = Outbox(journal_path)
        self.publisher = Publisher(
            settings, self.topics, self.outbox, self._status, client_id=f"shuttled-{instrument_id}"
        )
        self.feed = TelemetryFeed(
            self.topics, self.outbox, self.publisher, runs, to_epoch, settings.telemetry_period_s
        )

    def _status(self, online: bool) -> dict:
        return payloads.status_payload(
            online, self.to_epoch(self.now()), __version__, self.units
        )

    @property
    def connected(self) -> bool:
        return self.publisher.connected

    def start(self) -> None:
        self.feed.publish_states(self.now())
        self.publisher.start()

    def on_tick(self, loop: ControlLoop) -> None:
        self.feed.on_tick(loop, self.now())

    def publish_anchor(self, anchor: Anchor) -> None:
        """Queue a signed audit anchor on the instrument's events topic (durably, like every
        event: a broker that is down gets it later, flagged historical)."""
        payload = payloads.anchor_event_payload(anchor.to_json())
        self.outbox.enqueue([(self.topics.instrument_events, payload)], {}, self.now())
        self.publisher.wake()

    def attach_alarms(self, book: AlarmBook) -> None:
        """From now on alarm events come from the alarm model, with their lifecycle: every
        transition on `<unit>/events` as it happens (durably, in order, like run events) and the
        unit's current list on the retained `<unit>/alarms`."""
        self.alarm_book = book
        self.feed.alarms_from_book = True
        book.subscribe(self.publish_alarm_transitions)
        for unit in self.units:
            self._publish_alarm_list(book, unit)

    def publish_alarm_transitions(self, changes: list[Transition]) -> None:
        book = self.alarm_book
        assert book is not None
        messages = [
            (self.topics.events(c.alarm.unit),
             payloads.alarm_transition_payload(c.to_json(), book.describe(c.alarm)))
            for c in changes
        ]  # fmt: skip
        self.outbox.enqueue(messages, {}, self.now())
        for unit in dict.fromkeys(c.alarm.unit for c in changes):
            self._publish_alarm_list(book, unit)
        self.publisher.wake()

    def _publish_alarm_list(self, book: AlarmBook, unit: str) -> None:
        alarms = [book.describe(a) for a in book.current(unit, everything=True)]
        self.publisher.set_retained(
            self.topics.alarms(unit), payloads.alarm_list_payload(self.to_epoch(self.now()), alarms)
        )

    async def stop(self) -> None:
        """Offline first, then disconnect; anything unsent stays queued for the next start."""
        await self.publisher.stop()
        self.outbox.close()
