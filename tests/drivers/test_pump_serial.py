"""SerialPump/PumpBus over a real pseudo-terminal against the pump firmware stub."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from drivers.interfaces import (
    DeviceDisconnected,
    DeviceError,
    DeviceRefused,
    DeviceTimeout,
    Pump,
    PumpIdentity,
)
from drivers.pump_serial import PumpBus, SerialPump
from firmware_stubs.pump import PumpBusFirmware, PumpFirmware, encode_frame
from simulators.pty_bus import PtyBus

TIMEOUT_S = 0.1
RETRIES = 2


class Rig:
    """Three pumps on one pty, a hand-held clock and an optional filter on the request stream."""

    def __init__(self) -> None:
        self.now = 0.0
        self.firmware = PumpBusFirmware(
            [PumpFirmware(a, serial_number=f"SN{a:04d}") for a in (1, 2, 7)]
        )
        self.requests: list[bytes] = []
        self.drop_reply: Callable[[bytes], bool] = lambda data: False
        self.drop_request: Callable[[bytes], bool] = lambda data: False
        self.pty = PtyBus(self._handle)
        self.bus = PumpBus(self.pty.port_path, timeout_s=TIMEOUT_S, retries=RETRIES)

    def _handle(self, data: bytes) -> bytes:
        self.requests.append(data)
        if self.drop_request(data):
            return b""
        reply = self.firmware.feed(data, self.now)
        return b"" if self.drop_reply(data) else reply

    def advance(self, dt: float) -> None:
        self.now += dt
        self.firmware.advance(dt, self.now)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    await r.pty.start()
    await r.bus.open()
    yield r
    await r.bus.close()
    r.pty.close()


async def test_identify_and_status_of_several_pumps(rig: Rig) -> None:
    pumps = {a: SerialPump(rig.bus, a) for a in (1, 2, 7)}
    assert isinstance(pumps[1], Pump)
    for a, pump in pumps.items():
        assert await pump.identify() == PumpIdentity("CSP-100", "1.4.2", f"SN{a:04d}")
        s = await pump.status()
        assert (s.state, s.rpm, s.direction, s.dispensed_ul, s.alarms) == (
            "STOP",
            10.0,
            "CW",
            0.0,
            frozenset(),
        )


async def test_commands_reach_the_right_pump(rig: Rig) -> None:
    p2, p7 = SerialPump(rig.bus, 2), SerialPump(rig.bus, 7)
    await p2.calibrate(100.0)
    await p2.set_speed(60.0)
    await p2.set_direction("CCW")
    await p2.set_watchdog(5000)
    await p2.run()
    rig.advance(2.0)
    s2, s7 = await p2.status(), await p7.status()
    assert (s2.state, s2.rpm, s2.direction, s2.dispensed_ul) == ("RUN", 60.0, "CCW", 200.0)
    assert (s7.state, s7.dispensed_ul) == ("STOP", 0.0)
    await p2.stop()
    assert (await p2.status()).state == "STOP"


async def test_dispense_runs_to_completion(rig: Rig) -> None:
    pumps = [SerialPump(rig.bus, a) for a in (1, 7)]
    await asyncio.gather(*(p.dispense(250.0, 1600.0) for p in pumps))
    s = await pumps[0].status()
    assert (s.state, s.remaining_ul) == ("RUN", 250.0)
    while rig.firmware.pump(1).running:
        rig.advance(0.5)
    for p in pumps:
        s = await p.status()
        assert (s.state, s.dispensed_ul, s.remaining_ul) == ("STOP", 250.0, 0.0)


async def test_err_reply_raises_refused_without_retry(rig: Rig) -> None:
    pump = SerialPump(rig.bus, 1)
    before = len(rig.requests)
    with pytest.raises(DeviceRefused) as info:
        await pump.set_speed(500.0)
    assert info.value.code == "RANGE"
    assert len(rig.requests) == before + 1
    rig.firmware.pump(1).inject_alarm("COVER", persist=True)
    with pytest.raises(DeviceRefused) as info:
        await pump.clear_alarms()
    assert info.value.code == "ALARM"
    with pytest.raises(DeviceRefused):
        await pump.dispense(10.0, 800.0)
    assert (await pump.status()).alarms == {"COVER"}


async def test_cut_bus_times_out_in_bounded_time_then_recovers(rig: Rig) -> None:
    pump = SerialPump(rig.bus, 1)
    rig.pty.set_cut(True)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(DeviceTimeout):
        await pump.status()
    elapsed = loop.time() - start
    assert (RETRIES + 1) * TIMEOUT_S * 0.9 <= elapsed <= (RETRIES + 1) * TIMEOUT_S + 0.2
    assert rig.bus.timeouts == RETRIES + 1
    rig.pty.set_cut(False)
    assert (await pump.status()).state == "STOP"


async def test_garbage_is_survived_by_retries(rig: Rig) -> None:
    rig.bus.retries = 5
    rig.pty.set_garbage(0.3, random.Random(42))
    pump = SerialPump(rig.bus, 2)
    for _ in range(40):
        assert (await pump.status()).state == "STOP"
    assert rig.pty.replies_corrupted > 0
    # Each corrupted reply fails its attempt at once (no timeout waited), except one whose
    # damaged byte was the \r or \n of its frame: the other terminator still ends the line.
    assert rig.bus.timeouts == 0
    assert rig.pty.replies_corrupted - 3 <= rig.bus.crc_errors <= rig.pty.replies_corrupted


async def test_concurrent_requests_are_serialised(rig: Rig) -> None:
    """Replies are delayed; without the lock the second request would overtake the first."""
    outstanding = 0
    peak = 0
    loop = asyncio.get_running_loop()

    def deferred(data: bytes) -> bytes:
        nonlocal outstanding, peak
        reply = rig.firmware.feed(data, rig.now)
        if reply:
            outstanding += 1
            peak = max(peak, outstanding)
            loop.call_later(0.01, release, reply)
        return b""

    def release(reply: bytes) -> None:
        nonlocal outstanding
        outstanding -= 1
        rig.pty.send(reply)

    rig.pty.handler = deferred
    p1, p2 = SerialPump(rig.bus, 1), SerialPump(rig.bus, 2)
    ids = await asyncio.gather(p1.identify(), p2.identify(), p1.status(), p2.status())
    assert [ids[0].serial, ids[1].serial] == ["SN0001", "SN0002"]
    assert peak == 1
    assert rig.bus.timeouts == 0


async def test_stale_reply_is_ignored(rig: Rig) -> None:
    pump = SerialPump(rig.bus, 1)
    rig.pty.handler = lambda data: encode_frame("!1:200 OK BOGUS") + rig.firmware.feed(data, 0.0)
    assert (await pump.identify()).serial == "SN0001"
    assert rig.bus.stale_replies == 1


async def test_dispense_not_repeated_when_only_the_reply_was_lost(rig: Rig) -> None:
    pump = SerialPump(rig.bus, 1)
    lost = [True]

    def drop_first_dispense_reply(data: bytes) -> bool:
        if b"DISPENSE" in data and lost[0]:
            lost[0] = False
            return True
        return False

    rig.drop_reply = drop_first_dispense_reply
    await pump.dispense(100.0, 800.0)
    assert sum(b"DISPENSE" in r for r in rig.requests) == 1
    assert rig.firmware.pump(1).remaining_ul == 100.0


async def test_dispense_resent_when_the_request_was_lost(rig: Rig) -> None:
    pump = SerialPump(rig.bus, 1)
    lost = [True]

    def drop_first_dispense(data: bytes) -> bool:
        if b"DISPENSE" in data and lost[0]:
            lost[0] = False
            return True
        return False

    rig.drop_request = drop_first_dispense
    await pump.dispense(100.0, 800.0)
    assert sum(b"DISPENSE" in r for r in rig.requests) == 2
    assert rig.firmware.pump(1).remaining_ul == 100.0


async def test_dispense_gives_up_within_budget_on_a_dead_bus(rig: Rig) -> None:
    pump = SerialPump(rig.bus, 1)
    rig.drop_reply = lambda data: any(b"DISPENSE" in r for r in rig.requests)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(DeviceTimeout):
        await pump.dispense(100.0, 800.0)
    assert loop.time() - start <= (RETRIES + 1) * TIMEOUT_S + 0.2  # baseline STATUS was fast
    assert sum(b"DISPENSE" in r for r in rig.requests) == 1  # never blindly repeated
    assert sum(b"STATUS" in r for r in rig.requests) == 1 + RETRIES


async def test_port_opened_late_and_reopened_after_close(rig: Rig, tmp_path: Path) -> None:
    link = tmp_path / "ttyPUMP"
    bus = PumpBus(str(link), timeout_s=TIMEOUT_S, retries=1)
    pump = SerialPump(bus, 7)
    with pytest.raises(DeviceDisconnected):
        await pump.status()
    link.symlink_to(rig.pty.port_path)
    assert (await pump.identify()).serial == "SN0007"
    await rig.bus.close()  # the fixture's bus; two openers on one pty would steal bytes
    await bus.close()
    assert not bus.is_open
    assert (await pump.status()).state == "STOP"
    assert bus.reopens == 1
    await bus.close()


async def test_port_vanishing_raises_device_error(rig: Rig) -> None:
    pump = SerialPump(rig.bus, 1)
    assert (await pump.status()).state == "STOP"
    rig.pty.close()
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(DeviceError):
        await pump.status()
    assert loop.time() - start <= (RETRIES + 1) * TIMEOUT_S + 0.2
