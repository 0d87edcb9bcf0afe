"""Telemetry as `serve` and `simulate` use it: start, feed it each tick, stop.

The connection runs in its own task and never delays READY=1 or a control tick: a broker that is
down at start-up is just an outage that started early.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from shuttled import __version__
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

    async def stop(self) -> None:
        """Offline first, then disconnect; anything unsent stays queued for the next start."""
        await self.publisher.stop()
        self.outbox.close()
