"""A cartridge swapped mid-run, as a user meets it: `shuttled simulate` with a fault file.

The simulated controller reports the cartridge each unit holds (`--cartridge`, default
CRT-<unit>); the `cartridge_swap` fault puts another one in U01 at 30 min for 10 min. The daemon
must hold U01's run with the reason and a critical CARTRIDGE_CHANGED alarm, clear the alarm when
the original cartridge is back, and leave the run held for an operator; U02 runs on untouched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shuttled.records.alarm_journal import alarm_events_of_run
from shuttled.records.audit import read_journal
from shuttled.records.journal import Journal
from shuttled.reports.data import load_report_data

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "protocols" / "library" / "demo.yaml"
BIN = Path(sys.executable).parent
SWAP = "- {at: 30m, fault: cartridge_swap, unit: U01, cartridge: CRT-0099, duration: 10m}\n"


def _simulate(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "shuttled"), "simulate", "--units", "2", "--speed", "max", "--seed", "1",
         "--protocol", str(DEMO), "--json", *extra],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def swapped(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict], Path, int]:
    folder = tmp_path_factory.mktemp("swap")
    (folder / "swap.yaml").write_text(SWAP)
    result = _simulate("--faults", str(folder / "swap.yaml"), "--data-dir", str(folder / "data"),
                       "--cartridge", "U01=CRT-7781")
    runs = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert runs, result.stderr[-3000:]
    by_unit = {run["unit"]: run for run in runs}
    return by_unit, folder / "data" / "journal.sqlite3", result.returncode


def test_a_swap_mid_run_holds_the_run_with_a_critical_alarm_that_clears_when_it_is_back(
    swapped: tuple[dict[str, dict], Path, int],
) -> None:
    runs, journal_path, returncode = swapped
    assert returncode == 1  # not every run COMPLETE
    assert runs["U01"]["state"] == "HELD"
    assert runs["U01"]["hold_reason"] == "cartridge changed: CRT-7781 → CRT-0099"
    assert runs["U01"]["alarms"] == ["CARTRIDGE_CHANGED"]
    assert runs["U02"]["state"] == "COMPLETE" and runs["U02"]["alarms"] == []
    run_id = runs["U01"]["run_id"]
    lifecycle = [(e["kind"], e["at"], e["severity"]) for e in alarm_events_of_run(journal_path,
                                                                                   run_id)]
    assert lifecycle == [("raised", 1800.0, 800), ("cleared", 2400.0, 800)]
    journal = Journal(journal_path)
    try:
        states = [(at, state) for at, kind, state, _, _ in journal.events_of(run_id)
                  if kind == "state"]
        assert journal.run_batch(run_id) == ("SIM-1-U01", "CRT-7781")
        assert journal.run_batch(runs["U02"]["run_id"]) == ("SIM-1-U02", "CRT-U02")
    finally:
        journal.close()
    # held at the swap, before any later step; the original's return does not restart it
    assert states == [(0.0, "RUNNING"), (1800.0, "HOLDING"), (1800.0, "HELD")]


def test_simulate_binds_every_run_to_a_batch_made_up_from_the_seed(
    swapped: tuple[dict[str, dict], Path, int],
) -> None:
    runs, journal_path, _ = swapped
    starts = [r for r in read_journal(journal_path) if r.method == "Start"]
    assert [(r.unit, r.arguments["batch"], r.arguments["cartridge"]) for r in starts] == [
        ("U01", "SIM-1-U01", "CRT-7781"), ("U02", "SIM-1-U02", "CRT-U02")]
    report = load_report_data(journal_path, runs["U01"]["run_id"])
    assert (report.batch, report.cartridge) == ("SIM-1-U01", "CRT-7781")
    assert any("cartridge changed" in e.detail for e in report.events)


def test_a_malformed_cartridge_fault_or_assignment_is_refused_with_a_clear_message(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {at: 1h, fault: cartridge_swap, unit: U01}\n"
                   "- {at: 2h, fault: cartridge_swap, unit: U01, cartridge: 42}\n")
    result = _simulate("--faults", str(bad))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{bad}:1:3: cartridge_swap needs 'cartridge'" in result.stderr
    assert f"{bad}:2:" in result.stderr and "a cartridge id is text, not 42" in result.stderr
    result = _simulate("--cartridge", "U01")
    assert result.returncode == 1 and "expected UNIT=ID" in result.stderr
    sim = subprocess.run([str(BIN / "shuttle-sim"), "--units", "2", "--cartridge", "U03=X"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert sim.returncode == 2 and "unknown unit 'U03'" in sim.stderr
    assert "Traceback" not in sim.stderr
