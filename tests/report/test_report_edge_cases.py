"""Reports of runs that did not go well, and the ways `shuttlectl report` refuses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from report_rig import BIN, DEMO

from protocols.state_machine import RunState
from shuttled.engine.unit_run import RunEvent
from shuttled.records.audit import AuditTrail
from shuttled.records.journal import Journal
from shuttled.reports.data import ReportUnavailable, load_report_data
from shuttled.reports.html import render_report

RUN = "CS-TEST-U01-0001"


def _row(at: float, state: str, alarms: list[str], temperature: float | None = 36.9) -> tuple:
    return (RUN, "U01", at, state, "warm-up", temperature, 37.0, 40.0, 5e5, 0.01, 100.0,
            json.dumps(alarms), json.dumps({"delivered_ul": {}, "transfer": ""}))


def _held_journal(tmp_path: Path) -> Path:
    """A run that lost its heater: an alarm, an automatic hold, then an operator's abort."""
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path)
    text = DEMO.read_text()
    journal.record_run_start(RUN, 1, "U01", "demo@1.0.0#000000000000", text,
                             {"max_density": 2e6, "target_cells": 6e7}, 100.0)
    journal.append_events(RUN, "U01", [
        RunEvent(100.0, "state", RunState.RUNNING, "start demo: batch 42", "alice"),
        RunEvent(100.0, "phase", RunState.RUNNING, "phase warm-up at 37.0 °C"),
        RunEvent(3700.0, "state", RunState.HOLDING, "hold: phase warm-up timed out after 1.00 h"),
        RunEvent(3705.0, "state", RunState.HELD, "settled"),
        RunEvent(5000.0, "state", RunState.ABORTING, "abort: heater replaced, batch lost", "qa"),
        RunEvent(5005.0, "state", RunState.ABORTED, "settled"),
    ])
    journal.append_telemetry([
        _row(100.0, "RUNNING", []),
        _row(1900.0, "RUNNING", ["TEMPERATURE_SENSOR_BAD"], None),
        _row(2000.0, "RUNNING", []),
        _row(3700.0, "HOLDING", []),
        _row(5005.0, "ABORTED", []),
    ])
    journal.record_final_state(RUN, "ABORTED")
    journal.close()
    trail = AuditTrail(path)
    trail.append(user="alice", role="operator", unit="U02", method="Hold", arguments={},
                 reason="another unit", result="Good", detail="HELD")
    trail.append(user="alice", role="operator", unit="U01", method="Start",
                 arguments={"template_id": "", "parameters": {"target_cells": 6e7}},
                 reason="batch 42", result="Good", detail=RUN)
    trail.append(user="qa", role="supervisor", unit="U01", method="Abort",
                 arguments={"run_id": RUN}, reason="heater replaced, batch lost",
                 result="Good", detail="ABORTING")
    trail.append(user="bob", role="viewer", unit="U01", method="Restart", arguments={},
                 reason="try again", result="BadUserAccessDenied", detail="bob may not")
    trail.close()
    return path


def test_an_aborted_run_still_renders_with_its_story(tmp_path: Path) -> None:
    html = render_report(load_report_data(_held_journal(tmp_path), RUN))
    assert "ABORTED" in html and "HELD" in html
    assert "phase warm-up timed out" in html and "heater replaced, batch lost" in html
    assert "<td>alice</td>" in html and "<td>qa</td>" in html
    assert "TEMPERATURE_SENSOR_BAD" in html
    assert "overridden at start" in html  # target_cells 6e7 instead of the default
    assert "BadUserAccessDenied" in html  # a refused attempt is part of the record
    assert "another unit" not in html  # another unit's records are not this run's


def test_a_temperature_gap_breaks_the_line(tmp_path: Path) -> None:
    html = render_report(load_report_data(_held_journal(tmp_path), RUN))
    path = html.split('data-series="temperature" d="')[1].split('"')[0]
    assert path.count("M") == 2  # no line drawn across the missing reading


def test_a_run_refused_before_its_first_tick_renders(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path)
    journal.record_run_start(RUN, 1, "U01", "broken@1.0.0#000000000000", "not: [a protocol",
                             {}, 0.0)
    journal.close()
    html = render_report(load_report_data(path, RUN))
    assert "No telemetry history" in html
    assert "protocol text could not be read" in html
    assert "not: [a protocol" in html


def _report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "shuttlectl"), "report", *args], capture_output=True,
                          text=True, timeout=60)


def test_cli_writes_the_failed_run(tmp_path: Path) -> None:
    out = tmp_path / "out" / "run.html"
    result = _report(RUN, "--journal", str(_held_journal(tmp_path)), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "ABORTED" in out.read_text()


def test_unknown_run_exits_1_with_a_reason(tmp_path: Path) -> None:
    result = _report("CS-NOPE", "--journal", str(_held_journal(tmp_path)),
                     "-o", str(tmp_path / "x.html"))
    assert result.returncode == 1
    assert result.stderr.startswith("error: no run 'CS-NOPE'") and RUN in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.html").exists()


@pytest.mark.parametrize("content", [None, b"this is not sqlite at all" * 100])
def test_missing_or_foreign_journal_exits_1(tmp_path: Path, content: bytes | None) -> None:
    journal = tmp_path / "journal.sqlite3"
    if content is not None:
        journal.write_bytes(content)
    result = _report(RUN, "--journal", str(journal), "-o", str(tmp_path / "x.html"))
    assert result.returncode == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def test_without_journal_or_config_exits_1(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "shuttlectl"), "report", RUN, "--config", str(tmp_path / "none.toml")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1 and "no such configuration file" in result.stderr


def test_load_report_data_refuses_unknown_run(tmp_path: Path) -> None:
    with pytest.raises(ReportUnavailable, match="no run"):
        load_report_data(_held_journal(tmp_path), "CS-OTHER")
