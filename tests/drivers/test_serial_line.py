"""Line settings (`drivers.serial_line`): how a user writes them, and that the drivers open their
ports at them, read back from a real pseudo-terminal.

A Linux pseudo-terminal keeps a port's baud rate, stop bits and odd parity (PARODD) but forces 8
data bits and drops the parity enable, so those three are what can be read back here; the data
bits and even parity travel the same code path (the same keyword arguments to pyserial).
"""

from __future__ import annotations

import os
import termios
from collections.abc import Iterator

import pytest

from drivers.interfaces import DeviceDisconnected
from drivers.probe_modbus import ProbeBus
from drivers.pump_serial import PumpBus
from drivers.serial_line import PROBE_LINE, PUMP_LINE, SerialLine, modbus_deviation


def test_a_line_is_read_as_a_device_label_writes_it() -> None:
    assert SerialLine.parse(19200, "8n2") == PROBE_LINE
    assert SerialLine.parse(115200, " 8N1 ") == PUMP_LINE
    assert str(SerialLine.parse(9600.0, "7E1")) == "9600 7E1"  # a command line's float
    assert SerialLine.parse(9600, "8E1").bits_per_char == 11  # start, 8 data, parity, stop
    assert SerialLine.parse(9600, "8N1").wire_s(96) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("baud", "framing", "modbus", "problem"),
    [
        (12345, "8N1", False, "baud 12345 is not a standard rate: one of 1200, 2400, "),
        (0, "8N1", False, "baud 0 is not a standard rate"),
        (9600.5, "8N1", False, "baud 9600.5 is not a whole number"),
        ("9600", "8N1", False, "baud '9600' is not a whole number"),
        (True, "8N1", False, "baud True is not a whole number"),
        (9600, "9N1", False, "framing '9N1': data bits 9, not 7 or 8"),
        (9600, "8X1", False, "framing '8X1': parity X, not N, E or O"),
        (9600, "8M1", False, "framing '8M1': parity M, not N, E or O"),
        (9600, "8N3", False, "framing '8N3': stop bits 3, not 1 or 2"),
        (9600, "8N1.5", False, "framing '8N1.5': stop bits 1.5, not 1 or 2"),
        (9600, "N81", False, "framing 'N81': data bits 7 or 8, parity N, E or O, stop bits"),
        (9600, 8, False, "framing 8 is not text"),
        (9600, "7E1", True, "framing '7E1': Modbus RTU moves 8-bit bytes"),
    ],
)
def test_a_line_a_bus_cannot_have_is_refused_with_what_is_wrong(
    baud: object, framing: object, modbus: bool, problem: str
) -> None:
    with pytest.raises(ValueError) as refused:
        SerialLine.parse(baud, framing, modbus=modbus)
    assert str(refused.value).startswith(problem)
    assert "\n" not in str(refused.value)


def test_a_modbus_line_without_parity_should_have_two_stop_bits() -> None:
    assert modbus_deviation(PROBE_LINE) is None
    assert modbus_deviation(SerialLine(19200, 8, "E", 1)) is None
    deviation = modbus_deviation(SerialLine(19200, 8, "N", 1))
    assert deviation is not None and "two stop bits without parity (8N2)" in deviation


@pytest.fixture
def pseudo_terminal() -> Iterator[tuple[str, int]]:
    """(path, our fd) of a new pseudo-terminal's slave; its settings are shared by every fd."""
    master, slave = os.openpty()
    try:
        yield os.ttyname(slave), slave
    finally:
        os.close(slave)
        os.close(master)


def _kept(fd: int) -> tuple[int, bool, bool]:
    """(speed, odd parity, two stop bits): what a pseudo-terminal keeps of a port's settings."""
    cflag, speed = (attrs := termios.tcgetattr(fd))[2], attrs[5]
    return speed, bool(cflag & termios.PARODD), bool(cflag & termios.CSTOPB)


async def test_the_pump_driver_opens_its_port_at_the_buses_line(
    pseudo_terminal: tuple[str, int],
) -> None:
    path, fd = pseudo_terminal
    bus = PumpBus(path, line=SerialLine(9600, 8, "O", 2))
    await bus.open()
    try:
        assert _kept(fd) == (termios.B9600, True, True)
    finally:
        await bus.close()


async def test_the_probe_driver_hands_its_line_to_pymodbus(
    pseudo_terminal: tuple[str, int],
) -> None:
    path, fd = pseudo_terminal
    bus = ProbeBus(path, line=SerialLine(57600, 8, "N", 1))
    await bus.open()
    try:
        assert _kept(fd) == (termios.B57600, False, False)
    finally:
        await bus.close()
    bus = ProbeBus(path)  # SPEC §8's 19200 8N2 unless configured otherwise
    await bus.open()
    try:
        assert _kept(fd) == (termios.B19200, False, True)
    finally:
        await bus.close()


def _pseudo_terminals_refuse_a_parity_alone() -> bool:
    """Whether this kernel refuses (EINVAL) a pseudo-terminal setting that changes nothing it
    keeps, such as parity alone (Linux 6.18 does; older kernels took it silently)."""
    master, slave = os.openpty()
    try:
        attrs = termios.tcgetattr(slave)
        attrs[2] |= termios.PARENB
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
    except termios.error:
        return True
    finally:
        os.close(slave)
        os.close(master)
    return False


async def test_a_port_that_refuses_the_line_is_a_device_error_naming_it(
    pseudo_terminal: tuple[str, int],
) -> None:
    """pyserial lets a refused setting through as termios.error, which would end the daemon
    with a traceback; an adapter without a rate or framing refuses as a pseudo-terminal refuses
    parity here (pymodbus sets the port up twice; the pump driver's second opening asks the
    same settings again), and the daemon must see a lost device with the settings named."""
    if not _pseudo_terminals_refuse_a_parity_alone():
        pytest.skip("this kernel takes a pseudo-terminal setting it does not keep")
    path, _ = pseudo_terminal
    even = SerialLine(38400, 8, "E", 1)
    pumps = PumpBus(path, line=even)
    await pumps.open()  # the first opening changes more than the parity (CLOCAL): taken
    await pumps.close()
    with pytest.raises(DeviceDisconnected, match=rf"^cannot open {path} at 38400 8E1: .*nvalid"):
        await pumps.open()
    probes = ProbeBus(path, line=even)
    with pytest.raises(DeviceDisconnected, match=rf"^cannot open {path} at 38400 8E1: .*nvalid"):
        await probes.open()
    await probes.close()
