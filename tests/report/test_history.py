"""The telemetry history: one row per unit per interval, plus a row at every change."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from drivers.bioreactor_opcua import BioreactorReading
from protocols.state_machine import RunState
from shuttled.records.journal import Journal
from shuttled.reports.history import TelemetryRecorder


class FakeLoop:
    """Only what the recorder reads of a ControlLoop."""

    def __init__(self) -> None:
        self.now = 0.0
        self.clock = SimpleNamespace(now=lambda: self.now)
        self.index = {"U01": 0, "U02": 1}
        self.runs = {
            "U01": SimpleNamespace(run_id="R1", state=RunState.RUNNING, phase=None,
                                   transfer=None, delivered_ul={}, temperature_setpoint=37.0),
            "U02": SimpleNamespace(run_id=None, state=RunState.IDLE, phase=None, transfer=None,
                                   delivered_ul={}, temperature_setpoint=None),
        }
        self.alarms: dict[str, dict[str, str]] = {"U01": {}, "U02": {}}
        self.last_readings = {"U01": BioreactorReading(36.5, 100.0)}
        self.heater = np.array([40.0, 0.0])
        self.density = np.array([5e5, math.nan])
        self.growth_rate = np.array([0.02, math.nan])


def test_downsampled_with_every_change_kept(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite3")
    recorder = TelemetryRecorder(journal, interval_s=60.0)
    loop = FakeLoop()
    for tick in range(1, 73):  # 6 minutes of 5 s ticks
        loop.now = tick * 5.0
        if tick == 30:
            loop.alarms["U01"]["PROBE_LOST"] = "no answer"
        if tick == 40:
            loop.runs["U01"].state = RunState.HELD
        recorder.on_tick(loop)  # type: ignore[arg-type]
    rows = journal.telemetry_of("R1")
    times = [row[2] for row in rows]
    # 5 s (first), one per minute from 60 s on, the alarm at 150 s, the hold at 200 s
    assert times == [5.0, 60.0, 120.0, 150.0, 180.0, 200.0, 240.0, 300.0, 360.0]
    assert rows[3][11] == '["PROBE_LOST"]' and rows[5][3] == "HELD"
    assert journal.telemetry_of("") == []  # the idle unit has no run, so no history
    row = rows[0]
    assert row[5:11] == (36.5, 37.0, 40.0, 5e5, 0.02, 100.0)
    journal.close()
