"""The firmware stubs on an existing serial device (`simulators.serial_lines`), reached by the
daemon's own drivers through a socat pair: line settings, the two UARTs' view of a mismatch,
the line's timing, and `shuttle-sim`'s bench options.

Everything here runs in one process: the simulator's end is served on the event loop, the
driver talks to the other end; every wait is on a reply or a driver's own timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import termios
from collections.abc import Callable

import pytest
import serial

from drivers.interfaces import DeviceTimeout
from drivers.probe_modbus import ModbusDensityProbe, ProbeBus
from drivers.pump_serial import PumpBus, SerialPump
from drivers.serial_line import PROBE_LINE, PUMP_LINE, SerialLine
from firmware_stubs.probe import DensityProbeFirmware, ModbusRtuBusFirmware
from firmware_stubs.pump import PumpBusFirmware, PumpFirmware
from simulators import cli
from simulators.bench_config import daemon_view
from simulators.far_end import FarEnd
from simulators.instrument import InstrumentEndpoints, ProbeEndpoint, PumpEndpoint
from simulators.pty_bus import LineTiming, PtyBus
from simulators.serial_lines import (
    SerialPortBus,
    SerialPortUnavailable,
    _discard_errored_characters,
    is_pseudo_terminal,
    uart_receive,
)

FRAME = b"@1:7 STATUS*ABCD\r\n"
Pair = Callable[[str], tuple[str, str]]


def test_a_uart_at_the_senders_settings_reads_the_bytes_sent() -> None:
    assert uart_receive(FRAME, PUMP_LINE, PUMP_LINE, errors_as_nul=True) == FRAME
    # A second stop bit is idle line to a UART that checks one, and the other way round.
    assert uart_receive(FRAME, PROBE_LINE, SerialLine(19200), errors_as_nul=True) == FRAME
    assert uart_receive(FRAME, SerialLine(19200), PROBE_LINE, errors_as_nul=True) == FRAME
    # Two per cent apart is within what a UART's mid-bit sampling absorbs over ten bits.
    assert uart_receive(FRAME, PUMP_LINE, SerialLine(117500), errors_as_nul=True) == FRAME


def test_a_wrong_baud_rate_turns_a_frame_into_garbage() -> None:
    slower = uart_receive(FRAME, PUMP_LINE, SerialLine(9600), errors_as_nul=False)
    faster = uart_receive(FRAME, SerialLine(9600), PUMP_LINE, errors_as_nul=True)
    assert len(slower) < len(FRAME) and b"STATUS" not in slower
    assert len(faster) > len(FRAME) and set(faster) == {0}  # every character a framing error


def test_a_parity_mismatch_garbles_one_direction_as_real_uarts_do() -> None:
    even = SerialLine(19200, 8, "E", 1)
    # 8N2 sent, 8E1 read by firmware: the second stop bit is taken for the parity bit, so every
    # character with an even count of ones fails the check and is dropped as NUL.
    received = uart_receive(FRAME, PROBE_LINE, even, errors_as_nul=True)
    assert len(received) == len(FRAME)
    for sent, got in zip(FRAME, received, strict=True):
        assert got == (sent if bin(sent).count("1") % 2 else 0)
    # 8E1 sent, 8N2 read by pyserial (INPCK off): the parity bit passes for a stop bit.
    assert uart_receive(FRAME, even, PROBE_LINE, errors_as_nul=False) == FRAME


async def _pump_bus_on(sim_end: str, line: SerialLine) -> tuple[SerialPortBus, PumpBusFirmware]:
    firmware = PumpBusFirmware([PumpFirmware(1, serial_number="HIL1")])
    bus = SerialPortBus(sim_end, lambda data: firmware.feed(data, 0.0), line, far_end=PUMP_LINE)
    await bus.start()
    return bus, firmware


async def test_the_pump_driver_talks_to_the_firmware_across_a_socat_pair(
    serial_pair: Pair,
) -> None:
    sim_end, daemon_end = serial_pair("pumps")
    bus, _ = await _pump_bus_on(sim_end, PUMP_LINE)
    driver = PumpBus(daemon_end, timeout_s=0.5)
    try:
        assert bus.pseudo_terminal and bus.timing is not None and bus.timing.wire
        identity = await SerialPump(driver, 1).identify()
        assert identity.serial == "HIL1"
        assert driver.timeouts == 0 and driver.crc_errors == 0
    finally:
        await driver.close()
        bus.close()


async def test_a_pump_bus_at_the_wrong_baud_rate_gives_no_valid_reply(serial_pair: Pair) -> None:
    sim_end, daemon_end = serial_pair("pumps")
    bus, _ = await _pump_bus_on(sim_end, SerialLine(9600))
    driver = PumpBus(daemon_end, timeout_s=0.2, retries=1)
    try:
        with pytest.raises(DeviceTimeout, match="no valid reply"):
            await SerialPump(driver, 1).status()
        assert driver.timeouts == 2  # each attempt waited its timeout, no longer
    finally:
        await driver.close()
        bus.close()


async def test_a_probe_answers_after_the_lines_time_on_the_wire(serial_pair: Pair) -> None:
    sim_end, daemon_end = serial_pair("probes")
    probe = DensityProbeFirmware(1)
    probe.set_measurement(7.5e5, 37.0)
    firmware = ModbusRtuBusFirmware([probe])
    bus = SerialPortBus(sim_end, firmware.feed, PROBE_LINE, far_end=PROBE_LINE, modbus=True)
    await bus.start()
    driver = ProbeBus(daemon_end, timeout_s=0.5)
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        status = await ModbusDensityProbe(driver, 1).ping()
        elapsed = loop.time() - began
        # 8-byte request and 7-byte reply at 11 bits a character, and the RTU silence (t3.5).
        assert status == 0
        assert elapsed >= (8 + 7) * 11 / 19200 + 3.5 * 11 / 19200 - 1e-3
        reading = await ModbusDensityProbe(driver, 1).read()
        assert (reading.density, reading.quality) == (7.5e5, "good")
    finally:
        await driver.close()
        bus.close()


async def test_a_probe_bus_with_the_wrong_parity_gives_no_reply(serial_pair: Pair) -> None:
    sim_end, daemon_end = serial_pair("probes")
    firmware = ModbusRtuBusFirmware([DensityProbeFirmware(1)])
    bus = SerialPortBus(sim_end, firmware.feed, SerialLine(19200, 8, "E", 1),
                        far_end=PROBE_LINE, modbus=True)
    await bus.start()
    driver = ProbeBus(daemon_end, timeout_s=0.2, retries=1)
    try:
        with pytest.raises(DeviceTimeout, match="no reply"):
            await ModbusDensityProbe(driver, 1).ping()
        assert firmware.dropped_bytes > 0  # the garbled requests, dropped by their CRC
    finally:
        await driver.close()
        bus.close()


def test_the_far_end_is_read_where_the_daemon_set_it(serial_pair: Pair) -> None:
    """What a socat pair's far end shows of pyserial's settings: baud rate, stop bits and odd
    parity; even parity and data bits, which a pseudo-terminal drops, are taken as assumed."""
    _, daemon_end = serial_pair("pumps")
    far_end = FarEnd(PUMP_LINE, daemon_end)
    try:
        port = serial.Serial(daemon_end, 9600, parity=serial.PARITY_ODD, stopbits=2, timeout=0)
        assert far_end.line() == SerialLine(9600, 8, "O", 2)
        port.close()  # reopened by a restarted daemon, at other settings: read afresh
        port = serial.Serial(daemon_end, 19200, parity=serial.PARITY_EVEN, timeout=0)
        assert far_end.line() == SerialLine(19200, 8, "N", 1)  # even looks like none
        assert FarEnd(SerialLine(9600, 8, "E", 1), daemon_end).line() == SerialLine(19200, 8, "E")
        port.close()
    finally:
        far_end.close()
    for unknown in (None, "/dev/null", "/nonexistent/pc-pumps"):  # not a pseudo-terminal
        assert FarEnd(PUMP_LINE, unknown).line() == PUMP_LINE


async def test_a_daemon_at_other_settings_than_the_pumps_gets_no_valid_reply(
    serial_pair: Pair,
) -> None:
    """The simulator plays the wire with the settings the daemon's end really has: odd parity
    against the modules' 8N1 loses the requests, and the same port reopened at 8N1 is answered."""
    sim_end, daemon_end = serial_pair("pumps")
    firmware = PumpBusFirmware([PumpFirmware(1, serial_number="HIL1")])
    bus = SerialPortBus(sim_end, lambda data: firmware.feed(data, 0.0), PUMP_LINE,
                        far_end=FarEnd(PUMP_LINE, daemon_end))
    await bus.start()
    driver = PumpBus(daemon_end, line=SerialLine(115200, 8, "O", 1), timeout_s=0.2, retries=1)
    try:
        with pytest.raises(DeviceTimeout, match="no valid reply"):
            await SerialPump(driver, 1).status()
        await driver.close()
        driver = PumpBus(daemon_end, line=PUMP_LINE, timeout_s=0.5)
        assert (await SerialPump(driver, 1).identify()).serial == "HIL1"
    finally:
        await driver.close()
        bus.close()


def test_a_device_that_cannot_be_opened_is_named_with_its_settings(tmp_path) -> None:
    with pytest.raises(SerialPortUnavailable, match=r"^/nonexistent/ttyUSB9: cannot open at "
                       r"115200 8N1: "):
        SerialPortBus("/nonexistent/ttyUSB9", lambda data: b"", PUMP_LINE, far_end=PUMP_LINE)
    code = cli.main(["--units", "1", "--pump-port", "/nonexistent/ttyUSB9"])
    assert code == 1


def test_two_simulators_cannot_answer_on_one_line(serial_pair: Pair) -> None:
    sim_end, _ = serial_pair("pumps")
    first = SerialPortBus(sim_end, lambda data: b"", PUMP_LINE, far_end=PUMP_LINE)
    try:
        with pytest.raises(SerialPortUnavailable):
            SerialPortBus(sim_end, lambda data: b"", PUMP_LINE, far_end=PUMP_LINE)
    finally:
        first.close()


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--units", "9", "--pump-port", "/dev/a"], "9 units have 2 pump bus(es)"),
        (["--daemon-probe-port", "/dev/b"], "give shuttle-sim's end with --probe-port too"),
        (["--probe-framing", "8Q1"], "framing '8Q1'"),
        (["--pump-port", "/dev/a", "--pump-baud", "9600.5"], "not a whole number"),
        (["--pump-baud", "12345"], "baud 12345 is not a standard rate: one of 1200, "),
        (["--probe-framing", "7E1"], "Modbus RTU moves 8-bit bytes"),
        (["--pump-port", "/dev/a", "--probe-port", "/dev/a"], "both the pump and the probe"),
    ],
)
def test_bench_options_that_cannot_work_are_a_usage_error(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    assert problem in capsys.readouterr().err


def test_print_config_writes_the_daemons_ends_of_the_wires() -> None:
    endpoints = InstrumentEndpoints(
        opcua_endpoint="opc.tcp://127.0.0.2:4841/bioreactor", opcua_namespace="urn:x",
        unit_nodes={"U01": "U01"},
        pumps=[PumpEndpoint("U01", "media", "/dev/ttyUSB0", 1, 80.0, True)],
        probes=[ProbeEndpoint("U01", "/dev/ttyUSB1", 1)],
        opcua_certificate="c.der", opcua_trusted_clients="trusted",
    )  # fmt: skip
    args = cli.build_parser().parse_args([
        "--pump-port", "/dev/ttyUSB0", "--probe-port", "/dev/ttyUSB1",
        "--daemon-pump-port", "/dev/ttyS4", "--probe-framing", "8E1", "--listen", "0.0.0.0",
    ])  # fmt: skip
    daemon_side, notes = daemon_view(endpoints, args)
    assert [p.port for p in daemon_side.pumps] == ["/dev/ttyS4"]
    assert [p.port for p in daemon_side.probes] == ["/dev/shuttle-probes"]  # docs/hil.md's name
    # The daemon's end is written at the settings shuttle-sim serves: they agree as printed.
    assert [str(p.line) for p in daemon_side.pumps] == ["115200 8N1"]
    assert [str(p.line) for p in daemon_side.probes] == ["19200 8E1"]
    assert "on /dev/ttyUSB0 at 115200 8N1" in notes.buses["/dev/ttyS4"]
    assert not notes.buses["/dev/ttyS4"].startswith("CHECK")
    probe_note = notes.buses["/dev/shuttle-probes"]
    assert probe_note.startswith("CHECK: /dev/shuttle-probes is the udev name")
    assert "at 19200 8E1; baud and framing below are the same" in probe_note
    assert notes.controller is not None and "every interface" in notes.controller


def test_without_bench_options_the_pseudo_terminals_are_what_the_daemon_opens() -> None:
    args = cli.build_parser().parse_args([])
    assert isinstance(args, argparse.Namespace)
    endpoints = InstrumentEndpoints("opc.tcp://127.0.0.1:1/bioreactor", "urn:x", {}, [
        PumpEndpoint("U01", "media", "/dev/pts/7", 1, 80.0, True)], [], "c", "t")
    daemon_side, notes = daemon_view(endpoints, args)
    assert daemon_side == endpoints and notes.buses == {} and notes.controller is None


def test_pyserial_opens_a_pseudo_terminal_at_any_framing(serial_pair: Pair) -> None:
    """Why the bus must play the UARTs on a socat pair: the kernel takes any settings there."""
    sim_end, _ = serial_pair("probes")
    port = serial.Serial(sim_end, 9600, parity=serial.PARITY_EVEN, stopbits=1, timeout=0)
    port.close()


async def test_on_a_real_line_the_bus_adds_only_the_turnaround() -> None:
    """A UART takes the bytes' time itself: at 300 baud this 13-byte request and 100-byte reply
    would spend 3.8 s on the wire, which a bus timed like a pseudo-terminal would add."""
    reply = b"!" + b"x" * 98 + b"\n"
    bus = PtyBus(lambda data: reply if data.endswith(b"\n") else b"",
                 LineTiming(300, turnaround_s=0.05, wire=False))
    await bus.start()
    port = serial.Serial(bus.port_path, timeout=0)
    loop = asyncio.get_running_loop()
    got = bytearray()
    done: asyncio.Future[float] = loop.create_future()

    def on_readable() -> None:
        got.extend(port.read(4096))
        if len(got) >= len(reply) and not done.done():
            done.set_result(loop.time())

    loop.add_reader(port.fileno(), on_readable)
    try:
        began = loop.time()
        port.write(b"@1:7 STATUS\r\n")
        elapsed = await asyncio.wait_for(done, 5.0) - began
        assert 0.05 - 1e-3 <= elapsed < 1.0 and bytes(got) == reply
    finally:
        loop.remove_reader(port.fileno())
        port.close()
        bus.close()


def test_a_uart_port_is_set_to_drop_characters_with_errors(serial_pair: Pair) -> None:
    sim_end, _ = serial_pair("pumps")
    port = serial.Serial(sim_end, 19200, parity=serial.PARITY_EVEN, timeout=0)
    try:
        assert is_pseudo_terminal(port.fileno())
        _discard_errored_characters(port.fileno())  # what a UART port gets at open
        iflag = termios.tcgetattr(port.fileno())[0]
        assert iflag & termios.INPCK and not iflag & (termios.IGNPAR | termios.PARMRK)
    finally:
        port.close()
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        assert not is_pseudo_terminal(fd)
    finally:
        os.close(fd)
