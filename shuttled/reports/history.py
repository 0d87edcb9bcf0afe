"""The telemetry history behind run reports: downsampled process values written to the journal.

A report must be reproducible from the journal alone, long after the daemon that ran the batch
has forgotten it, so the history is durable rather than kept in memory. Every control tick would
be 17 000 rows a day per unit for plots a few hundred pixels wide; one row per unit per
`interval_s` of process time (60 s by default, aligned to a common grid so every unit of a tick
shares one commit) keeps a 14-day run at about 20 000 rows. Moments a reviewer will look for — a
state or phase change, an alarm raised or cleared, a transfer starting or ending — always get a
row of their own, so nothing that matters falls between two samples.

Read by `on_tick(loop)`, called from the control loop's per-tick callback in `simulate` and
`serve`; it only reads the loop's live values and never changes them.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from shuttled.records.journal import Journal

if TYPE_CHECKING:
    from shuttled.loop.control_loop import ControlLoop

log = structlog.get_logger("shuttled.report_history")

DEFAULT_INTERVAL_S = 60.0


def _number(value: float) -> float | None:
    """SQLite and JSON have no NaN: an unknown value is NULL."""
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass
class _Last:
    """What the previous row of a unit said, to notice changes that deserve a row of their own."""

    run_id: str
    slot: float
    key: tuple


class TelemetryRecorder:
    """Decide per tick which units get a history row and write them in one transaction."""

    def __init__(self, journal: Journal, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.journal = journal
        self.interval_s = interval_s
        self._last: dict[str, _Last] = {}

    def on_tick(self, loop: ControlLoop) -> None:
        now = loop.clock.now()
        slot = math.floor(now / self.interval_s)
        rows = []
        for unit, i in loop.index.items():
            run = loop.runs[unit]
            if run.run_id is None:
                self._last.pop(unit, None)
                continue
            phase = run.phase.name if run.phase is not None else ""
            alarms = sorted(loop.alarms[unit])
            transfer = run.transfer.pump if run.transfer is not None else ""
            key = (run.state.value, phase, tuple(alarms), transfer)
            last = self._last.get(unit)
            if (
                last is not None
                and last.run_id == run.run_id
                and last.slot == slot
                and last.key == key
            ):
                continue
            self._last[unit] = _Last(run.run_id, slot, key)
            reading = loop.last_readings.get(unit)
            setpoint = run.temperature_setpoint
            rows.append((
                run.run_id,
                unit,
                now,
                run.state.value,
                phase,
                _number(reading.temperature) if reading is not None else None,
                _number(setpoint) if setpoint is not None else None,
                _number(float(loop.heater[i])),
                _number(float(loop.density[i])),
                _number(float(loop.growth_rate[i])),
                _number(reading.volume_ml) if reading is not None else None,
                json.dumps(alarms),
                json.dumps({"delivered_ul": run.delivered_ul, "transfer": transfer},
                           sort_keys=True),
            ))
        try:
            self.journal.append_telemetry(rows)
        except sqlite3.Error as error:  # a gap in a plot, never a stopped control loop
            log.warning("telemetry history not written", error=str(error), rows=len(rows))
