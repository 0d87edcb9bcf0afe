"""The pump firmware stub against SPEC.md §7, driven by a hand-held clock."""

from __future__ import annotations

import binascii

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_stubs.pump import PumpBusFirmware, PumpFirmware, decode_frame, encode_frame


def req(addr: int, seq: int, text: str) -> bytes:
    return encode_frame(f"@{addr}:{seq} {text}")


def ask(pump: PumpFirmware, text: str, now: float = 0.0, seq: int = 7) -> list[str]:
    """Send one command, check the reply frame, return the words after ``!addr:seq``."""
    reply = pump.handle_line(req(pump.address, seq, text), now)
    assert reply is not None and reply.endswith(b"\r\n")
    body = decode_frame(reply)
    assert body is not None
    head, *words = body.split(" ")
    assert head == f"!{pump.address}:{seq}"
    return words


def status(pump: PumpFirmware, now: float = 0.0) -> dict[str, object]:
    words = ask(pump, "STATUS", now)
    assert words[0] == "OK"
    state, rpm, direction, dispensed, remaining, alarms = words[1:]
    return {
        "state": state,
        "rpm": float(rpm),
        "dir": direction,
        "dispensed": float(dispensed),
        "remaining": float(remaining),
        "alarms": alarms,
    }


@pytest.fixture
def pump() -> PumpFirmware:
    return PumpFirmware(3, serial_number="SN0003")


def test_crc_is_ccitt_false() -> None:
    assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1
    frame = encode_frame("@1:0 ID")
    assert frame == b"@1:0 ID*%04X\r\n" % binascii.crc_hqx(b"@1:0 ID", 0xFFFF)


def test_id_and_initial_status(pump: PumpFirmware) -> None:
    assert ask(pump, "ID") == ["OK", "CSP-100", "1.4.2", "SN0003"]
    assert status(pump) == {
        "state": "STOP",
        "rpm": 10.0,
        "dir": "CW",
        "dispensed": 0.0,
        "remaining": 0.0,
        "alarms": "-",
    }


def test_reply_format_is_exact(pump: PumpFirmware) -> None:
    reply = pump.handle_line(
        b"@3:42 SPEED 12.5*" + b"%04X" % binascii.crc_hqx(b"@3:42 SPEED 12.5", 0xFFFF), 0.0
    )
    assert reply == b"!3:42 OK*%04X\r\n" % binascii.crc_hqx(b"!3:42 OK", 0xFFFF)


def test_bad_crc_other_address_and_non_requests_get_no_reply(pump: PumpFirmware) -> None:
    good = req(3, 1, "ID")
    bad = good[:-6] + (b"0000" if not good.endswith(b"*0000\r\n") else b"0001") + b"\r\n"
    assert pump.handle_line(bad, 0.0) is None
    assert pump.handle_line(req(4, 1, "ID"), 0.0) is None
    assert pump.handle_line(encode_frame("!3:1 OK"), 0.0) is None
    assert pump.handle_line(b"hello", 0.0) is None
    assert pump.handle_line(encode_frame("@3:x ID"), 0.0) is None
    assert pump.handle_line(encode_frame("@3:256 ID"), 0.0) is None
    assert pump.handle_line(good.rstrip(), 0.0) is not None  # without \r\n too


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("FLY", "UNKNOWN"),
        ("SPEED", "SYNTAX"),
        ("SPEED abc", "SYNTAX"),
        ("SPEED 0.05", "RANGE"),
        ("SPEED 300.1", "RANGE"),
        ("SPEED nan", "RANGE"),
        ("DIR UP", "SYNTAX"),
        ("ID extra", "SYNTAX"),
        ("DISPENSE 100", "SYNTAX"),
        ("DISPENSE 0 100", "RANGE"),
        ("DISPENSE 100 1", "RANGE"),  # 1 µL/min at 80 µL/rev is below 0.1 rpm
        ("DISPENSE 100 30000", "RANGE"),  # 375 rpm
        ("WDOG -1", "SYNTAX"),
        ("WDOG 1.5", "SYNTAX"),
        ("WDOG 600001", "RANGE"),
        ("CAL 0", "RANGE"),
        ("CAL x", "SYNTAX"),
    ],
)
def test_error_codes(pump: PumpFirmware, command: str, code: str) -> None:
    words = ask(pump, command)
    assert words[:2] == ["ERR", code]
    assert len(words) > 2  # always a text


def test_empty_command_is_syntax(pump: PumpFirmware) -> None:
    assert ask(pump, "")[:2] == ["ERR", "SYNTAX"]


def test_state_errors(pump: PumpFirmware) -> None:
    assert ask(pump, "RUN") == ["OK"]
    assert ask(pump, "CAL 70")[:2] == ["ERR", "STATE"]
    assert ask(pump, "DIR CCW")[:2] == ["ERR", "STATE"]
    assert ask(pump, "DIR CW") == ["OK"]  # same direction is harmless
    assert ask(pump, "DISPENSE 10 100")[:2] == ["ERR", "STATE"]
    assert ask(pump, "SPEED 20") == ["OK"]  # on the fly while running
    assert ask(pump, "STOP") == ["OK"]
    assert ask(pump, "DISPENSE 100 800") == ["OK"]
    assert ask(pump, "RUN")[:2] == ["ERR", "STATE"]
    assert ask(pump, "SPEED 20")[:2] == ["ERR", "STATE"]


def test_run_stop_speed_dir_cal(pump: PumpFirmware) -> None:
    assert ask(pump, "SPEED 60") == ["OK"]
    assert ask(pump, "DIR CCW") == ["OK"]
    assert ask(pump, "CAL 100") == ["OK"]
    assert ask(pump, "RUN") == ["OK"]
    assert pump.running and pump.direction == "CCW" and pump.rpm == 60.0
    assert pump.flow_ul_per_min == pytest.approx(6000.0)
    moved = pump.advance(1.0, 1.0)  # 1 rev/s at 100 µL/rev
    assert moved == pytest.approx(100.0)
    s = status(pump, 1.0)
    assert (s["state"], s["rpm"], s["dir"], s["dispensed"]) == ("RUN", 60.0, "CCW", 100.0)
    assert ask(pump, "STOP", 1.0) == ["OK"]
    assert pump.advance(5.0, 6.0) == 0.0
    assert status(pump, 6.0)["state"] == "STOP"
    assert pump.flow_ul_per_min == 0.0


def test_tacho_resolution_keeps_fractions(pump: PumpFirmware) -> None:
    ask(pump, "SPEED 0.1")  # 0.1 rpm = 1/3 pulse per second at 200 pulses/rev
    ask(pump, "RUN")
    moved = [pump.advance(1.0, float(t)) for t in range(1, 31)]
    assert all(m in (0.0, pytest.approx(0.4)) for m in moved)
    assert sum(moved) == pytest.approx(10 * 0.4)  # 10 whole pulses in 30 s, nothing lost


def test_dispense_completes_exactly(pump: PumpFirmware) -> None:
    assert ask(pump, "DISPENSE 123.3 800") == ["OK"]  # 10 rpm
    s = status(pump)
    assert (s["state"], s["rpm"], s["remaining"]) == ("RUN", 10.0, 123.3)
    total, now, remaining = 0.0, 0.0, [123.3]
    while pump.running:
        now += 0.37
        total += pump.advance(0.37, now)
        remaining.append(pump.remaining_ul)
        assert now < 60
    assert total == pytest.approx(123.3, abs=1e-9)
    assert pump.dispensed_ul == pytest.approx(123.3, abs=1e-9)
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] == 0.0
    s = status(pump, now)
    assert (s["state"], s["dispensed"], s["remaining"]) == ("STOP", 123.3, 0.0)
    assert now == pytest.approx(123.3 / 800 * 60, abs=0.37)


def test_stop_aborts_dispense(pump: PumpFirmware) -> None:
    ask(pump, "DISPENSE 1000 800")
    pump.advance(3.0, 3.0)  # 40 µL
    ask(pump, "STOP", 3.0)
    assert pump.remaining_ul == 0.0 and pump.dispensed_ul == pytest.approx(40.0)


def test_watchdog_trips_and_is_fed_by_frames(pump: PumpFirmware) -> None:
    assert ask(pump, "WDOG 1000", 0.0) == ["OK"]
    ask(pump, "RUN", 0.0)
    pump.advance(0.9, 0.9)
    ask(pump, "STATUS", 0.9)  # feeds
    pump.advance(0.9, 1.8)
    assert pump.running
    ask(pump, "FLY", 1.8)  # an ERR reply still means a valid frame arrived
    assert pump.running
    before = pump.dispensed_ul
    moved = pump.advance(2.0, 3.8)  # expires at 2.8: the motor turns 1.0 s of this step
    assert not pump.running and pump.alarms == {"WATCHDOG"}
    assert moved == pytest.approx(10 / 60 * 80, abs=0.4)
    assert pump.dispensed_ul == pytest.approx(before + moved)
    s = status(pump, 3.8)
    assert (s["state"], s["alarms"]) == ("ALARM", "WATCHDOG")
    assert ask(pump, "RUN", 3.8)[:2] == ["ERR", "ALARM"]
    assert ask(pump, "CLEAR", 3.8) == ["OK"]
    assert ask(pump, "WDOG 0", 3.8) == ["OK"]
    ask(pump, "RUN", 3.8)
    pump.advance(100.0, 103.8)
    assert pump.running and not pump.alarms


def test_watchdog_trips_on_late_frame_and_frames_for_others_do_not_feed() -> None:
    bus = PumpBusFirmware([PumpFirmware(1, serial_number="A"), PumpFirmware(2, serial_number="B")])
    bus.feed(req(1, 0, "WDOG 500") + req(1, 1, "RUN"), 0.0)
    bus.feed(req(2, 2, "STATUS"), 0.4)  # for pump 2: does not feed pump 1
    bus.feed(req(1, 3, "STATUS"), 0.6)  # arrives too late
    assert bus.pump(1).alarms == {"WATCHDOG"} and not bus.pump(1).running


def test_idle_pump_does_not_latch_watchdog(pump: PumpFirmware) -> None:
    ask(pump, "WDOG 100", 0.0)
    pump.advance(10.0, 10.0)
    assert status(pump, 10.0)["alarms"] == "-"


@pytest.mark.parametrize("name", ["STALL", "COVER", "OVERCURRENT"])
def test_persisting_alarm_refuses_clear(pump: PumpFirmware, name: str) -> None:
    ask(pump, "DISPENSE 500 800")
    pump.advance(1.0, 1.0)
    pump.inject_alarm(name, persist=True)
    assert not pump.running and pump.remaining_ul == 0.0
    assert pump.advance(1.0, 2.0) == 0.0
    assert status(pump)["alarms"] == name
    assert ask(pump, "RUN")[:2] == ["ERR", "ALARM"]
    assert ask(pump, "DISPENSE 10 800")[:2] == ["ERR", "ALARM"]
    assert ask(pump, "CLEAR")[:2] == ["ERR", "ALARM"]
    pump.clear_cause(name)
    assert status(pump)["state"] == "ALARM"  # latched until CLEAR
    assert ask(pump, "CLEAR") == ["OK"]
    assert status(pump)["state"] == "STOP"
    assert ask(pump, "RUN") == ["OK"]


def test_transient_alarm_clears_at_once(pump: PumpFirmware) -> None:
    pump.inject_alarm("STALL", persist=False)
    pump.inject_alarm("COVER", persist=False)
    assert status(pump)["alarms"] == "STALL,COVER"
    assert ask(pump, "CLEAR") == ["OK"]
    assert not pump.alarms


def test_bus_splits_lines_skips_garbage_and_routes() -> None:
    pumps = [PumpFirmware(a, serial_number=f"S{a}") for a in (1, 2, 5)]
    bus = PumpBusFirmware(pumps)
    stream = b"\x00\xffnoise\r\n" + req(2, 9, "ID") + b"junk@" + req(5, 10, "ID")
    stream += req(7, 11, "ID") + req(1, 12, "STATUS")
    out = b""
    for i in range(0, len(stream), 5):  # split frames across feeds
        out += bus.feed(stream[i : i + 5], 0.0)
    lines = out.split(b"\r\n")
    assert lines[-1] == b""
    bodies = [decode_frame(line) for line in lines[:-1]]
    assert bodies[0] == "!2:9 OK CSP-100 1.4.2 S2"
    assert bodies[1].startswith("!1:12 OK STOP")  # the 'junk@' line and address 7: no reply
    assert len(bodies) == 2


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["RUN", "STOP", "SPEED 50", "DISPENSE 30 400", "STALL", "CLEAR"]),
            st.floats(0.0, 3.0),
        ),
        max_size=30,
    )
)
def test_dispensed_never_decreases(steps: list[tuple[str, float]]) -> None:
    pump = PumpFirmware(1, serial_number="P")
    now, last = 0.0, 0.0
    for action, dt in steps:
        if action == "STALL":
            pump.inject_alarm("STALL", persist=False)
        else:
            pump.handle_line(req(1, 0, action), now)
        now += dt
        assert pump.advance(dt, now) >= 0.0
        assert pump.dispensed_ul >= last
        assert pump.remaining_ul >= 0.0
        last = pump.dispensed_ul
