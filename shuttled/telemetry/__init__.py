"""MQTT telemetry (SPEC §6): status with a Last Will, retained unit state, telemetry, events.

The engine owns run state; this package only mirrors it to a broker (ARCHITECTURE.md). Every
telemetry message and event is first committed to an outbox table in the journal's SQLite file,
and only deleted once the broker has acknowledged it, so a broker outage or a daemon restart
loses nothing: what waited is replayed in order, flagged `"historical": true`, before live data.

`aiomqtt` is imported only when a broker is configured, so an instrument without MQTT pays
nothing for it at start-up.
"""

from __future__ import annotations

from shuttled.telemetry.service import Telemetry

__all__ = ["Telemetry"]
