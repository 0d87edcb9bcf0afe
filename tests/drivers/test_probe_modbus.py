"""ModbusDensityProbe (pymodbus) over a real pseudo-terminal against the RTU firmware stub."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator

import pytest

from drivers.interfaces import DeviceRefused, DeviceTimeout, Probe
from drivers.probe_modbus import ModbusDensityProbe, ProbeBus
from firmware_stubs.probe import DensityProbeFirmware, ModbusRtuBusFirmware
from simulators.pty_bus import PtyBus

TIMEOUT_S = 0.1


class Rig:
    def __init__(self) -> None:
        self.probes = {i: DensityProbeFirmware(i) for i in (1, 2, 40)}
        for i, probe in self.probes.items():
            probe.set_measurement(1.0e6 * i, 36.0 + i / 100)
        self.firmware = ModbusRtuBusFirmware(list(self.probes.values()))
        self.pty = PtyBus(self.firmware.feed)
        self.bus = ProbeBus(self.pty.port_path, timeout_s=TIMEOUT_S, retries=1)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    await r.pty.start()
    await r.bus.open()
    yield r
    await r.bus.close()
    r.pty.close()


async def test_reads_values_of_several_probes(rig: Rig) -> None:
    for i in (1, 2, 40):
        probe = ModbusDensityProbe(rig.bus, i)
        assert isinstance(probe, Probe)
        reading = await probe.read()
        assert reading.density == pytest.approx(1.0e6 * i)
        assert reading.temperature == pytest.approx(36.0 + i / 100, abs=1e-5)
        assert (reading.status, reading.quality) == (0, "good")


@pytest.mark.parametrize(
    ("density", "temperature", "status", "quality"),
    [
        (2.0e6, 37.0, 0x0, "good"),
        (2.0e6, 37.0, 0x1, "bad"),
        (2.0e6, 37.0, 0x2, "bad"),
        (2.0e6, 37.0, 0x4, "bad"),
        (math.nan, 37.0, 0x0, "bad"),
        (math.inf, 37.0, 0x0, "bad"),
        (-5.0, 37.0, 0x0, "bad"),
        (2.0e6, math.nan, 0x0, "bad"),
        (2.0e6, 400.0, 0x0, "bad"),
    ],
)
async def test_quality(
    rig: Rig, density: float, temperature: float, status: int, quality: str
) -> None:
    rig.probes[2].set_measurement(density, temperature, status)
    reading = await ModbusDensityProbe(rig.bus, 2).read()
    assert (reading.status, reading.quality) == (status, quality)


async def test_probe_is_invalid_until_first_measurement(rig: Rig) -> None:
    rig.probes[1].__init__(1)  # power cycle
    assert (await ModbusDensityProbe(rig.bus, 1).read()).quality == "bad"


async def test_unknown_device_times_out_within_bound_and_bus_recovers(rig: Rig) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(6):  # beyond pymodbus' retries+3 "closing connection" counter
        start = loop.time()
        with pytest.raises(DeviceTimeout):
            await ModbusDensityProbe(rig.bus, 99).read()
        assert loop.time() - start <= 2 * TIMEOUT_S + 0.2
    assert (await ModbusDensityProbe(rig.bus, 1).read()).quality == "good"


async def test_exception_response_is_refused(rig: Rig) -> None:
    async with rig.bus.lock:
        with pytest.raises(DeviceRefused) as info:
            await rig.bus.read_holding_registers(1, 2093, 2)
    assert info.value.code == "2"


async def test_concurrent_reads_share_the_bus(rig: Rig) -> None:
    probes = [ModbusDensityProbe(rig.bus, i) for i in (1, 2, 40, 1, 2)]
    readings = await asyncio.gather(*(p.read() for p in probes))
    assert [r.density for r in readings] == pytest.approx([1e6, 2e6, 40e6, 1e6, 2e6])


async def test_garbage_is_survived_by_retry(rig: Rig) -> None:
    rig.bus.retries = 4
    rig.pty.set_garbage(0.2, random.Random(7))
    probe = ModbusDensityProbe(rig.bus, 40)
    for _ in range(10):
        reading = await probe.read()
        assert (reading.density, reading.quality) == (40e6, "good")
    assert rig.pty.replies_corrupted > 0


async def test_stale_detection(rig: Rig) -> None:
    probe = ModbusDensityProbe(rig.bus, 1, stale_after=2)
    qualities = [(await probe.read()).quality for _ in range(3)]
    assert qualities == ["good", "good", "stale"]
    rig.probes[1].set_measurement(1.0e6 + 1, 36.01)
    assert (await probe.read()).quality == "good"
