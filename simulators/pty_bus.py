"""A serial bus served by firmware stubs: on a new pseudo-terminal (`PtyBus`), or, through the same
serving loop (`SerialBus`), on an existing serial device (`simulators.serial_lines`).

On a pseudo-terminal, drivers open ``port_path`` as a real serial port and cannot tell the
simulator from hardware, which is the point: the same pyserial/pymodbus code paths run. The device
side is a plain ``handler(bytes) -> bytes`` (a pure firmware stub wrapped with the simulator's
clock) called from the event loop's reader callback on the file descriptor of the line.

A pty moves bytes as fast as the kernel copies them, so by default a reply is there microseconds
after its request. With a `LineTiming` the bus also takes the time a real line would (issue 3,
point 4), so drivers meet realistic round trips, timeouts and back-to-back polling. The model of
a half-duplex line (RS-485, or RS-232 used request/reply) is:

* each byte takes `bits_per_char` bit times on the wire (8N1: start + 8 data + stop = 10;
  8N2, the Modbus default of SPEC §8: 11), so n bytes take n·bits_per_char/baud seconds;
* the host's request is only complete at the device when its last byte has arrived: the bytes
  the pty hands over at once are taken to have been sent back to back from the moment they were
  written (or from when the line fell idle, if the host writes faster than the line carries);
* the device answers `turnaround_s` after the request's last byte (firmware latency, and for
  Modbus at least the 3.5-character inter-frame silence) and its reply is delivered to the host
  when its last byte has crossed the wire; replies queue behind one another, never overlap;
* times are simulated seconds: with the clock at `speed` (simulated seconds per wall second)
  the wall-clock delays are divided by `speed`. Under a virtual clock (`--speed max`) there is
  no wall time to wait for, so the instrument leaves timing off.

Delivering a reply whole when its last byte would arrive, rather than byte by byte, is a
simplification: a reader that waits for a complete frame (all our drivers) sees the same time.

On a real serial line the wire itself takes that time, in real time whatever the clock's speed:
there a `LineTiming` with ``wire=False`` adds only the device's turnaround.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import termios
import tty
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

MAX_OUTPUT_BUFFER = 65536  # replies nobody reads are dropped beyond this, as a real line would
# Time from a request's last byte to the reply's first: small microcontroller firmware answers in
# about a millisecond, and a Modbus slave must stay silent for 3.5 characters (≈ 2 ms at 19200
# baud 8N2) anyway. An assumption; configurable per bus.
DEFAULT_TURNAROUND_S = 0.002


@dataclass(frozen=True)
class LineTiming:
    """Byte timing of one serial line: its baud rate and framing, in simulated seconds.

    `speed` is the simulation clock's scale (simulated seconds per wall second): the bus waits
    wall-clock time, so it divides every simulated delay by it.
    """

    baud: float
    bits_per_char: float = 10  # 1.5 stop bits make a fraction
    turnaround_s: float = DEFAULT_TURNAROUND_S
    speed: float = 1.0
    # Whether the bus must add the bytes' time on the wire itself (a pseudo-terminal moves them
    # at once); on a real serial line the UART takes it, and only the turnaround is added.
    wire: bool = True

    def __post_init__(self) -> None:
        if not (self.baud > 0 and self.bits_per_char > 0 and self.speed > 0):
            raise ValueError("baud, bits per character and clock speed must be positive")
        if not self.turnaround_s >= 0:
            raise ValueError("the turnaround cannot be negative")

    def wire_s(self, n_bytes: int) -> float:
        """Simulated seconds that `n_bytes` take on the wire (0 when the line itself takes it)."""
        return n_bytes * self.bits_per_char / self.baud if self.wire else 0.0

    def wall_s(self, simulated_s: float) -> float:
        """Wall-clock seconds for `simulated_s` at the clock's speed."""
        return simulated_s / self.speed


class SerialBus:
    """The serving loop of one line: a non-blocking file descriptor wired to a device handler,
    with byte timing and cut/garbage fault hooks. Subclasses open the line (`PtyBus`: a new
    pseudo-terminal; `serial_lines.SerialPortBus`: an existing serial device)."""

    def __init__(
        self, fd: int, handler: Callable[[bytes], bytes], timing: LineTiming | None = None
    ) -> None:
        self.handler = handler
        self.timing = timing
        self._fd = fd
        os.set_blocking(self._fd, False)
        self.port_path: str = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._out = bytearray()
        self._writer_armed = False
        self._cut = False
        self._garbage_rate = 0.0
        self._rng: random.Random = random.Random(0)
        # Byte timing (loop time, wall seconds): when the host's bytes and the device's replies
        # have finished crossing the line, and the replies still on their way.
        self._rx_idle_at = 0.0
        self._tx_idle_at = 0.0
        self._in_flight: set[asyncio.TimerHandle] = set()
        self.bytes_in = 0
        self.bytes_out = 0
        self.replies_corrupted = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._on_readable)

    def close(self) -> None:
        self._drop_in_flight()
        if self._loop is not None and self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._close_line()
        self._fd = -1
        self._loop = None

    def _close_line(self) -> None:
        """Release the line's file descriptors (the subclass knows which it opened)."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # --- fault hooks ----------------------------------------------------------------------------

    def set_cut(self, cut: bool) -> None:
        """While cut, bytes in both directions are lost, like a pulled cable."""
        self._cut = cut
        if cut:
            self._out.clear()
            self._drop_in_flight()

    def set_timing(self, timing: LineTiming | None) -> None:
        """Turn byte timing on (or change it) or off; replies already on their way keep theirs."""
        self.timing = timing

    def set_garbage(self, rate: float, rng: random.Random) -> None:
        """Corrupt one byte in ``rate`` of the replies (EMI on the line)."""
        self._garbage_rate = rate
        self._rng = rng

    def send(self, data: bytes) -> None:
        """Write device-to-host bytes outside the request/reply cycle (late or stray frames)."""
        if not self._cut:
            self._transmit(self._to_line(data), ready_at=None)

    # --- what the line makes of the bytes (a UART at other settings garbles them) ---------------

    def _from_line(self, data: bytes) -> bytes:
        """The bytes the device's UART receives for `data` sent by the host (as sent, here)."""
        return data

    def _to_line(self, data: bytes) -> bytes:
        """The bytes the host's UART receives for `data` sent by the device (as sent, here)."""
        return data

    # --- I/O ------------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._read_failed(exc)
            return
        if not data:
            self._read_failed(None)
            return
        if self._cut:
            return
        self.bytes_in += len(data)
        received_at = self._received_at(len(data))
        reply = self.handler(self._from_line(data))
        if reply and not self._cut:
            self._transmit(self._to_line(self._maybe_corrupt(reply)), ready_at=received_at)

    def _read_failed(self, error: OSError | None) -> None:
        """The line cannot be read (`error`), or hung up (None: end of file). A pseudo-terminal
        whose slave we hold open never hangs up, so only an unexpected error is raised."""
        if error is not None and error.errno != errno.EIO:
            raise error

    def _received_at(self, n_bytes: int) -> float | None:
        """Loop time at which the last of `n_bytes` just written by the host reaches the device."""
        if self.timing is None or self._loop is None:
            return None
        start = max(self._loop.time(), self._rx_idle_at)
        self._rx_idle_at = start + self.timing.wall_s(self.timing.wire_s(n_bytes))
        return self._rx_idle_at

    def _transmit(self, data: bytes, ready_at: float | None) -> None:
        """Send now, or, with timing, when the reply's last byte would reach the host.

        `ready_at` is when the device has the request complete (None: unsolicited bytes, sent
        as soon as the line is free).
        """
        timing, loop = self.timing, self._loop
        if timing is None or loop is None:
            self._send(data)
            return
        start = max(
            loop.time() if ready_at is None else ready_at + timing.wall_s(timing.turnaround_s),
            self._tx_idle_at,
        )
        # Strictly later than the previous reply (every reply has at least one byte), so the
        # timer heap, which does not keep insertion order for equal times, cannot reorder them.
        self._tx_idle_at = start + timing.wall_s(timing.wire_s(len(data)))

        def deliver() -> None:
            self._in_flight.discard(handle)
            if not self._cut:
                self._send(data)

        handle = loop.call_at(self._tx_idle_at, deliver)
        self._in_flight.add(handle)

    def _drop_in_flight(self) -> None:
        """Replies still on the wire are lost with the line (cut) or the port (close)."""
        for handle in self._in_flight:
            handle.cancel()
        self._in_flight.clear()

    def _maybe_corrupt(self, reply: bytes) -> bytes:
        if self._garbage_rate <= 0 or self._rng.random() >= self._garbage_rate:
            return reply
        self.replies_corrupted += 1
        corrupted = bytearray(reply)
        i = self._rng.randrange(len(corrupted))
        corrupted[i] ^= self._rng.randrange(1, 256)
        return bytes(corrupted)

    def _send(self, data: bytes) -> None:
        room = MAX_OUTPUT_BUFFER - len(self._out)
        self._out += data[: max(room, 0)]
        self._flush()

    def _flush(self) -> None:
        while self._out:
            try:
                n = os.write(self._fd, self._out)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EIO:
                    self._out.clear()
                    break
                raise
            self.bytes_out += n
            del self._out[:n]
        if self._loop is None:
            return
        if self._out and not self._writer_armed:
            self._loop.add_writer(self._fd, self._flush)
            self._writer_armed = True
        elif not self._out and self._writer_armed:
            self._loop.remove_writer(self._fd)
            self._writer_armed = False


class PtyBus(SerialBus):
    """A new pseudo-terminal playing the line: the simulator holds the master side, drivers open
    ``port_path`` (the slave) as a real serial port."""

    def __init__(self, handler: Callable[[bytes], bytes], timing: LineTiming | None = None) -> None:
        master, self._slave = os.openpty()
        # Raw, no echo: otherwise the line discipline would echo requests back to the driver and
        # translate \r\n. Keeping our own slave fd open means the pty never hangs up (EIO) when
        # the driver closes and reopens the port.
        tty.setraw(self._slave)
        attrs = termios.tcgetattr(self._slave)
        attrs[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON)
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        super().__init__(master, handler, timing)
        self.port_path = os.ttyname(self._slave)

    def _close_line(self) -> None:
        super()._close_line()
        if self._slave >= 0:
            with contextlib.suppress(OSError):
                os.close(self._slave)
        self._slave = -1


@dataclass(frozen=True)
class SerialTiming:
    """Byte timing for all of an instrument's buses, by default at the rates and framings of
    SPEC §7/§8, which the drivers open the ports at unless the configuration's `[buses.*]` say
    otherwise (`shuttle-sim --pump-baud/--pump-framing` set both, through --print-config).
    """

    speed: float = 1.0  # the clock's simulated seconds per wall second
    pump_baud: float = 115200.0  # SPEC §7: 8N1, 10 bits per byte
    probe_baud: float = 19200.0  # SPEC §8: 8N2, 11 bits per byte
    turnaround_s: float = DEFAULT_TURNAROUND_S
    pump_bits_per_char: float = 10
    probe_bits_per_char: float = 11

    def pumps(self) -> LineTiming:
        return LineTiming(self.pump_baud, self.pump_bits_per_char, self.turnaround_s, self.speed)

    def probes(self) -> LineTiming:
        bits = self.probe_bits_per_char
        turnaround = max(self.turnaround_s, modbus_silence_s(self.probe_baud, bits))
        return LineTiming(self.probe_baud, bits, turnaround, self.speed)


def modbus_silence_s(baud: float, bits_per_char: float) -> float:
    """The silence a Modbus RTU slave keeps before it answers (t3.5 of the Modbus serial line
    specification): 3.5 character times, fixed at 1.75 ms above 19200 baud."""
    return 0.00175 if baud > 19200 else 3.5 * bits_per_char / baud
