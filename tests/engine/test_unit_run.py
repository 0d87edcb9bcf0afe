"""The per-unit run engine, driven by hand-made snapshots (no devices, no clock)."""

from __future__ import annotations

import math

import pytest

from protocols import CommandRefused, load_protocol_text
from protocols.state_machine import Command, RunState
from shuttled.engine.actions import Dispense, PumpView, StopPump, UnitSnapshot
from shuttled.engine.unit_run import UnitRun

PROTOCOL = """\
shuttle_protocol: 1
name: engine-test
version: 1.0.0
phases:
  - name: warm
    temperature: 37.0
    until: temperature >= 36.8
    timeout: 1h
    on_timeout: {on_timeout}
  - name: feed
    temperature: 37.0
    steps:
      - transfer: {{pump: media, volume_ml: 20, rate_ml_min: 10}}
    duration: 10m
  - name: harvest
    temperature: 36.0
    steps:
      - transfer: {{pump: harvest, volume: all, rate_ml_min: 50}}
"""


def _protocol(on_timeout: str = "hold"):
    return load_protocol_text(PROTOCOL.format(on_timeout=on_timeout), "engine-test.yaml")


def _started(on_timeout: str = "hold") -> UnitRun:
    run = UnitRun("U01")
    run.start(_protocol(on_timeout), {}, "R-1", 0.0, reason="test")
    return run


def snap(now: float, temperature: float = 37.0, volume: float = 100.0, **pumps: PumpView):
    return UnitSnapshot(now, temperature, volume, 1e6, math.nan, dict(pumps))


def test_until_ends_the_phase_and_the_setpoint_follows_the_protocol() -> None:
    run = _started()
    assert run.temperature_setpoint == 37.0
    run.step(snap(5.0, temperature=30.0))
    assert run.phase.name == "warm"
    run.step(snap(10.0, temperature=36.9))
    assert run.phase.name == "feed"


@pytest.mark.parametrize(
    ("on_timeout", "state", "phase"),
    [
        ("hold", RunState.HELD, "warm"),
        ("abort", RunState.ABORTED, "warm"),
        ("continue", RunState.RUNNING, "feed"),
    ],
)
def test_timeout_does_what_on_timeout_says(on_timeout: str, state: RunState, phase: str) -> None:
    run = _started(on_timeout)
    run.step(snap(3600.0, temperature=30.0))
    run.step(snap(3605.0, temperature=30.0))
    assert run.state == state
    assert run.phase.name == phase
    if state == RunState.HELD:
        assert "timed out" in run.hold_reason


def test_transfer_commands_exactly_the_volume_and_waits_for_the_pump() -> None:
    run = _started()
    run.step(snap(5.0))  # warm done
    actions = run.step(snap(10.0, media=PumpView(False, 1000.0)))
    assert actions == [Dispense("media", 20000.0, 10000.0)]
    assert run.step(snap(15.0, media=PumpView(True, 5000.0))) == []
    assert run.step(snap(20.0, media=PumpView(False, 21000.0))) == []
    assert run.step_index == 1
    assert run.delivered_ul["media"] == pytest.approx(20000.0)


def test_an_interrupted_transfer_resumes_with_only_the_remainder() -> None:
    run = _started()
    run.step(snap(5.0))
    run.step(snap(10.0, media=PumpView(False, 0.0)))
    run.command(Command.HOLD, "operator check", 12.0, user="alice")
    actions = run.step(snap(15.0, media=PumpView(True, 8000.0)))
    assert actions == [StopPump("media")]
    assert run.state == RunState.HELD
    assert run.temperature_setpoint == 37.0  # temperature control goes on while held
    run.command(Command.RESTART, "checked", 20.0, user="alice")
    run.step(snap(25.0, media=PumpView(False, 8000.0)))
    assert run.state == RunState.RUNNING
    actions = run.step(snap(30.0, media=PumpView(False, 8000.0)))
    assert actions == [Dispense("media", 12000.0, 10000.0)]
    run.step(snap(35.0, media=PumpView(False, 20000.0)))
    assert run.step_index == 1


def test_phase_time_does_not_run_while_held() -> None:
    run = _started()
    run.step(snap(5.0))
    run.step(snap(10.0, media=PumpView(False, 0.0)))
    run.step(snap(20.0, media=PumpView(False, 20000.0)))
    run.command(Command.HOLD, "pause", 20.0)
    run.step(snap(25.0))
    run.command(Command.RESTART, "go", 4000.0)
    run.step(snap(4005.0))
    run.step(snap(4010.0))
    assert run.phase.name == "feed"  # 10 min of feed phase have not passed while running


def test_a_pump_alarm_holds_the_run() -> None:
    run = _started()
    run.step(snap(5.0))
    run.step(snap(10.0, media=PumpView(False, 0.0)))
    run.step(snap(15.0, media=PumpView(False, 300.0, frozenset({"STALL"}))))
    run.step(snap(20.0, media=PumpView(False, 300.0, frozenset({"STALL"}))))
    assert run.state == RunState.HELD
    assert "STALL" in run.hold_reason


def test_harvest_all_takes_the_volume_measured_when_it_starts_and_completes_the_run() -> None:
    run = _started()
    run.step(snap(5.0))
    run.step(snap(10.0, media=PumpView(False, 0.0)))
    run.step(snap(15.0, media=PumpView(False, 20000.0)))
    run.step(snap(700.0))
    assert run.phase.name == "harvest"
    assert run.temperature_setpoint == 36.0
    actions = run.step(snap(705.0, volume=120.0, harvest=PumpView(False, 0.0)))
    assert actions == [Dispense("harvest", 120000.0, 50000.0)]
    run.step(snap(900.0, volume=0.0, harvest=PumpView(False, 120000.0)))
    assert run.state == RunState.COMPLETE
    assert run.run_time_s(5000.0) == pytest.approx(900.0)


def test_refused_commands_change_nothing() -> None:
    run = UnitRun("U01")
    with pytest.raises(CommandRefused):
        run.command(Command.HOLD, "no run", 0.0)
    assert run.state == RunState.IDLE and run.events == []
    run = _started()
    with pytest.raises(CommandRefused):
        run.start(_protocol(), {}, "R-2", 1.0, reason="again")
    assert run.run_id == "R-1"


def test_abort_turns_the_heater_off_and_reset_returns_to_idle() -> None:
    run = _started()
    run.command(Command.ABORT, "contamination", 5.0, user="bob")
    run.step(snap(10.0))
    assert run.state == RunState.ABORTED and run.temperature_setpoint is None
    run.command(Command.RESET, "cartridge removed", 20.0, user="bob")
    assert run.state == RunState.IDLE and run.run_id is None


def test_every_state_change_is_recorded_with_user_and_reason() -> None:
    run = _started()
    run.command(Command.HOLD, "look at it", 5.0, user="alice")
    run.step(snap(10.0))
    details = [(e.state, e.user) for e in run.events if e.kind == "state"]
    assert details == [
        (RunState.RUNNING, "system"),
        (RunState.HOLDING, "alice"),
        (RunState.HELD, "system"),
    ]
    assert "look at it" in run.events[2].detail


DENSITY_PROTOCOL = """\
shuttle_protocol: 1
name: density-test
version: 1.0.0
parameters:
  max_density: {default: 2.0e6, min: 1.0e5, max: 1.0e7}
phases:
  - name: expansion
    temperature: 37.0
    density_control: {pump: media, max_density: max_density, max_volume_ml: 300}
    duration: 1h
"""


def _density_run() -> UnitRun:
    run = UnitRun("U01")
    protocol = load_protocol_text(DENSITY_PROTOCOL, "density.yaml")
    run.start(protocol, protocol.resolve_parameters({}), "R-1", 0.0, reason="test")
    return run


def dsnap(now: float, density: float, volume: float, media: PumpView) -> UnitSnapshot:
    return UnitSnapshot(now, 37.0, volume, density, math.nan, {"media": media})


def test_density_control_dilutes_to_below_the_limit_and_respects_the_volume_cap() -> None:
    run = _density_run()
    assert run.step(dsnap(5.0, 1.9e6, 100.0, PumpView(False, 0.0))) == []
    actions = run.step(dsnap(10.0, 2.7e6, 100.0, PumpView(False, 0.0)))
    # 100 mL at 2.7e6 → 0.9 × 2e6 needs 50 mL of fresh medium.
    assert actions == [Dispense("media", pytest.approx(50000.0), 10000.0)]
    run.step(dsnap(15.0, 2.7e6, 120.0, PumpView(True, 20000.0)))
    run.step(dsnap(20.0, 1.8e6, 150.0, PumpView(False, 50000.0)))
    assert run.transfer is None and run.delivered_ul["media"] == pytest.approx(50000.0)
    # Near the cap only what fits is added; at the cap nothing is, and that is recorded once.
    actions = run.step(dsnap(25.0, 4.0e6, 280.0, PumpView(False, 50000.0)))
    assert actions == [Dispense("media", pytest.approx(20000.0), 10000.0)]
    run.step(dsnap(30.0, 3.7e6, 300.0, PumpView(False, 70000.0)))
    assert run.step(dsnap(35.0, 3.7e6, 300.0, PumpView(False, 70000.0))) == []
    run.step(dsnap(40.0, 3.7e6, 300.0, PumpView(False, 70000.0)))
    assert sum("cap" in e.detail for e in run.events) == 1


def test_a_phase_waits_for_a_running_dilution_before_it_ends() -> None:
    run = _density_run()
    run.step(dsnap(3590.0, 3.0e6, 100.0, PumpView(False, 0.0)))
    run.step(dsnap(3600.0, 3.0e6, 110.0, PumpView(True, 10000.0)))
    assert run.state == RunState.RUNNING
    run.step(dsnap(3700.0, 1.8e6, 167.0, PumpView(False, 66667.0)))
    run.step(dsnap(3705.0, 1.8e6, 167.0, PumpView(False, 66667.0)))
    assert run.state == RunState.COMPLETE


def test_what_a_pump_moves_between_the_last_status_and_stop_is_counted() -> None:
    run = _started()
    run.step(snap(5.0))
    run.step(snap(10.0, media=PumpView(False, 0.0)))
    run.command(Command.HOLD, "check", 12.0)
    assert run.step(snap(15.0, media=PumpView(True, 8000.0))) == [StopPump("media")]
    run.command(Command.RESTART, "ok", 20.0)
    run.step(snap(25.0, media=PumpView(False, 8500.0)))  # it ran on until STOP arrived
    actions = run.step(snap(30.0, media=PumpView(False, 8500.0)))
    assert actions == [Dispense("media", 11500.0, 10000.0)]
