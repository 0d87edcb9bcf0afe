"""Loader: every malformed protocol is reported at the exact LINE:COL, all in one pass."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from malformed_protocols import MALFORMED, VALID, with_phases

from protocols import (
    LIBRARY_DIR,
    Protocol,
    ProtocolError,
    ProtocolInvalid,
    Transfer,
    load_protocol_file,
    load_protocol_text,
    validate_files,
)


def errors_of(text: str) -> list[str]:
    with pytest.raises(ProtocolInvalid) as info:
        load_protocol_text(text, "p.yaml")
    return [error.located for error in info.value.errors]


@pytest.mark.parametrize(
    ("text", "expected"),
    [pytest.param(text, expected, id=case_id) for case_id, text, expected in MALFORMED],
)
def test_malformed(text: str, expected: str) -> None:
    found = errors_of(text)
    assert any(error.startswith(expected) for error in found), "\n".join(found)


def test_table_is_large_enough() -> None:
    assert len(MALFORMED) >= 25


def test_every_problem_in_one_pass() -> None:
    text = with_phases(
        "  - name: grow\n"  # 7
        "    temperature: 50\n"  # 8
        "    durtion: 1h\n"  # 9
        "  - name: grow\n"  # 10
        "    temperature: 37\n"  # 11
        "    until: x > 1\n"  # 12
    ).replace("version: 1.0.0", "version: one")
    found = errors_of(text)
    assert found == [
        "3:10: version must be a semantic version MAJOR.MINOR.PATCH such as '2.1.0', not 'one'",
        "7:5: phase 'grow' could never end: give it a duration, an until condition "
        "(with a timeout) or steps",
        "8:18: temperature 50 °C is outside the allowed range 4.0 to 42.0 °C",
        "9:5: unknown key 'durtion' in phase 'grow'; did you mean 'duration'?",
        "10:11: duplicate phase name 'grow' (already used at line 7)",
        "12:5: until needs a timeout (and on_timeout) for when the condition never holds",
        "12:12: until: unknown name 'x' (signals: temperature, density, volume_ml, total_cells, "
        "growth_rate, doubling_time_h, phase_time_h, run_time_h; parameters: max_density)",
    ]


def test_error_format() -> None:
    error = ProtocolError("a.yaml", 3, 7, "bad")
    assert str(error) == "a.yaml:3:7: bad"
    assert error.located == "3:7: bad"
    with pytest.raises(ProtocolInvalid) as info:
        load_protocol_text("name: [", "x.yaml")
    assert re.fullmatch(r"x\.yaml:\d+:\d+: YAML syntax error: .*", str(info.value))


def test_valid_protocol_and_spec_example() -> None:
    spec_example = """\
shuttle_protocol: 1            # format version, required
name: car-t-expansion          # [a-z0-9][a-z0-9-]*
version: 2.1.0                 # semantic version
description: Activation, transduction and expansion of autologous T cells
parameters:                    # operator-overridable at start, typed and bounded
  target_cells: {default: 1.0e9, min: 1.0e8, max: 1.0e10, unit: cells}
  max_density:  {default: 2.0e6, min: 5.0e5, max: 1.0e7, unit: cells/mL}
phases:
  - name: activation           # unique within the protocol
    temperature: 37.0          # °C setpoint; every phase has one (life support)
    duration: 24h
  - name: transduction
    temperature: 37.0
    steps:                     # done in order when the phase starts
      - transfer: {pump: vector, volume_ml: 10, rate_ml_min: 5}
    duration: 24h
  - name: expansion
    temperature: 37.0
    density_control:           # regulate cell density by diluting with fresh medium
      pump: media
      max_density: max_density # a number or a parameter name
      max_volume_ml: 800
    until: total_cells >= target_cells
    timeout: 10d
    on_timeout: hold           # hold | abort | continue
  - name: harvest
    temperature: 37.0
    steps:
      - transfer: {pump: harvest, volume: all, rate_ml_min: 50}
"""
    protocol = load_protocol_text(spec_example)
    assert [phase.name for phase in protocol.phases] == [
        "activation",
        "transduction",
        "expansion",
        "harvest",
    ]
    expansion = protocol.phase("expansion")
    assert expansion.timeout_s == 10 * 86400
    assert expansion.until_text == "total_cells >= target_cells"
    assert expansion.density_control is not None
    assert expansion.density_control.max_density == "max_density"
    assert protocol.phases[3].steps == (Transfer("harvest", None, 50.0),)
    assert protocol.phases[3].ends_by_steps
    assert protocol.phase_max_density(expansion, protocol.resolve_parameters()) == 2.0e6
    assert protocol.phase_max_density(protocol.phases[0], {}) is None
    assert protocol.parameters["target_cells"].unit == "cells"


def test_demo_loads() -> None:
    protocol = load_protocol_file(LIBRARY_DIR / "demo.yaml")
    assert isinstance(protocol, Protocol)
    assert protocol.name == "demo"
    assert all(4.0 <= phase.temperature <= 42.0 for phase in protocol.phases)
    assert any(phase.until is not None for phase in protocol.phases)
    assert any(phase.steps for phase in protocol.phases)
    assert len({phase.temperature for phase in protocol.phases}) > 1
    worst_case_s = sum(
        phase.duration_s or phase.timeout_s or 0.0 for phase in protocol.phases
    ) + sum(
        (step.volume_ml or 200.0) / step.rate_ml_min * 60
        for phase in protocol.phases
        if phase.duration_s is None
        for step in phase.steps
    )
    assert worst_case_s <= 3 * 3600


def test_identity_is_name_version_and_file_hash(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(VALID.replace("\n", "\r\n").encode("utf-8"))
    protocol = load_protocol_file(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert protocol.sha256 == digest
    assert protocol.identity == f"test@1.0.0#{digest[:12]}"
    assert re.fullmatch(r"test@1\.0\.0#[0-9a-f]{12}", protocol.identity)
    assert load_protocol_text(VALID).identity != protocol.identity  # different bytes


def test_validate_files(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(VALID, encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID.replace("temperature: 37.0", "temperature: 99"), encoding="utf-8")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("description: caf\xe9\n".encode("latin-1"))
    missing = tmp_path / "missing.yaml"
    errors = validate_files([good, bad, latin, missing, tmp_path])
    lines = [str(error) for error in errors]
    assert lines == [
        f"{bad}:8:18: temperature 99 °C is outside the allowed range 4.0 to 42.0 °C",
        f"{latin}:1:1: not UTF-8 text (invalid byte 0xe9 at byte 16)",
        f"{missing}:1:1: file not found",
        f"{tmp_path}:1:1: is a directory, not a protocol file",
    ]
    assert validate_files([good]) == []


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object/apply:os.system ['echo hi']\n",
        "a: &a [*a]\n",
        "<<: {name: x}\n",
        "? [a, b]\n: c\n",
        "phases: [{name: a, temperature: 37, <<: {duration: 1h}}]\n",
        "\x00",
        "[" * 2000,
        "name: \udcff\n",
        "---\na: 1\n---\nb: 2\n",
    ],
)
def test_hostile_input_gives_protocol_invalid(text: str) -> None:
    with pytest.raises(ProtocolInvalid) as info:
        load_protocol_text(text)
    assert info.value.errors
    assert all(error.line >= 1 and error.col >= 1 for error in info.value.errors)
