"""Each fault type, seen through the daemon's own drivers, and gone once it ends."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drivers.interfaces import DeviceError, DeviceRefused, DeviceTimeout
from simulators import fault_effects, plant
from simulators.faults import Fault
from simulators.instrument import VirtualInstrument

from .conftest import Rig


async def test_opcua_down_refuses_connections_then_the_controller_comes_back(rig: Rig) -> None:
    rig.schedule.add(Fault("opcua_down", at_s=60.0, duration_s=300.0))
    assert (await rig.bioreactor.read_units())["U01"].good
    await rig.advance(120.0)
    with pytest.raises(DeviceError):  # the open session dies with the connection
        await rig.bioreactor.read_units()
    with pytest.raises(DeviceError, match=r"[Cc]onnect|refused"):
        await rig.bioreactor.connect()  # and nothing listens any more
    await rig.advance(300.0)
    assert (await rig.bioreactor.read_units())["U02"].good


@pytest.mark.parametrize("bus", ["pumps", "probes"])
async def test_serial_cut_silences_a_bus_for_its_duration(rig: Rig, bus: str) -> None:
    rig.schedule.add(Fault("serial_cut", at_s=10.0, duration_s=60.0, bus=bus))

    async def ask() -> object:
        if bus == "pumps":
            return await rig.pumps[("U01", "media")].status()
        return await rig.probes["U02"].read()

    await ask()
    await rig.advance(20.0)
    with pytest.raises(DeviceTimeout):
        await ask()
    await rig.advance(60.0)
    await ask()


async def test_garbage_corrupts_replies_until_it_ends(rig: Rig) -> None:
    rig.schedule.add(Fault("garbage", at_s=10.0, duration_s=60.0, bus="pumps", rate=1.0))
    rig.schedule.add(Fault("garbage", at_s=10.0, duration_s=60.0, bus="probes", rate=1.0))
    await rig.advance(20.0)
    with pytest.raises(DeviceTimeout):
        await rig.pumps[("U02", "harvest")].status()
    with pytest.raises(DeviceError):
        await rig.probes["U01"].read()
    assert rig.pump_bus.crc_errors >= 1
    await rig.advance(60.0)
    await rig.pumps[("U02", "harvest")].status()
    assert (await rig.probes["U01"].read()).quality == "good"


async def test_sensor_stuck_freezes_probe_and_temperature_bit_for_bit(rig: Rig) -> None:
    await rig.bioreactor.write_heaters({"U01": 100.0})
    rig.schedule.add(Fault("sensor_stuck", at_s=100.0, duration_s=600.0, unit="U01"))
    await rig.advance(100.0)
    frozen = (await rig.bioreactor.read_units())["U01"].temperature
    qualities = []
    for _ in range(4):
        await rig.advance(60.0)
        assert (await rig.bioreactor.read_units())["U01"].temperature == frozen
        qualities.append((await rig.probes["U01"].read()).quality)
    assert qualities[-1] == "stale"  # the driver's frozen-sensor check sees it
    assert rig.instrument.state[0, plant.SENSOR_TEMPERATURE] > frozen + 1.0  # the liquid warms
    assert (await rig.probes["U02"].read()).quality == "good"  # only U01 is stuck
    await rig.advance(600.0)
    assert (await rig.bioreactor.read_units())["U01"].temperature > frozen + 1.0
    await rig.probes["U01"].read()
    assert (await rig.probes["U01"].read()).quality == "good"


async def test_sensor_nan_makes_readings_bad_and_sets_the_probe_failure_bits(rig: Rig) -> None:
    await rig.instrument.inject(Fault("sensor_nan", unit="U02", duration_s=60.0))
    reading = await rig.probes["U02"].read()
    assert reading.quality == "bad" and math.isnan(reading.density)
    assert reading.status & 0x4 and reading.status & 0x1
    assert not (await rig.bioreactor.read_units())["U02"].good
    assert (await rig.bioreactor.read_units())["U01"].good
    await rig.advance(61.0)
    assert (await rig.probes["U02"].read()).quality == "good"
    assert (await rig.bioreactor.read_units())["U02"].good


async def test_sensor_spike_reads_absurdly_high_on_the_named_sensor_only(rig: Rig) -> None:
    await rig.instrument.inject(
        Fault("sensor_spike", unit="U01", duration_s=30.0, sensor="temperature")
    )
    true = rig.instrument.state[0, plant.SENSOR_TEMPERATURE]
    spiked = (await rig.bioreactor.read_units())["U01"].temperature
    assert spiked == pytest.approx(true + fault_effects.SPIKE_TEMPERATURE_K, abs=0.1)
    density = (await rig.probes["U01"].read()).density
    assert density < 2 * rig.instrument.state[0, plant.DENSITY]  # the probe is not hit
    await rig.instrument.inject(Fault("sensor_spike", unit="U02", duration_s=30.0, sensor="probe"))
    assert (await rig.probes["U02"].read()).density > 2 * rig.instrument.state[1, plant.DENSITY]
    await rig.advance(31.0)
    assert (await rig.bioreactor.read_units())["U01"].temperature == pytest.approx(true, abs=0.2)
    assert (await rig.probes["U02"].read()).density < 2 * rig.instrument.state[1, plant.DENSITY]


@pytest.mark.parametrize(("kind", "alarm"), [("pump_stall", "STALL"), ("cover_open", "COVER")])
async def test_pump_alarms_latch_until_clear_and_clear_fails_while_the_cause_lasts(
    rig: Rig, kind: str, alarm: str
) -> None:
    pump = rig.pumps[("U01", "media")]
    await pump.set_speed(10.0)
    await pump.run()
    rig.schedule.add(Fault(kind, at_s=10.0, unit="U01", pump="media", duration_s=120.0))
    await rig.advance(20.0)
    status = await pump.status()
    assert status.state == "ALARM" and alarm in status.alarms
    with pytest.raises(DeviceRefused) as refused:
        await pump.clear_alarms()
    assert refused.value.code == "ALARM"
    volume = rig.instrument.state[0, plant.VOLUME_ML]
    await rig.advance(60.0)
    assert rig.instrument.state[0, plant.VOLUME_ML] == volume  # the motor stopped
    await rig.advance(60.0)
    await pump.clear_alarms()
    assert (await pump.status()).alarms == frozenset()
    # Without a duration the cause is momentary: the alarm is latched, CLEAR works at once.
    await rig.instrument.inject(Fault(kind, unit="U01", pump="media"))
    assert alarm in (await pump.status()).alarms
    await pump.clear_alarms()
    assert (await pump.status()).state == "STOP"


async def test_heater_fail_leaves_the_liquid_cooling_while_the_controller_keeps_the_output(
    rig: Rig,
) -> None:
    await rig.bioreactor.write_heaters({"U01": 100.0, "U02": 100.0})
    rig.schedule.add(Fault("heater_fail", at_s=10.0, duration_s=1800.0, unit="U01"))
    await rig.advance(1800.0)
    readings = await rig.bioreactor.read_units()
    assert rig.instrument.arrays.heater_pct[0] == 100.0  # the controller still has it
    assert readings["U01"].temperature == pytest.approx(22.0, abs=0.2)
    assert readings["U02"].temperature > 30.0
    await rig.advance(1200.0)
    assert (await rig.bioreactor.read_units())["U01"].temperature > 27.0


async def test_cold_bolus_adds_its_volume_and_heat_at_once(rig: Rig) -> None:
    rig.instrument.state[:, plant.TEMPERATURE] = 37.0
    rig.schedule.add(Fault("cold_bolus", at_s=30.0, unit="U02", volume_ml=50.0, temperature=4.0))
    await rig.advance(28.0)
    before = rig.instrument.state[1, plant.TEMPERATURE]
    await rig.advance(4.0)
    capacity = plant.WATER_J_PER_ML_K * 100.0 + rig.instrument.parameters.vessel_j_per_k
    mixed = (capacity * before + plant.WATER_J_PER_ML_K * 50.0 * 4.0) / (
        capacity + plant.WATER_J_PER_ML_K * 50.0
    )
    assert rig.instrument.state[1, plant.TEMPERATURE] == pytest.approx(mixed, abs=0.05)
    assert (await rig.bioreactor.read_units())["U02"].volume_ml == pytest.approx(150.0)
    assert (await rig.bioreactor.read_units())["U01"].volume_ml == pytest.approx(100.0)


async def test_ambient_step_moves_every_unit_towards_the_new_ambient(rig: Rig) -> None:
    rig.schedule.add(Fault("ambient_step", at_s=60.0, temperature=30.0, duration_s=12 * 3600.0))
    await rig.advance(6 * 3600.0)
    readings = await rig.bioreactor.read_units()
    assert all(r.temperature == pytest.approx(30.0, abs=0.2) for r in readings.values())
    await rig.advance(12 * 3600.0)  # the step ended: back to 22 °C
    assert (await rig.bioreactor.read_units())["U01"].temperature == pytest.approx(22.0, abs=0.2)


async def _run_offline(faults: list[Fault], jumps: list[float]) -> np.ndarray:
    """The physics of an instrument that was never started (no sockets), at the given times."""
    t = [0.0]
    instrument = VirtualInstrument(2, now=lambda: t[0], seed=5, faults=faults)
    instrument.arrays.heater_pct[:] = 60.0
    for jump in jumps:
        t[0] = jump
        await instrument.advance_to(jump)
    return instrument.state.copy()


async def test_faults_apply_at_their_simulated_time_however_the_clock_jumps() -> None:
    faults = [
        Fault("cold_bolus", at_s=123.0, unit="U01", volume_ml=30.0, temperature=4.0),
        Fault("heater_fail", at_s=500.0, duration_s=700.0, unit="U02"),
        Fault("ambient_step", at_s=900.0, temperature=28.0),
    ]
    one_jump = await _run_offline(faults, [3600.0])
    at_each_fault = await _run_offline(faults, [123.0, 500.0, 900.0, 1200.0, 3600.0])
    assert np.array_equal(one_jump, at_each_fault)
    assert not np.array_equal(one_jump, await _run_offline([], [3600.0]))
