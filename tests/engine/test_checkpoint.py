"""A run survives the daemon: checkpoint → JSON → restore, held with `daemon restarted`."""

from __future__ import annotations

import json
import math

import pytest
from test_unit_run import _started, snap

from protocols.state_machine import Command, RunState
from shuttled.engine.actions import Dispense, PumpView, StopPump
from shuttled.engine.checkpoint import CheckpointError, checkpoint_of, restore_run
from shuttled.engine.unit_run import UnitRun


def _through_json(run: UnitRun) -> dict:
    return json.loads(json.dumps(checkpoint_of(run)))


def test_a_run_interrupted_mid_transfer_comes_back_held_and_delivers_only_the_rest() -> None:
    run = _started()
    run.step(snap(5.0))  # warm-up done
    run.step(snap(10.0, media=PumpView(False, 1000.0)))  # DISPENSE 20 mL from counter 1000
    saved = _through_json(run)

    restored = restore_run(saved, now=500.0)
    assert restored.state == RunState.HOLDING and restored.hold_reason == "daemon restarted"
    assert restored.protocol.identity == run.protocol.identity
    assert restored.phase.name == "feed"
    # The pump went on while the daemon was down; the first tick stops it and keeps the count.
    actions = restored.step(snap(505.0, media=PumpView(True, 9000.0)))
    assert actions == [StopPump("media")]
    assert restored.state == RunState.HELD
    assert restored.temperature_setpoint == 37.0
    restored.command(Command.RESTART, "checked the cartridge", 600.0, user="alice")
    restored.step(snap(605.0, media=PumpView(False, 9000.0)))
    actions = restored.step(snap(610.0, media=PumpView(False, 9000.0)))
    assert actions == [Dispense("media", 12000.0, 10000.0)]
    restored.step(snap(700.0, media=PumpView(False, 21000.0)))
    assert restored.delivered_ul["media"] == pytest.approx(20000.0)


def test_phase_time_and_ended_runs_are_restored_as_they_were() -> None:
    run = _started()
    run.step(snap(5.0))
    run.step(snap(10.0, media=PumpView(False, 0.0)))
    run.step(snap(15.0, media=PumpView(False, 20000.0)))
    run.step(snap(315.0))
    restored = restore_run(_through_json(run), now=10_000.0)
    assert restored.phase_elapsed_s == pytest.approx(run.phase_elapsed_s)
    assert restored.run_time_s(10_000.0) == pytest.approx(10_000.0)

    run.command(Command.ABORT, "test", 400.0)
    run.step(snap(405.0))
    restored = restore_run(_through_json(run), now=10_000.0)
    assert restored.state == RunState.ABORTED and not math.isnan(restored.ended_at)


def test_an_idle_unit_stays_idle() -> None:
    restored = restore_run(_through_json(UnitRun("U03")), now=1.0)
    assert restored.state == RunState.IDLE and restored.protocol is None


def test_a_tampered_protocol_is_refused_rather_than_run() -> None:
    saved = _through_json(_started())
    saved["protocol_text"] = saved["protocol_text"].replace("20", "200")
    with pytest.raises(CheckpointError, match="expected"):
        restore_run(saved, now=1.0)
