"""Device loss through the whole daemon stack in-process: real drivers, control loop, engine.

A virtual instrument on a virtual clock, faults injected where the hardware would fail. What the
operator must see (SPEC §4): a short loss is an alarm that clears by itself with the run going on
and a transfer resumed for its remainder only; a long one holds the run with a reason naming the
device; no exception ever escapes the tick.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.clock import VirtualClock
from protocols.loader import load_protocol_text
from protocols.state_machine import Command, RunState
from shuttled.devices import Devices
from shuttled.engine.unit_run import UnitRun
from shuttled.loop.control_loop import ControlLoop
from shuttled.records.journal import Journal
from shuttled.simulation.instrument_config import config_for_instrument, trust_each_other
from simulators.faults import Fault
from simulators.instrument import VirtualInstrument

FEED = """\
shuttle_protocol: 1
name: feed
version: 1.0.0
description: One 30 mL feed at 10 mL/min, then an hour at 37 °C
phases:
  - name: feed
    temperature: 37.0
    steps:
      - transfer: {pump: media, volume_ml: 30, rate_ml_min: 10}
    duration: 1h
"""


@dataclass
class Stack:
    clock: VirtualClock
    instrument: VirtualInstrument
    loop: ControlLoop
    run: UnitRun

    async def ticks(self, n: int) -> None:
        for _ in range(n):
            await self.clock.sleep_until(self.clock.now() + self.loop.config.control_period_s)
            await self.loop.tick(self.clock.now())


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    clock = VirtualClock()
    instrument = VirtualInstrument(1, now=clock.now, seed=2)
    await instrument.start()
    clock.add_advance_listener(instrument.advance_to)
    config = config_for_instrument(instrument.endpoints(), tmp_path, 0, users_file=None)
    daemon_config = config.model_copy(update={"device_timeout_s": 0.2}).to_daemon_config()
    trust_each_other(instrument.endpoints(), daemon_config)  # the device link is encrypted
    devices = Devices(daemon_config)
    await devices.open()
    journal = Journal(tmp_path / "journal.sqlite3")
    run = UnitRun("U01")
    loop = ControlLoop(daemon_config, devices, {"U01": run}, clock, journal)
    run.start(load_protocol_text(FEED), {}, "R1", clock.now(), "test")
    yield Stack(clock, instrument, loop, run)
    await devices.close()
    journal.close()
    await instrument.stop()


def _media(stack: Stack) -> float:
    return stack.instrument.pump_firmware[("U01", "media")].dispensed_ul


async def test_a_bus_cut_mid_dispense_is_an_alarm_and_only_the_remainder_follows(
    stack: Stack,
) -> None:
    await stack.ticks(12)  # one minute: 10 mL of the 30 mL are in
    assert 5000.0 < _media(stack) < 15000.0
    await stack.instrument.inject(Fault("serial_cut", bus="pumps", duration_s=40.0))
    await stack.ticks(4)
    assert "PUMP_MEDIA_LOST" in stack.loop.alarms["U01"]
    pump = stack.instrument.pump_firmware[("U01", "media")]
    assert not pump.running and "WATCHDOG" in pump.alarms  # stopped by itself, not by us
    await stack.ticks(40)
    assert stack.loop.alarms["U01"] == {}
    assert stack.run.state == RunState.RUNNING and stack.run.hold_reason == ""
    assert stack.run.delivered_ul["media"] == pytest.approx(30000.0, abs=1.0)
    assert _media(stack) == pytest.approx(30000.0, abs=1.0)  # never a drop more


async def test_a_loss_beyond_device_loss_hold_s_holds_the_run_naming_the_device(
    stack: Stack,
) -> None:
    await stack.ticks(6)
    await stack.instrument.inject(Fault("serial_cut", bus="pumps", duration_s=300.0))
    await stack.ticks(14)  # 70 s
    assert stack.run.state == RunState.HELD
    assert stack.run.hold_reason.startswith("device lost: pump media on U01 for 6")
    delivered_at_hold = _media(stack)
    await stack.ticks(60)  # the line comes back: the alarm clears, the hold stays
    assert "PUMP_MEDIA_LOST" not in stack.loop.alarms["U01"]
    assert stack.run.state == RunState.HELD
    assert _media(stack) == delivered_at_hold


async def test_a_controller_restart_turns_the_heater_off_and_recovers(stack: Stack) -> None:
    await stack.ticks(24)
    assert stack.loop.heater[0] > 0.0
    await stack.instrument.inject(Fault("opcua_down", duration_s=30.0))
    await stack.ticks(2)
    assert "BIOREACTOR_LOST" in stack.loop.alarms["U01"]
    assert stack.loop.heater[0] == 0.0  # the safe state for a controller we cannot see
    await stack.ticks(12)
    assert "BIOREACTOR_LOST" not in stack.loop.alarms["U01"]
    assert stack.loop.heater[0] > 0.0 and stack.run.state == RunState.RUNNING
    bioreactor = next(iter(stack.loop.devices.bioreactors.values()))
    assert [c.health for c in bioreactor.health_changes][-2:] == ["LOST", "CONNECTED"]


async def test_a_temperature_sensor_unusable_beyond_the_hold_time_holds_with_the_heater_off(
    stack: Stack,
) -> None:
    await stack.ticks(24)
    await stack.instrument.inject(Fault("sensor_nan", unit="U01", duration_s=300.0))
    await stack.ticks(6)  # 30 s: an alarm, the heater off, the run going on
    assert "TEMPERATURE_SENSOR_BAD" in stack.loop.alarms["U01"]
    assert stack.loop.heater[0] == 0.0 and stack.run.state == RunState.RUNNING
    await stack.ticks(7)  # past device_loss_hold_s (60 s)
    assert stack.run.state == RunState.HELD
    assert stack.run.hold_reason == "temperature sensor unusable for 60 s"
    await stack.ticks(60)  # the sensor is back: the alarm clears, the heater waits for an operator
    assert "TEMPERATURE_SENSOR_BAD" not in stack.loop.alarms["U01"]
    assert stack.run.state == RunState.HELD and stack.loop.heater[0] == 0.0
    stack.run.command(Command.RESTART, "sensor replaced", stack.clock.now(), user="alice")
    await stack.ticks(2)
    assert stack.run.state == RunState.RUNNING and stack.loop.heater[0] > 0.0


async def test_a_short_sensor_dropout_is_only_an_alarm(stack: Stack) -> None:
    await stack.ticks(24)
    await stack.instrument.inject(Fault("sensor_nan", unit="U01", duration_s=50.0))
    await stack.ticks(30)
    assert stack.run.state == RunState.RUNNING and stack.run.hold_reason == ""
    assert "TEMPERATURE_SENSOR_BAD" not in stack.loop.alarms["U01"]
    assert stack.loop.heater[0] > 0.0
