"""Firmware of a Modbus RTU density probe (SPEC.md §8) and of the RTU line several share.

Pure: no clocks and no I/O. RTU frames are normally delimited by 3.5 character times of silence;
a byte stream without timing has to find frames by their CRC instead, which is what
``ModbusRtuBusFirmware`` does (drop one byte and retry when the CRC does not match).
"""

from __future__ import annotations

import struct

REG_UNIT_CODE = 2089
REG_DENSITY = 2091
REG_TEMP_UNIT_CODE = 2409
REG_TEMPERATURE = 2411
REG_STATUS = 4872

UNIT_CELLS_PER_ML = 1
UNIT_CELSIUS = 4

STATUS_INVALID = 0x1
STATUS_OUT_OF_RANGE = 0x2
STATUS_SENSOR_FAILURE = 0x4

EXC_ILLEGAL_FUNCTION = 1
EXC_ILLEGAL_ADDRESS = 2
EXC_ILLEGAL_VALUE = 3

MAX_READ_COUNT = 125


def _crc_table() -> list[int]:
    """The CRC of each byte value alone: eight shifts once, not for every byte of every frame."""
    table = []
    for value in range(256):
        crc = value
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def modbus_crc16(data: bytes) -> int:
    """Modbus CRC-16 (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(payload: bytes) -> bytes:
    return payload + struct.pack("<H", modbus_crc16(payload))


def _words_u32(value: int) -> tuple[int, int]:
    return (value >> 16) & 0xFFFF, value & 0xFFFF


def _words_f32(value: float) -> tuple[int, int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return hi, lo


class DensityProbeFirmware:
    """One probe: the §8 holding-register map, filled by the simulator via set_measurement."""

    def __init__(self, device_id: int) -> None:
        if not 1 <= device_id <= 247:
            raise ValueError("device_id must be 1-247")
        self.device_id = device_id
        self._registers: dict[int, int] = {}
        self._put(REG_UNIT_CODE, _words_u32(UNIT_CELLS_PER_ML))
        self._put(REG_TEMP_UNIT_CODE, _words_u32(UNIT_CELSIUS))
        self.set_measurement(0.0, 22.0, STATUS_INVALID)

    def _put(self, address: int, words: tuple[int, ...]) -> None:
        for i, word in enumerate(words):
            self._registers[address + i] = word

    def set_measurement(self, density: float, temperature: float, status: int = 0) -> None:
        """Publish a new measurement; until the first call the probe reports INVALID."""
        self._put(REG_DENSITY, _words_f32(density))
        self._put(REG_TEMPERATURE, _words_f32(temperature))
        self._put(REG_STATUS, (status & 0xFFFF,))

    def read_registers(self, address: int, count: int) -> list[int] | None:
        """Register values, or None (exception 2) when any register in the range is unmapped."""
        try:
            return [self._registers[a] for a in range(address, address + count)]
        except KeyError:
            return None


class ModbusRtuBusFirmware:
    """The probes on one RS-485 line: turns a request byte stream into reply bytes."""

    REQUEST_LEN = 8  # id, fn, addr hi/lo, count hi/lo, crc lo/hi for functions 1-6

    def __init__(self, probes: list[DensityProbeFirmware]) -> None:
        self.probes = {p.device_id: p for p in probes}
        if len(self.probes) != len(probes):
            raise ValueError("duplicate device id on one bus")
        self._buffer = bytearray()
        self.dropped_bytes = 0

    def feed(self, data: bytes) -> bytes:
        """Consume bytes; return the replies to every complete request found in them."""
        self._buffer += data
        replies = bytearray()
        buf = self._buffer
        while len(buf) >= self.REQUEST_LEN:
            frame_len = self._frame_len(buf)
            if frame_len is None:  # a write-multiple request still arriving
                break
            if frame_len and modbus_crc16(buf[:frame_len]) == 0:  # CRC over data+crc is 0
                frame = bytes(buf[:frame_len])
                del buf[:frame_len]
                replies += self._answer(frame)
            else:
                del buf[0]
                self.dropped_bytes += 1
        return bytes(replies)

    def _frame_len(self, buf: bytearray) -> int | None:
        """Length of the frame that may start at buf[0]; 0 if none does, None to wait for more.

        Functions 15 and 16 carry a byte count; to keep garbage that looks like their header
        from stalling the line, we only wait for them while no valid 8-byte frame is buffered.
        """
        if modbus_crc16(buf[: self.REQUEST_LEN]) == 0 or buf[1] not in (15, 16):
            return self.REQUEST_LEN
        if len(buf) >= 7 and len(buf) >= 9 + buf[6]:
            return 9 + buf[6]
        for start in range(1, len(buf) - self.REQUEST_LEN + 1):
            if modbus_crc16(buf[start : start + self.REQUEST_LEN]) == 0:
                return 0
        return None

    def _answer(self, frame: bytes) -> bytes:
        device_id, function = frame[0], frame[1]
        probe = self.probes.get(device_id)
        if device_id == 0 or probe is None:
            return b""
        if function != 3:
            return self._exception(device_id, function, EXC_ILLEGAL_FUNCTION)
        address, count = struct.unpack(">HH", frame[2:6])
        if not 1 <= count <= MAX_READ_COUNT:
            return self._exception(device_id, function, EXC_ILLEGAL_VALUE)
        values = probe.read_registers(address, count)
        if values is None:
            return self._exception(device_id, function, EXC_ILLEGAL_ADDRESS)
        return with_crc(bytes([device_id, 3, 2 * count]) + struct.pack(f">{count}H", *values))

    @staticmethod
    def _exception(device_id: int, function: int, code: int) -> bytes:
        return with_crc(bytes([device_id, function | 0x80, code]))
