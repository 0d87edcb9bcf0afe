"""The drivers under line faults: they recover by themselves and never block past their bound."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from drivers.interfaces import DeviceError
from drivers.probe_modbus import ModbusDensityProbe, ProbeBus
from drivers.pump_serial import PumpBus, SerialPump
from simulators.faults import Fault
from simulators.instrument import VirtualInstrument

TIMEOUT_S = 0.2


@pytest.fixture
async def lines() -> AsyncIterator[tuple[VirtualInstrument, PumpBus, ProbeBus]]:
    instrument = VirtualInstrument(2, now=lambda: 0.0, seed=9)
    ends = instrument.endpoints()
    pumps = PumpBus(ends.pumps[0].port, timeout_s=TIMEOUT_S, retries=2)
    probes = ProbeBus(ends.probes[0].port, timeout_s=TIMEOUT_S, retries=2)
    await instrument.start()
    yield instrument, pumps, probes
    await pumps.close()
    await probes.close()
    await instrument.stop()


async def test_two_percent_corrupted_frames_cost_neither_a_failure_nor_a_timeout(
    lines: tuple[VirtualInstrument, PumpBus, ProbeBus],
) -> None:
    instrument, pump_bus, probe_bus = lines
    for bus in ("pumps", "probes"):
        await instrument.inject(Fault("garbage", bus=bus, rate=0.02, duration_s=3600.0))
    pump = SerialPump(pump_bus, 1)
    probe = ModbusDensityProbe(probe_bus, 1)
    for _ in range(150):
        assert (await pump.status()).state == "STOP"
        assert (await probe.read()).quality == "good"
    every_bus = instrument.pump_buses + instrument.probe_buses
    corrupted = sum(bus.replies_corrupted for bus, _ in every_bus)
    assert corrupted > 0
    assert pump_bus.timeouts == 0  # a damaged reply fails its attempt at once
    assert probe_bus.crc_errors > 0 and probe_bus.timeouts == probe_bus.crc_errors


async def test_a_cut_line_fails_within_the_bound_and_then_fast_until_it_answers(
    lines: tuple[VirtualInstrument, PumpBus, ProbeBus],
) -> None:
    instrument, pump_bus, probe_bus = lines
    pump = SerialPump(pump_bus, 2)
    probe = ModbusDensityProbe(probe_bus, 2)
    await pump.status()
    await probe.read()
    for bus in ("pumps", "probes"):
        await instrument.inject(Fault("serial_cut", bus=bus, duration_s=60.0))
    for call, attempts in ((pump.status, 3), (probe.read, 3)):
        started = time.monotonic()
        with pytest.raises(DeviceError):
            await call()
        assert time.monotonic() - started < attempts * TIMEOUT_S * 2 + 0.3
        started = time.monotonic()
        with pytest.raises(DeviceError):
            await call()  # the line is known silent: a single attempt
        assert time.monotonic() - started < TIMEOUT_S * 2 + 0.3
    for bus, _ in instrument.pump_buses + instrument.probe_buses:
        bus.set_cut(False)
    assert (await pump.status()).state == "STOP"
    assert (await probe.read()).quality == "good"
    assert not pump_bus.silent and not probe_bus.silent


async def test_nan_readings_are_bad_not_errors(
    lines: tuple[VirtualInstrument, PumpBus, ProbeBus],
) -> None:
    instrument, _, probe_bus = lines
    await instrument.inject(Fault("sensor_nan", unit="U01", duration_s=60.0))
    await instrument.advance_to(1.0)
    reading = await ModbusDensityProbe(probe_bus, 1).read()
    assert reading.quality == "bad"
