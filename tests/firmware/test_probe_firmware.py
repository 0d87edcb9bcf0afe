"""The Modbus density probe stub and its RTU line against SPEC.md §8."""

from __future__ import annotations

import struct

import pytest

from firmware_stubs.probe import (
    DensityProbeFirmware,
    ModbusRtuBusFirmware,
    modbus_crc16,
    with_crc,
)


def read_req(dev: int, addr: int, count: int, function: int = 3) -> bytes:
    return with_crc(struct.pack(">BBHH", dev, function, addr, count))


def words_to_float(hi: int, lo: int) -> float:
    return struct.unpack(">f", struct.pack(">HH", hi, lo))[0]


@pytest.fixture
def bus() -> ModbusRtuBusFirmware:
    a, b = DensityProbeFirmware(1), DensityProbeFirmware(17)
    a.set_measurement(2.5e6, 37.0)
    b.set_measurement(1.0e5, 36.5, status=0x2)
    return ModbusRtuBusFirmware([a, b])


def test_crc_reference_vector() -> None:
    # Read holding registers dev 1, addr 0, count 1: the textbook frame 01 03 00 00 00 01 84 0A
    assert read_req(1, 0, 1) == bytes.fromhex("010300000001840A")
    assert modbus_crc16(bytes.fromhex("010300000001840A")) == 0


def test_register_map() -> None:
    probe = DensityProbeFirmware(5)
    assert probe.read_registers(4872, 1) == [0x1]  # invalid until the first measurement
    probe.set_measurement(3.25e6, 36.9, status=0x4)
    assert probe.read_registers(2089, 2) == [0, 1]
    assert probe.read_registers(2409, 2) == [0, 4]
    hi, lo = probe.read_registers(2091, 2)
    assert words_to_float(hi, lo) == pytest.approx(3.25e6)
    assert hi == struct.unpack(">HH", struct.pack(">f", 3.25e6))[0]  # high word first
    t = probe.read_registers(2411, 2)
    assert words_to_float(*t) == pytest.approx(36.9, abs=1e-5)
    assert probe.read_registers(4872, 1) == [0x4]
    # The driver's reads (drivers/probe_modbus.py): each 4-register block carries its unit code
    # (uint32, high word first: 1 = cells/mL, 4 = °C) then its float32 value, high word first.
    density_block = probe.read_registers(2089, 4) or []
    assert density_block == [0, 1, *struct.unpack(">HH", struct.pack(">f", 3.25e6))]
    assert (density_block[0] << 16) | density_block[1] == 1
    assert words_to_float(*density_block[2:]) == 3.25e6  # an integer below 2**24: exact in float32
    temperature_block = probe.read_registers(2409, 4) or []
    assert temperature_block[:2] == [0, 4]
    # 36.9 is not a float32: the register holds its nearest float32, to the bit.
    assert words_to_float(*temperature_block[2:]) == struct.unpack(">f", struct.pack(">f", 36.9))[0]
    assert probe.read_registers(2089, 5) is None
    assert probe.read_registers(0, 1) is None


def test_read_reply_bytes(bus: ModbusRtuBusFirmware) -> None:
    reply = bus.feed(read_req(1, 2089, 4))
    assert reply[:3] == bytes([1, 3, 8]) and len(reply) == 3 + 8 + 2
    assert modbus_crc16(reply) == 0
    regs = struct.unpack(">4H", reply[3:11])
    assert regs[:2] == (0, 1)
    assert words_to_float(*regs[2:]) == pytest.approx(2.5e6)
    status = bus.feed(read_req(17, 4872, 1))
    assert status[3:5] == b"\x00\x02"


@pytest.mark.parametrize(
    ("request_frame", "reply"),
    [
        (read_req(1, 2089, 1, function=4), bytes([1, 0x84, 1])),
        (read_req(1, 2089, 1, function=6), bytes([1, 0x86, 1])),
        (read_req(1, 2089, 0), bytes([1, 0x83, 3])),
        (read_req(1, 2089, 126), bytes([1, 0x83, 3])),
        (read_req(1, 2093, 2), bytes([1, 0x83, 2])),
        (read_req(1, 4871, 2), bytes([1, 0x83, 2])),
    ],
)
def test_exceptions(bus: ModbusRtuBusFirmware, request_frame: bytes, reply: bytes) -> None:
    assert bus.feed(request_frame) == with_crc(reply)


def test_write_multiple_is_illegal_function(bus: ModbusRtuBusFirmware) -> None:
    frame = with_crc(struct.pack(">BBHHB2H", 1, 16, 2089, 2, 4, 0, 1))
    assert bus.feed(frame[:5]) == b""
    assert bus.feed(frame[5:]) == with_crc(bytes([1, 0x90, 1]))


def test_unknown_device_and_broadcast_get_no_reply(bus: ModbusRtuBusFirmware) -> None:
    assert bus.feed(read_req(2, 2089, 2)) == b""
    assert bus.feed(read_req(0, 2089, 2)) == b""
    assert bus.feed(read_req(1, 4872, 1))[:2] == bytes([1, 3])  # still in sync


def test_bad_crc_resyncs(bus: ModbusRtuBusFirmware) -> None:
    good = read_req(1, 4872, 1)
    corrupt = bytearray(good)
    corrupt[3] ^= 0x40
    assert bus.feed(bytes(corrupt)) == b""
    reply = bus.feed(b"\x10\x00" + good)
    assert reply[:3] == bytes([1, 3, 2])
    assert bus.dropped_bytes >= 2


def test_garbage_looking_like_write_multiple_does_not_stall(bus: ModbusRtuBusFirmware) -> None:
    garbage = bytes([1, 16, 0, 0, 0, 0, 250])  # claims a 259-byte frame
    assert bus.feed(garbage + read_req(1, 4872, 1))[:3] == bytes([1, 3, 2])


def test_split_frames_and_back_to_back(bus: ModbusRtuBusFirmware) -> None:
    stream = read_req(1, 2091, 2) + read_req(17, 2411, 2) + read_req(1, 4872, 1)
    out = b""
    for i in range(len(stream)):
        out += bus.feed(stream[i : i + 1])
    assert len(out) == (5 + 4) * 2 + (5 + 2)
    assert words_to_float(*struct.unpack(">HH", out[12:16])) == pytest.approx(36.5, abs=1e-5)
