"""Serial lines of a hardware-in-the-loop bench: the firmware stubs on existing serial devices.

On a bench, `shuttle-sim --pump-port DEV --probe-port DEV` plays the pump modules and probes on
RS-485 adapters wired to the instrument PC's adapters, so the daemon's own serial settings, udev
names and timeouts meet a line instead of a pseudo-terminal the simulator made. Each device is
opened with pyserial at the bus's line settings (`LineSettings`: SPEC §7, pumps 115200 8N1;
SPEC §8, probes 19200 8N2) and served by the same loop as a pseudo-terminal (`SerialBus`).

Timing is the line's, in real time whatever the simulation clock's speed, since a wire does not
run faster when the plant does: the UART takes each byte's time on the wire, and the firmware
answers a turnaround after a request's last byte (for Modbus at least the 3.5-character silence
of the RTU framing). As a device's firmware does, a character received with a parity or framing
error is discarded: the port is set to read such a character as NUL (INPCK without IGNPAR or
PARMRK), which no valid frame contains, so the frame fails its CRC and gets no reply.

One end of a `socat` pair of pseudo-terminals stands in for an adapter on a bench without
hardware (tests/hil, docs/hil.md). There the kernel moves bytes whatever the baud rate and
parity, so the bus plays the line itself: it adds each byte's time on the wire, and it does what
the two UARTs would do with bytes framed differently (`uart_receive`), taking the far end to be
at the bus's standard settings, which is what `shuttled serve` opens. A wrong baud rate or
parity therefore gives the daemon what it would get from hardware: garbage or nothing.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import os
import re
import termios
from collections.abc import Callable
from dataclasses import dataclass

import serial
import structlog

from simulators.pty_bus import DEFAULT_TURNAROUND_S, LineTiming, SerialBus, modbus_silence_s

log = structlog.get_logger("simulators.serial")

PARITIES = {
    "N": serial.PARITY_NONE,
    "E": serial.PARITY_EVEN,
    "O": serial.PARITY_ODD,
    "M": serial.PARITY_MARK,
    "S": serial.PARITY_SPACE,
}
_FRAMING = re.compile(r"^([5-8])([NEOMS])(1|1\.5|2)$")
PTY_SLAVE_MAJORS = range(136, 144)  # Unix98 pseudo-terminal slaves (Linux devices.txt)


class SerialPortUnavailable(Exception):
    """A bench's serial device cannot be opened as asked; the message names device and reason."""


@dataclass(frozen=True)
class LineSettings:
    """Baud rate and character framing of one serial line, as a device's label states them."""

    baud: int
    bytesize: int = 8
    parity: str = "N"  # N(one), E(ven), O(dd), M(ark), S(pace)
    stopbits: float = 1

    def __post_init__(self) -> None:
        if not (isinstance(self.baud, int) and self.baud > 0):
            raise ValueError(f"a baud rate is a positive whole number, not {self.baud!r}")
        if not _FRAMING.match(self.framing):
            raise ValueError(f"framing {self.framing!r}: data bits 5-8, parity N, E, O, M or S, "
                             "stop bits 1, 1.5 or 2 (such as 8N1)")

    @classmethod
    def of(cls, baud: float, framing: str) -> LineSettings:
        """From a baud rate and a framing such as ``8N1`` or ``8E1`` (case-insensitive)."""
        match = _FRAMING.match(framing.strip().upper())
        if match is None:
            raise ValueError(f"framing {framing!r}: data bits 5-8, parity N, E, O, M or S, stop "
                             "bits 1, 1.5 or 2, written together (such as 8N1, 8E1 or 8N2)")
        if not (baud > 0 and float(baud).is_integer()):
            raise ValueError(f"a baud rate is a positive whole number, not {baud!r}")
        size, parity, stop = match.groups()
        return cls(int(baud), int(size), parity, float(stop) if stop == "1.5" else int(stop))

    @property
    def framing(self) -> str:
        stop = "1.5" if self.stopbits == 1.5 else str(int(self.stopbits))
        return f"{self.bytesize}{self.parity}{stop}"

    @property
    def bits_per_char(self) -> float:
        """Bits one character takes on the wire: start, data, parity if any, stop."""
        return 1 + self.bytesize + (self.parity != "N") + self.stopbits

    def receives_as_sent(self, sender: LineSettings) -> bool:
        """Whether a UART at these settings reads what `sender` sends unchanged. Stop bits may
        differ: a UART checks only the first, and a longer stop is idle line to it."""
        return (self.baud, self.bytesize, self.parity) == (
            sender.baud, sender.bytesize, sender.parity
        )

    def __str__(self) -> str:
        return f"{self.baud} {self.framing}"


PUMP_LINE = LineSettings(115200, 8, "N", 1)  # SPEC §7
PROBE_LINE = LineSettings(19200, 8, "N", 2)  # SPEC §8


def _parity_bit(bits: list[int], parity: str) -> int:
    ones = sum(bits) % 2
    return {"E": ones, "O": 1 - ones, "M": 1, "S": 0}[parity]


def _waveform(data: bytes, sent: LineSettings) -> tuple[list[float], list[int]]:
    """The line level `data` makes at `sent`, bytes back to back: (segment start s, level)."""
    bit = 1.0 / sent.baud
    starts: list[float] = []
    levels: list[int] = []
    t = 0.0
    for byte in data:
        bits = [(byte >> i) & 1 for i in range(sent.bytesize)]
        parity = [] if sent.parity == "N" else [_parity_bit(bits, sent.parity)]
        for level, length in ((0, 1.0), *((b, 1.0) for b in (*bits, *parity)),
                              (1, sent.stopbits)):
            if not levels or levels[-1] != level:
                starts.append(t)
                levels.append(level)
            t += length * bit
    return starts, levels


def uart_receive(data: bytes, sent: LineSettings, read: LineSettings, *, errors_as_nul: bool
                 ) -> bytes:
    """What a UART at `read` receives when `data` is sent back to back at `sent`.

    A bit-level model of an asynchronous receiver: it waits for a falling edge, checks the start
    bit half a bit later, samples each data bit, the parity bit if any and the first stop bit in
    their middles, then looks for the next falling edge from there. A character with a parity
    error or a low stop bit (framing error) is read as NUL with `errors_as_nul` (a device's
    firmware; INPCK), else as its data bits (the daemon: pyserial turns INPCK off).
    """
    if not data or read.receives_as_sent(sent):
        return data
    starts, levels = _waveform(data, sent)
    falls = [t for t, level in zip(starts, levels, strict=True) if level == 0]

    def level_at(t: float) -> int:
        return levels[bisect.bisect_right(starts, t) - 1] if t >= 0 else 1

    bit = 1.0 / read.baud
    received = bytearray()
    k, t = 0, 0.0
    while (k := bisect.bisect_left(falls, t, lo=k)) < len(falls):
        edge = falls[k]
        if level_at(edge + bit / 2) != 0:  # a glitch, not a start bit
            k += 1
            continue
        bits = [level_at(edge + (1.5 + i) * bit) for i in range(read.bytesize)]
        middle = 1.5 + read.bytesize
        good = True
        if read.parity != "N":
            good = level_at(edge + middle * bit) == _parity_bit(bits, read.parity)
            middle += 1
        good = good and level_at(edge + middle * bit) == 1
        value = sum(b << i for i, b in enumerate(bits))
        received.append(value if good or not errors_as_nul else 0)
        t = edge + middle * bit
    return bytes(received)


def is_pseudo_terminal(fd: int) -> bool:
    """Whether `fd` is the slave of a pseudo-terminal (a socat pair), not a UART."""
    with contextlib.suppress(OSError):
        if os.ttyname(fd).startswith("/dev/pts/"):
            return True
    return os.major(os.fstat(fd).st_rdev) in PTY_SLAVE_MAJORS


class SerialPortBus(SerialBus):
    """An existing serial device played by firmware stubs at `line`; see the module docstring.

    `far_end` is what the other end of the line is set to; it matters only on a pseudo-terminal,
    where the bus emulates the two UARTs. `modbus` makes the turnaround at least the RTU silence.
    """

    def __init__(
        self,
        device: str,
        handler: Callable[[bytes], bytes],
        line: LineSettings,
        *,
        far_end: LineSettings,
        turnaround_s: float = DEFAULT_TURNAROUND_S,
        modbus: bool = False,
    ) -> None:
        try:
            # exclusive: two simulators answering on one line would collide on every frame.
            self._serial = serial.Serial(
                device, baudrate=line.baud, bytesize=line.bytesize, parity=PARITIES[line.parity],
                stopbits=line.stopbits, timeout=0, exclusive=True,
            )  # fmt: skip
        except (serial.SerialException, OSError, ValueError) as error:
            raise SerialPortUnavailable(f"{device}: cannot open at {line}: {error}") from None
        fd = self._serial.fileno()
        self.line = line
        self.far_end = far_end
        try:
            self.pseudo_terminal = is_pseudo_terminal(fd)
            if not self.pseudo_terminal:
                _discard_errored_characters(fd)
        except OSError as error:
            self._serial.close()
            raise SerialPortUnavailable(f"{device}: cannot set up at {line}: {error}") from None
        if modbus:
            turnaround_s = max(turnaround_s, modbus_silence_s(line.baud, line.bits_per_char))
        # Real time: the wire does not run faster with the simulation's clock.
        timing = LineTiming(line.baud, line.bits_per_char, turnaround_s, speed=1.0,
                            wire=self.pseudo_terminal)
        super().__init__(fd, handler, timing)
        self.port_path = device
        self._emulate = self.pseudo_terminal and not (
            line.receives_as_sent(far_end) and far_end.receives_as_sent(line)
        )
        if self._emulate:
            log.warning("line settings differ from the far end's: bytes are garbled as two UARTs "
                        "would garble them", device=device, line=str(line), far_end=str(far_end))

    def _from_line(self, data: bytes) -> bytes:
        if not self._emulate:
            return data
        return uart_receive(data, self.far_end, self.line, errors_as_nul=True)

    def _to_line(self, data: bytes) -> bytes:
        if not self._emulate:
            return data
        return uart_receive(data, self.line, self.far_end, errors_as_nul=False)

    def _read_failed(self, error: OSError | None) -> None:
        """An adapter unplugged (or the socat pair gone): stop serving this line, say so once,
        and let the rest of the instrument run on, as a module whose cable was pulled would."""
        if error is not None and error.errno == errno.EAGAIN:
            return
        log.error("serial device lost: this bus no longer answers", device=self.port_path,
                  error=str(error) if error is not None else "hung up")
        if self._loop is not None and self._fd >= 0:
            self._loop.remove_reader(self._fd)

    def _close_line(self) -> None:
        with contextlib.suppress(Exception):
            self._serial.close()


def _discard_errored_characters(fd: int) -> None:
    """Read a character with a parity or framing error as NUL, as firmware drops it (INPCK on,
    IGNPAR and PARMRK off); pyserial turns INPCK off, which would pass its data bits on."""
    attrs = termios.tcgetattr(fd)
    attrs[0] = (attrs[0] | termios.INPCK) & ~(termios.IGNPAR | termios.PARMRK)
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


@dataclass(frozen=True)
class BenchPorts:
    """The existing serial devices an instrument's buses are served on, one per bus in order
    (empty: new pseudo-terminals), and their line settings."""

    pump_ports: tuple[str, ...] = ()
    probe_ports: tuple[str, ...] = ()
    pump_line: LineSettings = PUMP_LINE
    probe_line: LineSettings = PROBE_LINE
    turnaround_s: float = DEFAULT_TURNAROUND_S

    def pump_bus(self, index: int, handler: Callable[[bytes], bytes]) -> SerialPortBus | None:
        """The pump bus `index` on its device, or None when pumps are on pseudo-terminals."""
        if not self.pump_ports:
            return None
        return SerialPortBus(self.pump_ports[index], handler, self.pump_line,
                             far_end=PUMP_LINE, turnaround_s=self.turnaround_s)

    def probe_bus(self, index: int, handler: Callable[[bytes], bytes]) -> SerialPortBus | None:
        """The probe bus `index` on its device, or None when probes are on pseudo-terminals."""
        if not self.probe_ports:
            return None
        return SerialPortBus(self.probe_ports[index], handler, self.probe_line,
                             far_end=PROBE_LINE, turnaround_s=self.turnaround_s, modbus=True)
