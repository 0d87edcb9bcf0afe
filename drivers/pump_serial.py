"""Driver for pump modules on a serial multi-drop bus (SPEC.md §7), pyserial + asyncio.

One ``PumpBus`` per port owns the port, the sequence counter and a lock: RS-485 allows one
outstanding request per bus. Each attempt uses a fresh ``seq`` so a late reply to an earlier
attempt is recognised as stale and dropped instead of being taken for the current answer.

Retries happen on timeouts and corrupted replies only. An ``ERR`` reply raises ``DeviceRefused``
at once: the pump is alive and said no. A corrupted reply fails its attempt at once rather than
after the timeout (a line that does not parse while a request is pending can only be the reply,
damaged), and once the line has gone silent (a request failed after all its retries) each request
makes a single attempt until something answers again: retrying into a cut cable only multiplies
the time a caller waits.

DISPENSE is not idempotent: if the request arrived but its reply was lost, sending it again would
transfer the volume twice. ``SerialPump.dispense`` therefore reads STATUS before sending and, after
a lost reply, reads STATUS again: when ``remaining_ul > 0`` or ``dispensed_ul`` grew, the command
got through and is not repeated; otherwise it is sent again. All attempts (DISPENSE and the STATUS
checks) share the ``retries + 1`` budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import termios

import serial

from drivers.interfaces import (
    DeviceDisconnected,
    DeviceError,
    DeviceRefused,
    DeviceTimeout,
    PumpIdentity,
    PumpStatus,
)
from drivers.serial_line import PUMP_LINE, SerialLine

MAX_LINE = 512
# A STATUS request and its longest reply (every alarm, a large dispensed count), in characters:
# the longest exchange a poll makes, which must fit in a request's timeout at the line's rate.
STATUS_EXCHANGE_CHARS = 110


def _ccitt_table() -> tuple[int, ...]:
    table = []
    for high in range(256):
        crc = high << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return tuple(table)


_CCITT_TABLE = _ccitt_table()


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE, a byte at a time from a table; written independently of the
    firmware stub on purpose (a shared bug would pass every test)."""
    crc = 0xFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CCITT_TABLE[(crc >> 8) ^ byte]
    return crc


def build_request(address: int, seq: int, command: str, args: tuple[object, ...]) -> bytes:
    body = " ".join([f"@{address}:{seq}", command, *(_fmt(a) for a in args)]).encode("ascii")
    return body + b"*%04X\r\n" % crc16_ccitt_false(body)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        text = f"{value:.4f}".rstrip("0").rstrip(".")
        return text or "0"
    text = str(value)
    if not text or any(c in text for c in " *\r\n"):
        raise ValueError(f"argument not allowed on the wire: {text!r}")
    return text


class NoReply(Exception):
    """One attempt got no usable reply (timeout, corrupted reply or port failure).

    Public because it is part of the transport seam: a bus that replaces `PumpBus.attempt`
    (the digital twin's in-process bus) raises it, and the retry policy treats it as a lost
    frame."""


class PumpBus:
    """One serial port with any number of pumps on it, at the bus's `line` settings."""

    def __init__(
        self, port: str, *, line: SerialLine = PUMP_LINE, timeout_s: float = 0.5, retries: int = 2
    ) -> None:
        self.port = port
        self.line = line
        self.timeout_s = timeout_s
        self.retries = retries
        self.lock = asyncio.Lock()
        self.timeouts = 0
        self.crc_errors = 0
        self.stale_replies = 0
        self.reopens = 0
        self._serial: serial.Serial | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rx = bytearray()
        self._seq = 0
        self._pending: tuple[int, int, asyncio.Future[list[str]]] | None = None
        self._opened_once = False
        self.silent = False  # the last request got no reply after all its attempts

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    async def open(self) -> None:
        """Open the port; raises DeviceDisconnected when it does not exist (yet)."""
        if self._serial is not None:
            return
        self._loop = asyncio.get_running_loop()
        try:
            ser = serial.Serial(
                self.port, baudrate=self.line.baud, bytesize=self.line.bytesize,
                parity=self.line.parity, stopbits=self.line.stopbits, timeout=0, write_timeout=1.0,
            )  # fmt: skip
        except (serial.SerialException, OSError, termios.error) as exc:  # termios: refused settings
            raise DeviceDisconnected(f"cannot open {self.port} at {self.line}: {exc}") from exc
        if self._opened_once:
            self.reopens += 1
        self._opened_once = True
        self._serial = ser
        self._rx.clear()
        self._loop.add_reader(ser.fileno(), self._on_readable)

    async def close(self) -> None:
        self._drop_port()

    def _drop_port(self) -> None:
        ser, self._serial = self._serial, None
        self._rx.clear()
        if ser is None:
            return
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(ser.fileno())
        with contextlib.suppress(Exception):
            ser.close()

    # --- receiving ------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        ser = self._serial
        if ser is None:
            return
        try:
            data = ser.read(4096)
        except (serial.SerialException, OSError) as exc:
            self._drop_port()
            self._fail_pending(NoReply(f"port failed: {exc}"))
            return
        self._rx += data
        # A frame ends with \r\n; either byte alone also ends a line, so noise that hits one of
        # them costs one frame, not the next reply as well.
        while (nl := _line_end(self._rx)) >= 0:
            line = bytes(self._rx[:nl]).strip()
            del self._rx[: nl + 1]
            if line:
                self._on_line(line)
        if len(self._rx) > MAX_LINE:
            self._rx.clear()

    def _on_line(self, line: bytes) -> None:
        parsed = parse_reply(line)
        if parsed is None:
            if self._pending is not None:
                self.crc_errors += 1
                self._fail_pending(NoReply("corrupted reply"))
            return
        address, seq, fields = parsed
        pending = self._pending
        if pending is None or (address, seq) != pending[:2]:
            self.stale_replies += 1
            return
        if not pending[2].done():
            pending[2].set_result(fields)

    def _fail_pending(self, exc: Exception) -> None:
        if self._pending is not None and not self._pending[2].done():
            self._pending[2].set_exception(exc)

    # --- requests -------------------------------------------------------------------------------

    async def request(self, address: int, command: str, *args: object) -> list[str]:
        """Send one command and return the OK data fields.

        Holds the bus for at most ``(retries + 1) * timeout_s`` (plus the wait for the lock).
        """
        async with self.lock:
            attempts = 1 if self.silent else self.retries + 1
            return await self._request_locked(address, command, *args, attempts=attempts)

    async def _request_locked(
        self, address: int, command: str, *args: object, attempts: int
    ) -> list[str]:
        """Like request() for a caller that already holds ``lock`` (multi-step sequences)."""
        last: Exception | None = None
        for _ in range(attempts):
            try:
                reply = await self.attempt(address, command, *args)
            except NoReply as exc:
                last = exc
                continue
            except DeviceRefused:
                self.silent = False  # it answered
                raise
            self.silent = False
            return reply
        self.silent = True
        if isinstance(last, _PortError):
            raise DeviceDisconnected(f"pump {address} {command}: {last}") from last
        raise DeviceTimeout(f"pump {address} {command}: no valid reply ({last})") from last

    async def attempt(self, address: int, command: str, *args: object) -> list[str]:
        """One send/receive; raises NoReply or DeviceRefused. Caller holds the lock.

        The transport seam: everything above it (retries, silence, error mapping) and the
        framing it calls (`build_request`, `parse_reply`, `interpret_reply`) stay the same when
        a subclass answers from somewhere other than a serial port."""
        if not 1 <= address <= 32:
            raise ValueError("pump address must be 1-32")
        loop = asyncio.get_running_loop()
        if self._serial is None:
            try:
                await self.open()
            except DeviceDisconnected as exc:
                raise _PortError(str(exc)) from exc
        assert self._serial is not None
        seq = self.next_seq()
        future: asyncio.Future[list[str]] = loop.create_future()
        self._pending = (address, seq, future)
        try:
            try:
                self._serial.write(build_request(address, seq, command, args))
            except (serial.SerialException, OSError) as exc:
                self._drop_port()
                raise _PortError(f"write failed: {exc}") from exc
            try:
                # The task awaits the reply's future itself (wait_for would chain one more
                # future, one more pass of the event loop per exchange).
                async with asyncio.timeout(self.timeout_s):
                    fields = await future
            except TimeoutError:
                self.timeouts += 1
                self._rx.clear()  # resync: whatever partial line we hold is garbage now
                raise NoReply(f"timeout after {self.timeout_s} s") from None
        finally:
            self._pending = None
        return interpret_reply(address, command, fields)

    def next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % 256
        return seq


def parse_reply(line: bytes) -> tuple[int, int, list[str]] | None:
    """(address, seq, fields) of one reply line, or None when it is not a valid reply frame.

    Garbage glued in front of a frame is skipped; the CRC covers the rest.
    """
    start = line.rfind(b"!")
    if start < 0:
        return None
    line = line[start:]
    star = line.rfind(b"*")
    try:
        crc = int(line[star + 1 :], 16) if star > 0 and len(line) - star == 5 else -1
    except ValueError:
        crc = -1
    if crc != crc16_ccitt_false(line[:star]):
        return None
    head, _, rest = line[1:star].decode("ascii", "replace").partition(" ")
    addr_text, _, seq_text = head.partition(":")
    if not (addr_text.isdigit() and seq_text.isdigit()):
        return None
    return int(addr_text), int(seq_text), rest.split()


def interpret_reply(address: int, command: str, fields: list[str]) -> list[str]:
    """The OK data fields; an ERR reply raises DeviceRefused, anything else DeviceError."""
    if fields[:1] == ["OK"]:
        return fields[1:]
    if fields[:1] == ["ERR"] and len(fields) >= 2:
        raise DeviceRefused(fields[1], " ".join(fields[2:]))
    raise DeviceError(f"pump {address} {command}: malformed reply {fields!r}")


def _line_end(buffer: bytearray) -> int:
    ends = [i for i in (buffer.find(b"\n"), buffer.find(b"\r")) if i >= 0]
    return min(ends) if ends else -1


class _PortError(NoReply):
    """The port is missing or failed; it is reopened on the next attempt."""


def parse_status(fields: list[str]) -> PumpStatus:
    try:
        state, rpm, direction, dispensed, remaining, alarms = fields
        return PumpStatus(
            state=state,
            rpm=float(rpm),
            direction=direction,
            dispensed_ul=float(dispensed),
            remaining_ul=float(remaining),
            alarms=frozenset() if alarms == "-" else frozenset(alarms.split(",")),
        )
    except ValueError as exc:
        raise DeviceError(f"malformed STATUS reply {fields!r}") from exc


class SerialPump:
    """The Pump interface for one address on a PumpBus."""

    def __init__(self, bus: PumpBus, address: int) -> None:
        self.bus = bus
        self.address = address

    async def _ok(self, command: str, *args: object) -> list[str]:
        return await self.bus.request(self.address, command, *args)

    async def identify(self) -> PumpIdentity:
        fields = await self._ok("ID")
        if len(fields) != 3:
            raise DeviceError(f"malformed ID reply {fields!r}")
        return PumpIdentity(model=fields[0], firmware=fields[1], serial=fields[2])

    async def status(self) -> PumpStatus:
        return parse_status(await self._ok("STATUS"))

    async def set_speed(self, rpm: float) -> None:
        await self._ok("SPEED", float(rpm))

    async def set_direction(self, direction: str) -> None:
        if direction not in ("CW", "CCW"):
            raise ValueError("direction must be CW or CCW")
        await self._ok("DIR", direction)

    async def run(self) -> None:
        await self._ok("RUN")

    async def stop(self) -> None:
        await self._ok("STOP")

    async def set_watchdog(self, ms: int) -> None:
        await self._ok("WDOG", int(ms))

    async def clear_alarms(self) -> None:
        await self._ok("CLEAR")

    async def calibrate(self, ul_per_rev: float) -> None:
        await self._ok("CAL", float(ul_per_rev))

    async def dispense(self, volume_ul: float, rate_ul_min: float) -> None:
        """Start a transfer exactly once, even when a reply is lost (see module docstring).

        DeviceTimeout here means the outcome is unknown: the pump may be dispensing. Read
        STATUS (``remaining_ul``, cumulative ``dispensed_ul``) before trying again. Bus time is
        at most one STATUS request plus ``(retries + 1) * timeout_s``.
        """
        bus = self.bus
        async with bus.lock:
            before = parse_status(
                await bus._request_locked(self.address, "STATUS", attempts=bus.retries + 1)
            )
            budget = bus.retries + 1
            while budget > 0:
                budget -= 1
                try:
                    await bus.attempt(
                        self.address, "DISPENSE", float(volume_ul), float(rate_ul_min)
                    )
                    return
                except NoReply:
                    pass
                while budget > 0:
                    budget -= 1
                    try:
                        now = parse_status(await bus.attempt(self.address, "STATUS"))
                    except NoReply:
                        continue
                    grew = before.state != "RUN" and now.dispensed_ul > before.dispensed_ul
                    if now.remaining_ul > 0 or grew:
                        return  # the DISPENSE got through; only its reply was lost
                    break  # it did not arrive: send it again
        raise DeviceTimeout(f"pump {self.address} DISPENSE: no valid reply")
