"""Serial lines of a hardware-in-the-loop bench: the firmware stubs on existing serial devices.

On a bench, `shuttle-sim --pump-port DEV --probe-port DEV` plays the pump modules and probes on
RS-485 adapters wired to the instrument PC's adapters, so the daemon's own serial settings, udev
names and timeouts meet a line instead of a pseudo-terminal the simulator made. Each device is
opened with pyserial at the bus's line settings (`drivers.serial_line.SerialLine`: SPEC §7,
pumps 115200 8N1; SPEC §8, probes 19200 8N2; `--pump-baud`, `--pump-framing`... to change) and
served by the same loop as a pseudo-terminal (`SerialBus`).

Timing is the line's, in real time whatever the simulation clock's speed, since a wire does not
run faster when the plant does: the UART takes each byte's time on the wire, and the firmware
answers a turnaround after a request's last byte (for Modbus at least the 3.5-character silence
of the RTU framing). As a device's firmware does, a character received with a parity or framing
error is discarded: the port is set to read such a character as NUL (INPCK without IGNPAR or
PARMRK), which no valid frame contains, so the frame fails its CRC and gets no reply.

One end of a `socat` pair of pseudo-terminals stands in for an adapter on a bench without
hardware (tests/hil, docs/hil.md). There the kernel moves bytes whatever the baud rate and
parity, so the bus plays the line itself: it adds each byte's time on the wire, and it does what
the two UARTs would do with bytes framed differently (`uart_receive`), reading the far end's
settings from the daemon's end of the pair (`simulators.far_end`). A wrong baud rate or parity
on either side therefore gives the daemon what it would get from hardware: garbage or nothing.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import termios
from collections.abc import Callable
from dataclasses import dataclass

import serial
import structlog

from drivers.serial_line import PROBE_LINE, PUMP_LINE, SerialLine
from simulators.far_end import FarEnd, is_pseudo_terminal
from simulators.pty_bus import DEFAULT_TURNAROUND_S, LineTiming, SerialBus, modbus_silence_s

log = structlog.get_logger("simulators.serial")


class SerialPortUnavailable(Exception):
    """A bench's serial device cannot be opened as asked; the message names device and reason."""


def reads_as_sent(read: SerialLine, sender: SerialLine) -> bool:
    """Whether a UART at `read` receives what one at `sender` sends unchanged. Stop bits may
    differ: a UART checks only the first, and a longer stop is idle line to it."""
    return (read.baud, read.bytesize, read.parity) == (sender.baud, sender.bytesize, sender.parity)


def _parity_bit(bits: list[int], parity: str) -> int:
    ones = sum(bits) % 2
    return ones if parity == "E" else 1 - ones


def _waveform(data: bytes, sent: SerialLine) -> tuple[list[float], list[int]]:
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


def uart_receive(data: bytes, sent: SerialLine, read: SerialLine, *, errors_as_nul: bool
                 ) -> bytes:
    """What a UART at `read` receives when `data` is sent back to back at `sent`.

    A bit-level model of an asynchronous receiver: it waits for a falling edge, checks the start
    bit half a bit later, samples each data bit, the parity bit if any and the first stop bit in
    their middles, then looks for the next falling edge from there. A character with a parity
    error or a low stop bit (framing error) is read as NUL with `errors_as_nul` (a device's
    firmware; INPCK), else as its data bits (the daemon: pyserial turns INPCK off).
    """
    if not data or reads_as_sent(read, sent):
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


class SerialPortBus(SerialBus):
    """An existing serial device played by firmware stubs at `line`; see the module docstring.

    `far_end` is what the other end of the line is set to, fixed or read from the daemon's end
    (`FarEnd`); it matters only on a pseudo-terminal, where the bus plays the two UARTs and
    warns once for each setting of the far end that differs. `modbus` makes the turnaround at
    least the RTU silence.
    """

    def __init__(
        self,
        device: str,
        handler: Callable[[bytes], bytes],
        line: SerialLine,
        *,
        far_end: SerialLine | FarEnd,
        turnaround_s: float = DEFAULT_TURNAROUND_S,
        modbus: bool = False,
    ) -> None:
        try:
            # exclusive: two simulators answering on one line would collide on every frame.
            self._serial = serial.Serial(
                device, baudrate=line.baud, bytesize=line.bytesize, parity=line.parity,
                stopbits=line.stopbits, timeout=0, exclusive=True,
            )  # fmt: skip
        except (serial.SerialException, OSError, ValueError, termios.error) as error:
            # termios.error: the device refused the settings (pyserial lets it through)
            raise SerialPortUnavailable(f"{device}: cannot open at {line}: {error}") from None
        fd = self._serial.fileno()
        self.line = line
        self.far_end = far_end if isinstance(far_end, FarEnd) else FarEnd(far_end)
        self._warned: set[SerialLine] = set()
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

    def _differing_far_end(self) -> SerialLine | None:
        """The far end's settings when the bus must play two UARTs that disagree, else None."""
        if not self.pseudo_terminal:
            return None  # a real UART does the garbling itself
        far = self.far_end.line()
        if reads_as_sent(self.line, far) and reads_as_sent(far, self.line):
            return None
        if far not in self._warned:
            self._warned.add(far)
            log.warning("line settings differ from the far end's: bytes are garbled as two UARTs "
                        "would garble them", device=self.port_path, line=str(self.line),
                        far_end=str(far))
        return far

    def _from_line(self, data: bytes) -> bytes:
        far = self._differing_far_end()
        return data if far is None else uart_receive(data, far, self.line, errors_as_nul=True)

    def _to_line(self, data: bytes) -> bytes:
        far = self._differing_far_end()
        return data if far is None else uart_receive(data, self.line, far, errors_as_nul=False)

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
        self.far_end.close()
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
    (empty: new pseudo-terminals), their line settings, and the daemon's ends of the wires
    (`--daemon-pump-port`...: where a socat pair's far end settings are read; empty: unknown)."""

    pump_ports: tuple[str, ...] = ()
    probe_ports: tuple[str, ...] = ()
    pump_line: SerialLine = PUMP_LINE
    probe_line: SerialLine = PROBE_LINE
    turnaround_s: float = DEFAULT_TURNAROUND_S
    daemon_pump_ports: tuple[str, ...] = ()
    daemon_probe_ports: tuple[str, ...] = ()

    def pump_bus(self, index: int, handler: Callable[[bytes], bytes]) -> SerialPortBus | None:
        """The pump bus `index` on its device, or None when pumps are on pseudo-terminals."""
        if not self.pump_ports:
            return None
        far_end = FarEnd(self.pump_line, _nth(self.daemon_pump_ports, index))
        return SerialPortBus(self.pump_ports[index], handler, self.pump_line,
                             far_end=far_end, turnaround_s=self.turnaround_s)

    def probe_bus(self, index: int, handler: Callable[[bytes], bytes]) -> SerialPortBus | None:
        """The probe bus `index` on its device, or None when probes are on pseudo-terminals."""
        if not self.probe_ports:
            return None
        far_end = FarEnd(self.probe_line, _nth(self.daemon_probe_ports, index))
        return SerialPortBus(self.probe_ports[index], handler, self.probe_line,
                             far_end=far_end, turnaround_s=self.turnaround_s, modbus=True)


def _nth(ports: tuple[str, ...], index: int) -> str | None:
    return ports[index] if index < len(ports) else None
