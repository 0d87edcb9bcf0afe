"""Driver for Modbus RTU density probes (SPEC.md §8) on pymodbus 3.16.

pymodbus stays inside this module: its API moves between minor versions (``slave=`` became
``device_id=``; 3.16 spells it ``read_holding_registers(address, count=, device_id=)``), so the
rest of the daemon only sees ``ProbeReading`` and our exceptions.

``ProbeBus`` holds one client and one lock per RS-485 line: two requests at once on one bus
collide and both time out. pymodbus' own retries are off; we bound each request by ``timeout_s``
so a dead probe costs a known time. pymodbus reconnects a lost serial port by itself after
``reconnect_delay``; when the client is not connected we also try to connect before a request.

pymodbus drops a reply with a bad CRC silently and waits out its timeout: with 2 % of frames
corrupted on a line that costs a full timeout per damaged frame. We watch the received bytes
through pymodbus' `trace_packet` hook, and when a complete reply of the expected length has a bad
CRC we fail that attempt at once and retry. Once the line is silent (a read failed after its
retries) each read makes one attempt until something answers again.

A late reply to a timed-out request carries the same device id and function and could be taken
for the answer to the next request. We read the unit-code registers along with each value
(2089-2092 and 2409-2412) so the two 4-register blocks identify themselves, and a mix-up shows as
a wrong unit code ("bad") rather than a temperature read as a density.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
import termios

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.framer import FramerType

from drivers.interfaces import (
    DeviceDisconnected,
    DeviceError,
    DeviceRefused,
    DeviceTimeout,
    ProbeReading,
)
from drivers.serial_line import PROBE_LINE, SerialLine

REG_DENSITY_BLOCK = 2089  # unit code (uint32) + density (float32)
REG_TEMPERATURE_BLOCK = 2409  # unit code (uint32) + temperature (float32)
REG_STATUS = 4872
UNIT_CELLS_PER_ML = 1
UNIT_CELSIUS = 4
STATUS_INVALID = 0x1
STATUS_OUT_OF_RANGE = 0x2
STATUS_SENSOR_FAILURE = 0x4
TEMPERATURE_PLAUSIBLE_C = (-10.0, 150.0)
# A 4-register read: the request (8 bytes), the slave's 3.5-character silence and its reply
# (13 bytes), in characters: the longest exchange a read makes.
READ_EXCHANGE_CHARS = 8 + 3.5 + 13


class ProbeBus:
    """One Modbus RTU line at the bus's `line` settings: a pymodbus client and the lock that
    serialises its requests."""

    def __init__(
        self,
        port: str,
        *,
        line: SerialLine = PROBE_LINE,
        timeout_s: float = 0.5,
        retries: int = 2,
    ) -> None:
        self.port = port
        self.line = line
        self.timeout_s = timeout_s
        self.retries = retries
        self.lock = asyncio.Lock()
        self.timeouts = 0
        self.crc_errors = 0
        self.silent = False  # the last read failed after all its attempts
        self._rx = bytearray()
        self._expect = 0  # length of the reply to the pending request (0: none pending)
        self._corrupted = False  # the pending request's reply arrived damaged
        self._client = AsyncModbusSerialClient(
            port,
            framer=FramerType.RTU,
            baudrate=line.baud,
            bytesize=line.bytesize,
            parity=line.parity,
            stopbits=line.stopbits,
            timeout=timeout_s,
            retries=0,
            reconnect_delay=0.1,
            reconnect_delay_max=5.0,
            trace_packet=self._trace_packet,
        )
        # pymodbus logs every timeout at ERROR with a hex dump of recent frames; we raise
        # DeviceTimeout instead and let the daemon decide what is worth logging. Only when
        # nobody configured the pymodbus logger.
        pymodbus_logger = logging.getLogger("pymodbus")
        if pymodbus_logger.level == logging.NOTSET:
            pymodbus_logger.setLevel(logging.CRITICAL)

    async def open(self) -> None:
        """Connect; raises DeviceDisconnected when the port cannot be opened."""
        if self._client.connected:
            return
        try:
            ok = await asyncio.wait_for(self._client.connect(), self.timeout_s * 2)
        except (TimeoutError, OSError, ModbusException, termios.error) as exc:
            # termios.error: the port refused the line settings (pyserial lets it through)
            raise DeviceDisconnected(f"cannot open {self.port} at {self.line}: {exc}") from exc
        if not ok:
            raise DeviceDisconnected(f"cannot open {self.port} at {self.line}")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()

    async def read_holding_registers(self, device_id: int, address: int, count: int) -> list[int]:
        """Read ``count`` registers; caller holds ``lock``.

        Reads are idempotent, so a timeout (a reply lost or corrupted on the line) is retried;
        the whole call is bounded by about ``(retries + 1) * timeout_s``.
        """
        for _ in range(0 if self.silent else self.retries):
            with contextlib.suppress(DeviceTimeout):
                return await self._read_once(device_id, address, count)
        return await self._read_once(device_id, address, count)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """pymodbus' byte-stream hook: spot a complete reply with a bad CRC as it arrives, and
        end the pending request at once instead of at pymodbus' timeout."""
        if sending:
            self._rx.clear()
            return data
        self._rx += data
        damaged = self._expect and rtu_reply_status(bytes(self._rx), self._expect) is False
        if damaged and not self._corrupted:
            self._corrupted = True
            pending = getattr(self._client.ctx, "response_future", None)
            if pending is not None and not pending.done():
                pending.set_exception(_CorruptReply())
        return data

    async def _read_once(self, device_id: int, address: int, count: int) -> list[int]:
        try:
            response = await self._exchange(device_id, address, count)
        except DeviceTimeout:
            self.silent = True
            raise
        self.silent = False
        return response

    async def _exchange(self, device_id: int, address: int, count: int) -> list[int]:
        await self.open()
        self._corrupted = False
        self._expect = 5 + 2 * count
        try:
            # Awaited in the caller's own task, with no task or wait set of its own: every
            # future between the reply and the caller costs one more pass of the event loop,
            # and a tick makes about fifteen of these exchanges. pymodbus waits timeout_s
            # itself; the outer bound only guards a hang.
            async with asyncio.timeout(self.timeout_s * 2):
                response = await self._client.read_holding_registers(
                    address, count=count, device_id=device_id
                )
        except (TimeoutError, _CorruptReply, ModbusException) as exc:
            if isinstance(exc, ConnectionException) and not self._corrupted:
                raise DeviceDisconnected(f"probe {device_id}: {exc}") from exc
            self.timeouts += 1
            if self._corrupted:
                self.crc_errors += 1
                raise DeviceTimeout(f"probe {device_id} @{address}: corrupted reply") from None
            if isinstance(exc, ModbusException):
                raise DeviceTimeout(f"probe {device_id} @{address}: no reply ({exc})") from exc
            raise DeviceTimeout(f"probe {device_id} @{address}: no reply") from None
        finally:
            self._expect = 0
        if response.isError():
            code = getattr(response, "exception_code", 0)
            raise DeviceRefused(str(code), f"Modbus exception {code} reading {address}")
        registers = list(response.registers)
        if len(registers) != count:
            raise DeviceError(f"probe {device_id}: {len(registers)} registers, wanted {count}")
        return registers


class _CorruptReply(Exception):
    """A complete reply whose CRC is wrong: the request has failed, no need to wait it out."""


def _modbus_table() -> tuple[int, ...]:
    table = []
    for low in range(256):
        crc = low
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_MODBUS_TABLE = _modbus_table()


def modbus_crc(data: bytes) -> int:
    """Modbus CRC-16 (reflected 0xA001, init 0xFFFF), a byte at a time from a table."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _MODBUS_TABLE[(crc ^ byte) & 0xFF]
    return crc


def rtu_reply_status(buffer: bytes, expected: int) -> bool | None:
    """True: a complete, CRC-valid reply (normal or exception) is in `buffer`; False: one is
    complete but damaged; None: not complete yet."""
    length = 5 if len(buffer) >= 2 and buffer[1] & 0x80 else expected
    if len(buffer) < length:
        return None
    frame = buffer[:length]
    return modbus_crc(frame[:-2]) == frame[-2] | (frame[-1] << 8)


def _u32(words: list[int]) -> int:
    return (words[0] << 16) | words[1]


def _f32(words: list[int]) -> float:
    value: float = struct.unpack(">f", struct.pack(">HH", words[0], words[1]))[0]
    return value


def classify(density: float, temperature: float, status: int, units_ok: bool) -> str:
    """Quality of one reading: only "good" readings may drive control."""
    if status & (STATUS_INVALID | STATUS_SENSOR_FAILURE | STATUS_OUT_OF_RANGE) or not units_ok:
        return "bad"
    if not (math.isfinite(density) and math.isfinite(temperature)) or density < 0:
        return "bad"
    low, high = TEMPERATURE_PLAUSIBLE_C
    if not low <= temperature <= high:
        return "bad"
    return "good"


class ModbusDensityProbe:
    """The Probe interface for one device id on a ProbeBus.

    ``stale_after``: when > 0, a reading whose raw value registers are bit-identical to the
    previous ``stale_after`` reads is reported "stale" (a frozen sensor keeps its last float;
    a live one always has noise in the low bits). 0 turns the check off.
    """

    def __init__(self, bus: ProbeBus, device_id: int, *, stale_after: int = 0) -> None:
        if not 1 <= device_id <= 247:
            raise ValueError("device_id must be 1-247")
        self.bus = bus
        self.device_id = device_id
        self.stale_after = stale_after
        self._last_raw: tuple[int, ...] | None = None
        self._repeats = 0

    async def ping(self) -> int:
        """One register (the status word): the cheapest request that proves the probe answers.

        The daemon asks it on the ticks between full reads, so a probe that went silent is
        noticed within a control period, not at its next full read (`poll_period_s`). Raises
        like `read`."""
        async with self.bus.lock:
            (status,) = await self.bus.read_holding_registers(self.device_id, REG_STATUS, 1)
        return status

    async def read(self) -> ProbeReading:
        """Raise DeviceTimeout/DeviceError when the probe does not answer; never hang."""
        async with self.bus.lock:
            dens = await self.bus.read_holding_registers(self.device_id, REG_DENSITY_BLOCK, 4)
            temp = await self.bus.read_holding_registers(self.device_id, REG_TEMPERATURE_BLOCK, 4)
            (status,) = await self.bus.read_holding_registers(self.device_id, REG_STATUS, 1)
        density, temperature = _f32(dens[2:]), _f32(temp[2:])
        units_ok = _u32(dens[:2]) == UNIT_CELLS_PER_ML and _u32(temp[:2]) == UNIT_CELSIUS
        quality = classify(density, temperature, status, units_ok)
        raw = (*dens[2:], *temp[2:])
        self._repeats = self._repeats + 1 if raw == self._last_raw else 0
        self._last_raw = raw
        if quality == "good" and self.stale_after > 0 and self._repeats >= self.stale_after:
            quality = "stale"
        return ProbeReading(
            density=density, temperature=temperature, status=status, quality=quality
        )
