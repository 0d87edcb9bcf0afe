"""A pump's counter restarts when the pump loses power (SPEC §7: cumulative since power-up).

What the open segment had counted must stay counted, across a daemon restart too (a power cut
takes both): only what moved after the last reading is unknown, and only that is moved again.
Found by the crash torture's power cut (tests/service/test_crash_torture.py), which before this
repeated the whole open segment — 12.5 of 20 mL once.
"""

from __future__ import annotations

import json

import pytest
from test_unit_run import _started, snap

from protocols.state_machine import Command, RunState
from shuttled.engine.actions import Dispense, PumpView
from shuttled.engine.checkpoint import checkpoint_of, restore_run
from shuttled.engine.transfer import TransferProgress


def _alarms(run) -> list[str]:
    return [e.detail for e in run.events if e.kind == "alarm"]


def test_a_power_cut_mid_transfer_counts_the_segment_up_to_its_last_reading() -> None:
    run = _started()
    run.step(snap(5.0))  # warm-up done
    assert run.step(snap(10.0, media=PumpView(False, 1000.0))) == [
        Dispense("media", 20000.0, 10000.0)
    ]
    run.step(snap(15.0, media=PumpView(True, 5000.0)))
    run.step(snap(20.0, media=PumpView(True, 13000.0)))  # 12 mL counted, then the power goes
    saved = json.loads(json.dumps(checkpoint_of(run)))
    assert saved["transfer"]["segment_counter_ul"] == 13000.0

    restored = restore_run(saved, now=500.0)
    restored.step(snap(505.0, media=PumpView(False, 0.0)))  # the pump is back, counting from 0
    assert restored.state == RunState.HELD
    restored.command(Command.RESTART, "checked after the power cut", 600.0)
    restored.step(snap(605.0, media=PumpView(False, 0.0)))
    assert restored.step(snap(610.0, media=PumpView(False, 0.0))) == [
        Dispense("media", 8000.0, 10000.0)
    ]
    assert _alarms(restored) == [
        "pump media counter restarted (power lost?): 12.00 mL of the open segment counted up to "
        "its last reading, what moved after it unknown"
    ]
    restored.step(snap(700.0, media=PumpView(False, 8000.0)))
    assert restored.delivered_ul["media"] == pytest.approx(20000.0)


def test_a_pump_power_cycled_under_a_running_daemon_gets_only_the_rest() -> None:
    run = _started()
    run.step(snap(5.0))
    run.step(snap(10.0, media=PumpView(False, 300.0)))
    run.step(snap(15.0, media=PumpView(True, 6300.0)))
    # Power back: stopped, counter restarted. The remainder goes out at once, no operator needed,
    # as for any pump that stopped short.
    assert run.step(snap(20.0, media=PumpView(False, 0.0))) == [
        Dispense("media", 14000.0, 10000.0)
    ]
    assert run.state == RunState.RUNNING and len(_alarms(run)) == 1


def test_a_counter_that_goes_on_closes_nothing() -> None:
    progress = TransferProgress("media", 20000.0, 10000.0)
    assert progress.follow(PumpView(False, 5.0)) is None  # no open segment yet
    progress.next_command(PumpView(False, 100.0))
    for counter in (100.0, 2000.0, 2000.0, 9000.0):
        assert progress.follow(PumpView(True, counter)) is None
    assert progress.segment_counter_ul == 9000.0
    assert progress.delivered_ul(PumpView(True, 9000.0)) == pytest.approx(8900.0)


def test_a_checkpoint_from_before_the_counter_was_kept_still_restores() -> None:
    saved = json.loads(json.dumps(checkpoint_of(_started())))
    saved["transfer"] = {
        "pump": "media", "target_ul": 20000.0, "rate_ul_min": 10000.0,
        "delivered_before_ul": 0.0, "segment_baseline_ul": 100.0, "kind": "transfer",
    }  # fmt: skip
    restored = restore_run(saved, now=1.0)
    assert restored.transfer is not None and restored.transfer.segment_counter_ul is None
