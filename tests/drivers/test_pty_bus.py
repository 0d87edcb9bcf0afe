"""PtyBus as a serial port seen through pyserial: raw bytes, no echo, fault hooks, reopen."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
import serial

from simulators.pty_bus import PtyBus


async def read_exactly(ser: serial.Serial, n: int, timeout_s: float = 1.0) -> bytes:
    """Await n bytes via the event loop's reader callback (no polling)."""
    loop = asyncio.get_running_loop()
    buf = bytearray()
    done: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        buf.extend(ser.read(4096))
        if len(buf) >= n and not done.done():
            done.set_result(None)

    loop.add_reader(ser.fileno(), on_readable)
    try:
        await asyncio.wait_for(done, timeout_s)
    finally:
        loop.remove_reader(ser.fileno())
    return bytes(buf)


@pytest.fixture
async def pty() -> AsyncIterator[PtyBus]:
    bus = PtyBus(lambda data: data.upper())
    await bus.start()
    yield bus
    bus.close()


def open_port(pty: PtyBus) -> serial.Serial:
    return serial.Serial(pty.port_path, baudrate=115200, timeout=0)


async def test_raw_bytes_both_ways_without_echo(pty: PtyBus) -> None:
    ser = open_port(pty)
    payload = b"ab\r\n\x00\x03\x11\x13\xff\n"  # CR/LF, ^C, XON/XOFF must pass untouched
    ser.write(payload)
    assert await read_exactly(ser, len(payload)) == payload.upper()
    ser.close()


async def test_cut_drops_everything_until_restored(pty: PtyBus) -> None:
    ser = open_port(pty)
    pty.set_cut(True)
    ser.write(b"lost\n")
    with pytest.raises(TimeoutError):
        await read_exactly(ser, 1, timeout_s=0.1)
    pty.set_cut(False)
    ser.write(b"back\n")
    assert await read_exactly(ser, 5) == b"BACK\n"
    ser.close()


async def test_garbage_corrupts_one_byte_per_hit(pty: PtyBus) -> None:
    ser = open_port(pty)
    pty.set_garbage(1.0, random.Random(3))
    ser.write(b"abcdef\n")
    got = await read_exactly(ser, 7)
    assert sum(a != b for a, b in zip(got, b"ABCDEF\n", strict=True)) == 1
    assert pty.replies_corrupted == 1
    ser.close()


async def test_driver_can_close_and_reopen(pty: PtyBus) -> None:
    for i in range(3):
        ser = open_port(pty)
        ser.write(b"x%d" % i)
        assert await read_exactly(ser, 2) == b"X%d" % i
        ser.close()


async def test_send_injects_unsolicited_bytes(pty: PtyBus) -> None:
    ser = open_port(pty)
    pty.send(b"hello")
    assert await read_exactly(ser, 5) == b"hello"
    ser.close()


async def test_large_replies_are_buffered_not_lost(pty: PtyBus) -> None:
    ser = open_port(pty)
    pty.handler = lambda data: data * 15000  # beyond the pty kernel buffer, within ours
    ser.write(b"0123")
    assert await read_exactly(ser, 60000, timeout_s=5.0) == b"0123" * 15000
    ser.close()
