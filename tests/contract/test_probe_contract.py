"""The density probe contract (SPEC §8), for the Modbus driver over a pty and in-process."""

from __future__ import annotations

import math

import pytest
from contract_rig import Instrument

from drivers.interfaces import DeviceTimeout, Probe
from drivers.probe_modbus import ModbusDensityProbe
from simulators.faults import Fault


async def test_a_reading_is_what_the_probe_measures(instrument: Instrument) -> None:
    probe = instrument.probes["U01"]
    assert isinstance(probe, Probe)
    reading = await probe.read()
    assert reading.quality == "good" and reading.status == 0
    assert reading.density == pytest.approx(0.5e6, rel=0.2)  # SPEC §1: 0.5e6 viable cells/mL
    assert reading.temperature == pytest.approx(22.0, abs=0.5)


async def test_a_failed_sensor_reads_bad(instrument: Instrument) -> None:
    await instrument.virtual.inject(Fault("sensor_nan", unit="U02", sensor="probe", duration_s=60))
    reading = await instrument.probes["U02"].read()
    assert reading.quality == "bad" and math.isnan(reading.density)
    assert (await instrument.probes["U01"].read()).quality == "good"
    await instrument.advance(61.0)
    assert (await instrument.probes["U02"].read()).quality == "good"


async def test_an_absent_device_times_out(instrument: Instrument) -> None:
    bus = instrument.probes["U01"].bus
    with pytest.raises(DeviceTimeout):
        await ModbusDensityProbe(bus, 9).read()
    assert (await instrument.probes["U01"].read()).quality == "good"  # the bus still works
