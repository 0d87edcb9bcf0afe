"""Byte timing on the pseudo-terminal buses: real bytes, timed with the event loop's clock.

Every test writes through the slave side of a real pty and awaits the reply through the event
loop's reader callback, measuring with `loop.time()`; nothing sleeps or polls. The expected
times follow `simulators.pty_bus`: (request + reply bytes) × bits per byte / baud, plus the
turnaround, divided by the clock's speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import serial

from firmware_stubs.pump import decode_frame, encode_frame
from simulators.instrument import VirtualInstrument
from simulators.pty_bus import LineTiming, PtyBus, SerialTiming

REQUEST = b"@1:7 STATUS\r\n"  # 13 bytes
REPLY = b"!" + b"x" * 98 + b"\n"  # 100 bytes
TURNAROUND_S = 0.002
# Upper bound on what a loaded test machine adds to a round trip; the timed round trips last
# 50–120 ms, so the lower bounds, which are exact, carry the test.
SLACK_S = 0.25


def on_wire_s(n_bytes: int, baud: float, bits: int = 10) -> float:
    return n_bytes * bits / baud


async def round_trip(ser: serial.Serial, request: bytes, n_reply: int) -> tuple[float, bytes]:
    """Write `request`, await `n_reply` bytes; return the elapsed loop time and the bytes."""
    loop = asyncio.get_running_loop()
    buf = bytearray()
    done: asyncio.Future[float] = loop.create_future()

    def on_readable() -> None:
        buf.extend(ser.read(4096))
        if len(buf) >= n_reply and not done.done():
            done.set_result(loop.time())

    loop.add_reader(ser.fileno(), on_readable)
    try:
        start = loop.time()
        ser.write(request)
        finished = await asyncio.wait_for(done, 5.0)
    finally:
        loop.remove_reader(ser.fileno())
    return finished - start, bytes(buf)


@pytest.fixture
async def bus() -> AsyncIterator[PtyBus]:
    pty = PtyBus(lambda data: REPLY if data.endswith(b"\n") else b"")
    await pty.start()
    yield pty
    pty.close()


@pytest.fixture
def port(bus: PtyBus) -> Iterator[serial.Serial]:
    ser = serial.Serial(bus.port_path, baudrate=9600, timeout=0)
    yield ser
    ser.close()


async def test_a_reply_takes_its_frames_time_on_the_wire_at_9600_baud(
    bus: PtyBus, port: serial.Serial
) -> None:
    expected = on_wire_s(len(REQUEST) + len(REPLY), 9600) + TURNAROUND_S  # ≈ 119 ms
    bus.set_timing(LineTiming(9600, turnaround_s=TURNAROUND_S))
    timed, reply = await round_trip(port, REQUEST, len(REPLY))
    assert reply == REPLY
    assert expected - 1e-3 <= timed < expected + SLACK_S

    bus.set_timing(None)
    untimed, reply = await round_trip(port, REQUEST, len(REPLY))
    assert reply == REPLY
    assert untimed < expected / 2
    assert timed - untimed > expected / 2


async def test_delays_follow_the_simulation_clocks_speed(bus: PtyBus, port: serial.Serial) -> None:
    simulated = on_wire_s(len(REQUEST) + len(REPLY), 1200) + TURNAROUND_S  # ≈ 0.94 s
    bus.set_timing(LineTiming(1200, turnaround_s=TURNAROUND_S, speed=10.0))
    elapsed, _ = await round_trip(port, REQUEST, len(REPLY))
    assert simulated / 10 - 1e-3 <= elapsed < simulated / 10 + SLACK_S
    assert elapsed < simulated / 2


async def test_eight_n_two_framing_counts_eleven_bits_per_byte(
    bus: PtyBus, port: serial.Serial
) -> None:
    bus.set_timing(LineTiming(9600, bits_per_char=11, turnaround_s=0.0))
    elapsed, _ = await round_trip(port, REQUEST, len(REPLY))
    expected = on_wire_s(len(REQUEST) + len(REPLY), 9600, bits=11)
    assert expected - 1e-3 <= elapsed < expected + SLACK_S
    assert elapsed > on_wire_s(len(REQUEST) + len(REPLY), 9600, bits=10)


async def test_frames_queue_on_the_line_in_order(bus: PtyBus, port: serial.Serial) -> None:
    loop = asyncio.get_running_loop()
    bus.set_timing(LineTiming(9600, turnaround_s=0.0))
    first, second = b"A" * 48, b"B" * 48
    buf = bytearray()
    done: asyncio.Future[float] = loop.create_future()

    def on_readable() -> None:
        buf.extend(port.read(4096))
        if len(buf) >= 96 and not done.done():
            done.set_result(loop.time())

    loop.add_reader(port.fileno(), on_readable)
    try:
        start = loop.time()
        bus.send(first)
        bus.send(second)
        elapsed = await asyncio.wait_for(done, 5.0) - start
    finally:
        loop.remove_reader(port.fileno())
    assert bytes(buf) == first + second
    assert on_wire_s(96, 9600) - 1e-3 <= elapsed < on_wire_s(96, 9600) + SLACK_S


async def test_a_cut_loses_the_reply_still_on_the_wire() -> None:
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[None] = loop.create_future()

    def handler(data: bytes) -> bytes:
        if not answered.done():
            answered.set_result(None)
        return REPLY

    pty = PtyBus(handler, LineTiming(9600))
    await pty.start()
    ser = serial.Serial(pty.port_path, baudrate=9600, timeout=0)
    try:
        ser.write(REQUEST)
        await asyncio.wait_for(answered, 5.0)  # the device has answered; its reply is in flight
        pty.set_cut(True)
        pty.set_cut(False)
        with pytest.raises(TimeoutError):
            await round_trip_silence(ser, timeout_s=on_wire_s(len(REPLY), 9600) + 0.1)
    finally:
        ser.close()
        pty.close()


async def round_trip_silence(ser: serial.Serial, timeout_s: float) -> None:
    """Await any byte; a `TimeoutError` means the line stayed silent for `timeout_s`."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if ser.read(4096) and not got.done():
            got.set_result(None)

    loop.add_reader(ser.fileno(), on_readable)
    try:
        await asyncio.wait_for(got, timeout_s)
    finally:
        loop.remove_reader(ser.fileno())


def test_line_timing_rejects_impossible_settings() -> None:
    bad: list[Callable[[], LineTiming]] = [
        lambda: LineTiming(0),
        lambda: LineTiming(9600, bits_per_char=0),
        lambda: LineTiming(9600, speed=0.0),
        lambda: LineTiming(9600, turnaround_s=-1.0),
    ]
    for make in bad:
        with pytest.raises(ValueError):
            make()


async def test_the_instruments_pump_bus_answers_at_its_configured_baud_rate() -> None:
    timing = SerialTiming(pump_baud=9600.0, turnaround_s=TURNAROUND_S)
    instrument = VirtualInstrument(1, now=lambda: 0.0, seed=1, serial_timing=timing)
    await instrument.start()
    pump = instrument.endpoints().pumps[0]
    ser = serial.Serial(pump.port, baudrate=9600, timeout=0)
    try:
        request = encode_frame(f"@{pump.address}:1 ID")
        reply_length = len(instrument.pump_buses[0][1].feed(request, 0.0))  # same reply, untimed
        elapsed, reply = await round_trip(ser, request, reply_length)
        assert decode_frame(reply) is not None and " OK " in reply.decode()
        expected = on_wire_s(len(request) + reply_length, 9600) + TURNAROUND_S
        assert expected - 1e-3 <= elapsed < expected + SLACK_S
    finally:
        ser.close()
        await instrument.stop()


def test_shuttle_sim_turns_byte_timing_on_at_its_clock_speed() -> None:
    from simulators import cli

    args = cli.build_parser().parse_args(
        ["--byte-timing", "--speed", "60", "--pump-baud", "9600", "--turnaround-ms", "5"]
    )
    timing = cli._serial_timing(args)
    assert timing == SerialTiming(speed=60.0, pump_baud=9600.0, turnaround_s=0.005)
    assert timing.pumps().bits_per_char == 10 and timing.probes().bits_per_char == 11
    assert cli._serial_timing(cli.build_parser().parse_args([])) is None
