"""Crash torture (issue 14): kill -9 at dozens of seeded random moments of a run with three
transfers, and a power cut of the instrument and the daemon together; the run completes with
every volume exact, the journal intact and the audit chain verified."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest
from crash_rig import BIN, Daemon, Simulator
from kill_plan import kill_plan, timeline
from torture import Torture

from protocols.loader import load_protocol_file
from simulators.physical_state import read_state

PROTOCOL = Path(__file__).with_name("crash-torture.yaml")
SPEED = 60.0  # process seconds per wall second, shared by shuttle-sim and the daemon
TRANSFERRED_ML = {"media": 20.0, "vector": 6.0, "harvest": 40.0}
FINAL_VOLUME_ML = 100.0 + 20.0 + 6.0 - 40.0
TOLERANCE_ML = 0.1


async def _torture(tmp_path: Path, kills: int, seed: int, power_cut: bool) -> Torture:
    protocol = load_protocol_file(PROTOCOL)
    plan = kill_plan(timeline(protocol), kills, seed)
    torture = Torture(
        Simulator(tmp_path, SPEED), Daemon(tmp_path), PROTOCOL.read_text(),
        {phase.name: i for i, phase in enumerate(protocol.phases)}, power_cut=power_cut,
    )  # fmt: skip
    began = time.monotonic()
    try:
        await torture.start()
        await torture.run(plan)
        await torture.close()
    finally:
        torture.daemon.stop()
        torture.sim.stop()
    for n, cut in enumerate(torture.cuts, 1):
        print(f"kill {n:3d}: {cut.moment.describe():45s} -> {cut.state} {cut.step}")
    print(f"{len(torture.cuts)} kills survived in {time.monotonic() - began:.1f} s wall; "
          f"daemon ready in {max(torture.daemon.ready_s):.2f} s at worst")
    return torture


def _journal_is_sound(data_dir: Path, kills: int) -> list[str]:
    """integrity_check ok, the audit chain verifies offline, every kill came back as one
    `daemon restarted` hold and every transfer finished once; returns the run's event texts."""
    journal = data_dir / "journal.sqlite3"
    with closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        details = [row[0] for row in db.execute("SELECT detail FROM events ORDER BY id")]
    assert sum(d == "hold: daemon restarted" for d in details) == kills
    for pump in TRANSFERRED_ML:
        assert sum(d.startswith(f"transfer {pump} done") for d in details) == 1, details
    verify = subprocess.run(
        [str(BIN / "shuttlectl"), "audit", "verify", "--journal", str(journal)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return details


def _counter_restarts(details: list[str]) -> int:
    return sum("counter restarted" in d for d in details)


async def test_kill_9_at_random_moments_repeats_and_loses_no_transfer(
    tmp_path: Path, torture_kills: int, torture_seed: int
) -> None:
    torture = await _torture(tmp_path, torture_kills, torture_seed, power_cut=False)
    assert len(torture.cuts) == torture_kills
    plant = read_state(torture.sim.state_file)
    for pump, volume in TRANSFERRED_ML.items():
        assert plant.moved_ml("U01", pump) == pytest.approx(volume, abs=TOLERANCE_ML), pump
    assert plant.volume_ml("U01") == pytest.approx(FINAL_VOLUME_ML, abs=TOLERANCE_ML)
    details = _journal_is_sound(torture.sim.data_dir, torture_kills)
    assert _counter_restarts(details) == 0  # the pumps never lost power


def _counted_ul(checkpoint: dict | None, pump: str) -> float:
    """What the daemon's journal says `pump` moved: finished transfers, closed segments of the
    open one, and the open segment up to the last counter reading it kept."""
    if checkpoint is None:
        return 0.0
    counted = float(checkpoint.get("delivered_ul", {}).get(pump, 0.0))
    transfer = checkpoint.get("transfer")
    if transfer and transfer["pump"] == pump:
        counted += transfer["delivered_before_ul"]
        baseline, last = transfer["segment_baseline_ul"], transfer.get("segment_counter_ul")
        if baseline is not None and last is not None:
            counted += last - baseline
    return counted


def _segment_counted(checkpoint: dict | None, pump: str) -> bool:
    transfer = (checkpoint or {}).get("transfer")
    return bool(
        transfer and transfer["pump"] == pump and transfer["segment_baseline_ul"] is not None
        and (transfer.get("segment_counter_ul") or 0.0) > transfer["segment_baseline_ul"]
    )


async def test_a_power_cut_of_instrument_and_daemon_repeats_only_what_nobody_saw(
    tmp_path: Path, torture_power_cuts: int, torture_seed: int
) -> None:
    """Power cuts: the simulator and the daemon SIGKILLed together, the simulator restarted from
    its state file (`shuttle-sim --state`) with the pumps' counters back at zero.

    What can be asserted: the run completes, the journal and the audit chain are sound, and each
    pump moved its transfer's volume plus exactly what it moved, before each cut, after the
    daemon's last journaled reading of its counter — which no daemon can know once the counter
    is gone — and that is at most two control periods of its flow per cut. What cannot: an exact
    volume, and what a real power cut does to the disks (kill -9 loses no page cache).
    """
    protocol = load_protocol_file(PROTOCOL)
    rates = {w.pump: w.volume_ml / w.length_s for w in timeline(protocol) if w.pump}  # mL/s
    torture = await _torture(tmp_path, torture_power_cuts, torture_seed, power_cut=True)
    assert len(torture.cuts) == torture_power_cuts
    plant = read_state(torture.sim.state_file)
    counted_segments = 0
    for pump, volume in TRANSFERRED_ML.items():
        # After each cut: what the pump had moved beyond what the journal counted, cumulated.
        excess = [
            (cut.pump_totals_ul[f"U01/{pump}"] - _counted_ul(cut.checkpoint, pump)) / 1000.0
            for cut in torture.cuts
        ]
        per_cut = [b - a for a, b in zip([0.0, *excess], excess, strict=False)]
        print(f"{pump}: moved after the daemon's last reading, per cut (mL):",
              " ".join(f"{x:.2f}" for x in per_cut))
        limit = 2 * torture.control_period_s * rates[pump] + TOLERANCE_ML
        assert all(-TOLERANCE_ML <= x <= limit for x in per_cut), (pump, per_cut)
        moved = plant.moved_ml("U01", pump)
        assert moved == pytest.approx(volume + excess[-1], abs=TOLERANCE_ML), pump
        counted_segments += sum(_segment_counted(cut.checkpoint, pump) for cut in torture.cuts)
    moved = {p: plant.moved_ml("U01", p) for p in TRANSFERRED_ML}
    assert plant.volume_ml("U01") == pytest.approx(
        100.0 + moved["media"] + moved["vector"] - moved["harvest"], abs=TOLERANCE_ML
    )
    details = _journal_is_sound(torture.sim.data_dir, torture_power_cuts)
    # Every cut that left counted progress in an open segment was noticed as a counter restart
    # (two cuts without a Restart between them share one).
    restarts = _counter_restarts(details)
    assert restarts <= counted_segments and (restarts > 0 or counted_segments == 0)
