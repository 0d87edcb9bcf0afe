"""Fault files (SPEC §1): every fault of the example parses; bad files get located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators.faults import (
    FAULT_KINDS,
    Fault,
    FaultFileInvalid,
    FaultSchedule,
    load_fault_file,
    load_fault_text,
)

SPEC_EXAMPLE = """\
- {at: 2h, fault: opcua_down, duration: 5m}                    # bioreactor controller unreachable
- {at: 3h, fault: serial_cut, bus: pumps, duration: 2m}        # bus: pumps | probes
- {at: 4h, fault: garbage, bus: probes, rate: 0.01, duration: 1h}  # share of frames corrupted
- {at: 5h, fault: sensor_stuck, unit: U01, duration: 30m}      # also sensor_nan, sensor_spike
- {at: 6h, fault: pump_stall, unit: U02, pump: media}          # also cover_open; until CLEAR
- {at: 7h, fault: heater_fail, unit: U03, duration: 1h}        # heater output has no effect
- {at: 8h, fault: cold_bolus, unit: U01, volume_ml: 50, temperature: 4.0}
- {at: 9h, fault: ambient_step, temperature: 30.0}
"""


def test_the_spec_example_parses_with_simulated_times() -> None:
    faults = load_fault_text(SPEC_EXAMPLE, "f.yaml", unit_ids=["U01", "U02", "U03"])
    assert [f.kind for f in faults] == [
        "opcua_down", "serial_cut", "garbage", "sensor_stuck",
        "pump_stall", "heater_fail", "cold_bolus", "ambient_step",
    ]  # fmt: skip
    assert faults[0] == Fault("opcua_down", at_s=7200.0, duration_s=300.0, line=1)
    assert faults[2].rate == 0.01 and faults[2].bus == "probes"
    assert faults[4].duration_s is None and faults[4].pump == "media"
    assert faults[6].volume_ml == 50.0 and faults[6].temperature == 4.0
    assert [f.line for f in faults] == list(range(1, 9))


def test_the_remaining_kinds_parse_too() -> None:
    text = (
        "- {at: 1m, fault: sensor_nan, unit: U01, duration: 1m, sensor: probe}\n"
        "- {at: 1m, fault: sensor_spike, unit: U01, duration: 30s}\n"
        "- {at: 1m, fault: cover_open, unit: U01, pump: harvest, duration: 10m}\n"
        "- {at: 1m, fault: cartridge_swap, unit: U01, cartridge: CRT-0099}\n"
    )
    kinds = {f.kind for f in load_fault_text(text)} | {
        f.kind for f in load_fault_text(SPEC_EXAMPLE)
    }
    assert kinds == set(FAULT_KINDS)


def test_every_problem_is_reported_at_its_line_and_column(tmp_path: Path) -> None:
    rows = [
        "- {at: 2h, fault: opcua_dwn, duration: 5m}",
        "- {at: 3, fault: serial_cut, bus: pumps, duration: 2m}",
        "- {at: 4h, fault: garbage, bus: modem, rate: 2, duration: 1h}",
        "- {at: 5h, fault: sensor_stuck, unit: U07, duration: 30m, colour: red}",
        "- {at: 6h, fault: heater_fail, unit: U01}",
        "- {at: 7h, fault: cold_bolus, unit: U01, volume_ml: fifty, temperature: 4.0}",
    ]
    path = tmp_path / "bad.yaml"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(FaultFileInvalid) as caught:
        load_fault_file(path, unit_ids=["U01", "U02"])
    lines = str(caught.value).splitlines()
    expected = [  # (row, the text the column points at, part of the message)
        (1, "opcua_dwn", "unknown fault 'opcua_dwn'"),
        (2, "3,", "at: "),
        (3, "modem", "unknown bus 'modem'"),
        (3, "2,", "rate"),
        (4, "U07", "unknown unit 'U07'"),
        (4, "colour", "unknown key 'colour'"),
        (5, "{", "heater_fail needs 'duration'"),
        (6, "fifty", "volume_ml must be a number"),
    ]
    assert len(lines) == len(expected), lines
    for line, (row, token, text) in zip(lines, expected, strict=True):
        col = rows[row - 1].index(token) + 1
        assert line.startswith(f"{path}:{row}:{col}: "), (line, col)
        assert text in line and "Traceback" not in line, line


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("- {at: 2h, fault: opcua_down, duration: 5m\n", ":2:1: ", "YAML syntax error"),
        ("at: 2h\n", ":1:1: ", "a list of faults"),
        ("- opcua_down\n", ":1:3: ", "mapping"),
        ("- {at: 2h, duration: 5m}\n", ":1:3: ", "missing key 'fault'"),
        ("- {at: 2h, fault: opcua_down, duration: 0s}\n", ":1:41: ", "positive"),
    ],
)
def test_malformed_files_never_raise_anything_but_located_errors(
    text: str, where: str, message: str
) -> None:
    with pytest.raises(FaultFileInvalid) as caught:
        load_fault_text(text, "f.yaml")
    assert str(caught.value).startswith("f.yaml" + where), str(caught.value)
    assert message in str(caught.value)


def test_an_unreadable_file_is_a_located_error_too(tmp_path: Path) -> None:
    with pytest.raises(FaultFileInvalid, match=r"missing.yaml:1:1: cannot read"):
        load_fault_file(tmp_path / "missing.yaml")


def test_an_empty_file_has_no_faults() -> None:
    assert load_fault_text("") == []


def test_the_schedule_orders_starts_and_ends_by_time_then_by_file_order() -> None:
    a = Fault("heater_fail", at_s=100.0, duration_s=50.0, unit="U01")
    b = Fault("cold_bolus", at_s=100.0, unit="U01", volume_ml=10.0, temperature=4.0)
    c = Fault("ambient_step", at_s=120.0, temperature=30.0)
    schedule = FaultSchedule.of([a, b])
    schedule.add(c)
    assert schedule.next_time() == 100.0
    assert schedule.pop_due(99.0) == []
    due = schedule.pop_due(130.0)
    assert [(e.at_s, e.starting, e.fault.kind) for e in due] == [
        (100.0, True, "heater_fail"),
        (100.0, True, "cold_bolus"),
        (120.0, True, "ambient_step"),
    ]
    assert [(e.at_s, e.starting) for e in schedule.pop_due(1e9)] == [(150.0, False)]
    assert len(schedule) == 0 and schedule.next_time() is None
