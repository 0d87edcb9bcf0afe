"""A pseudo-terminal that plays a serial bus: drivers open ``port_path`` as a real serial port.

The driver under test cannot tell the simulator from hardware, which is the point: the same
pyserial/pymodbus code paths run. The device side is a plain ``handler(bytes) -> bytes`` (a pure
firmware stub wrapped with the simulator's clock) called from the event loop's reader callback.
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

MAX_OUTPUT_BUFFER = 65536  # replies nobody reads are dropped beyond this, as a real line would


class PtyBus:
    """Master side of a pty wired to a device handler, with cut/garbage fault hooks."""

    def __init__(self, handler: Callable[[bytes], bytes]) -> None:
        self.handler = handler
        self._master, self._slave = os.openpty()
        # Raw, no echo: otherwise the line discipline would echo requests back to the driver and
        # translate \r\n. Keeping our own slave fd open means the pty never hangs up (EIO) when
        # the driver closes and reopens the port.
        tty.setraw(self._slave)
        attrs = termios.tcgetattr(self._slave)
        attrs[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON)
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        os.set_blocking(self._master, False)
        self.port_path: str = os.ttyname(self._slave)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._out = bytearray()
        self._writer_armed = False
        self._cut = False
        self._garbage_rate = 0.0
        self._rng: random.Random = random.Random(0)
        self.bytes_in = 0
        self.bytes_out = 0
        self.replies_corrupted = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._master, self._on_readable)

    def close(self) -> None:
        if self._loop is not None and self._master >= 0:
            self._loop.remove_reader(self._master)
            self._loop.remove_writer(self._master)
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1
        self._loop = None

    async def __aenter__(self) -> PtyBus:
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

    def set_garbage(self, rate: float, rng: random.Random) -> None:
        """Corrupt one byte in ``rate`` of the replies (EMI on the line)."""
        self._garbage_rate = rate
        self._rng = rng

    def send(self, data: bytes) -> None:
        """Write device-to-host bytes outside the request/reply cycle (late or stray frames)."""
        if not self._cut:
            self._send(data)

    # --- I/O ------------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open; cannot happen while we hold ours
                return
            raise
        if not data or self._cut:
            return
        self.bytes_in += len(data)
        reply = self.handler(data)
        if reply and not self._cut:
            self._send(self._maybe_corrupt(reply))

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
                n = os.write(self._master, self._out)
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
            self._loop.add_writer(self._master, self._flush)
            self._writer_armed = True
        elif not self._out and self._writer_armed:
            self._loop.remove_writer(self._master)
            self._writer_armed = False
