"""Loader: every malformed protocol is reported at the exact LINE:COL, all in one pass."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

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

HEADER = """\
shuttle_protocol: 1
name: test
version: 1.0.0
parameters:
  max_density: {default: 2.0e6, min: 5.0e5, max: 1.0e7, unit: cells/mL}
phases:
"""  # phases start on line 7

VALID = (
    HEADER
    + """\
  - name: grow
    temperature: 37.0
    duration: 24h
"""
)


def with_phases(phases: str) -> str:
    return HEADER + phases


def errors_of(text: str) -> list[str]:
    with pytest.raises(ProtocolInvalid) as info:
        load_protocol_text(text, "p.yaml")
    return [error.located for error in info.value.errors]


# (id, text, expected "LINE:COL: message" prefix)
MALFORMED: list[tuple[str, str, str]] = [
    ("yaml-syntax", "name: [unclosed\n", "2:1: YAML syntax error: expected ',' or ']'"),
    ("yaml-tab", "name: x\n\tversion: 1\n", "2:1: YAML syntax error"),
    (
        "yaml-duplicate-key",
        VALID.replace("version: 1.0.0\n", "version: 1.0.0\nversion: 1.0.1\n"),
        "4:1: YAML syntax error: found duplicate key",
    ),
    ("empty", "", "1:1: the protocol is empty"),
    (
        "not-a-mapping",
        "- a\n- b\n",
        "1:1: a protocol must be a mapping of keys to values, not a list",
    ),
    (
        "format-version",
        VALID.replace("shuttle_protocol: 1", "shuttle_protocol: 2"),
        "1:19: shuttle_protocol must be 1",
    ),
    (
        "format-version-bool",
        VALID.replace("shuttle_protocol: 1", "shuttle_protocol: true"),
        "1:19: shuttle_protocol must be 1 (the only format version this software reads), not true",
    ),
    ("missing-name", VALID.replace("name: test\n", ""), "1:1: missing required key 'name'"),
    ("missing-phases", VALID.split("phases:")[0], "1:1: missing required key 'phases'"),
    ("bad-name", VALID.replace("name: test", "name: Test_1"), "2:7: invalid name 'Test_1'"),
    (
        "name-number",
        VALID.replace("name: test", "name: 12"),
        "2:7: name must be text, not the number 12",
    ),
    (
        "version-not-semver",
        VALID.replace("version: 1.0.0", "version: 1.0"),
        "3:10: version must be a semantic version MAJOR.MINOR.PATCH such as '2.1.0', "
        "not the number 1.0",
    ),
    (
        "unknown-top-key",
        VALID.replace("name: test\n", "name: test\ndescripton: x\n"),
        "3:1: unknown key 'descripton'; did you mean 'description'?",
    ),
    (
        "unknown-key-no-hint",
        VALID.replace("name: test\n", "name: test\nzzz: x\n"),
        "3:1: unknown key 'zzz' (allowed: shuttle_protocol, name, version, description",
    ),
    ("empty-phases", HEADER.replace("phases:\n", "phases: []\n"), "6:9: phases must not be empty"),
    (
        "phases-not-list",
        HEADER.replace("phases:\n", "phases: grow\n"),
        "6:9: phases must be a list",
    ),
    (
        "phase-not-mapping",
        with_phases("  - grow\n"),
        "7:5: phase 1 must be a mapping of keys to values, not 'grow'",
    ),
    (
        "misspelled-phase-key",
        with_phases("  - name: grow\n    temperature: 37\n    durtion: 1h\n"),
        "9:5: unknown key 'durtion' in phase 'grow'; did you mean 'duration'?",
    ),
    (
        "missing-temperature",
        with_phases("  - name: grow\n    duration: 1h\n"),
        "7:5: missing required key 'temperature' in phase 'grow'",
    ),
    (
        "temperature-bool",
        with_phases("  - name: grow\n    temperature: yes\n    duration: 1h\n"),
        "8:18: temperature must be a number, not 'yes'",
    ),
    (
        "temperature-true",
        with_phases("  - name: grow\n    temperature: true\n    duration: 1h\n"),
        "8:18: temperature must be a number, not true",
    ),
    (
        "temperature-string",
        with_phases("  - name: grow\n    temperature: '37'\n    duration: 1h\n"),
        "8:18: temperature must be a number, not '37'",
    ),
    (
        "temperature-too-hot",
        with_phases("  - name: grow\n    temperature: 42.5\n    duration: 1h\n"),
        "8:18: temperature 42.5 °C is outside the allowed range 4.0 to 42.0 °C",
    ),
    (
        "temperature-too-cold",
        with_phases("  - name: grow\n    temperature: 3.9\n    duration: 1h\n"),
        "8:18: temperature 3.9 °C is outside the allowed range",
    ),
    (
        "temperature-nan",
        with_phases("  - name: grow\n    temperature: .nan\n    duration: 1h\n"),
        "8:18: temperature must be a finite number, not nan",
    ),
    (
        "duration-without-unit",
        with_phases("  - name: grow\n    temperature: 37\n    duration: 24\n"),
        "9:15: duration needs a unit: write e.g. '24h' or '24m', not 24",
    ),
    (
        "duration-bad-unit",
        with_phases("  - name: grow\n    temperature: 37\n    duration: 24y\n"),
        "9:15: duration: unknown duration unit 'y' in '24y': use s, m, h or d",
    ),
    (
        "duration-zero",
        with_phases("  - name: grow\n    temperature: 37\n    duration: 0h\n"),
        "9:15: duration must be positive, not '0h'",
    ),
    (
        "duplicate-phase",
        with_phases(
            "  - name: grow\n    temperature: 37\n    duration: 1h\n"
            "  - name: grow\n    temperature: 37\n    duration: 1h\n"
        ),
        "10:11: duplicate phase name 'grow' (already used at line 7)",
    ),
    (
        "until-without-timeout",
        with_phases("  - name: grow\n    temperature: 37\n    until: density > 1e6\n"),
        "9:5: until needs a timeout",
    ),
    (
        "timeout-without-until",
        with_phases("  - name: grow\n    temperature: 37\n    duration: 1h\n    timeout: 2h\n"),
        "10:5: timeout without until",
    ),
    (
        "on-timeout-without-until",
        with_phases(
            "  - name: grow\n    temperature: 37\n    duration: 1h\n    on_timeout: hold\n"
        ),
        "10:5: on_timeout without until",
    ),
    (
        "bad-on-timeout",
        with_phases(
            "  - name: grow\n    temperature: 37\n    until: density > 1e6\n"
            "    timeout: 2h\n    on_timeout: pause\n"
        ),
        "11:17: on_timeout must be one of hold, abort, continue, not 'pause'",
    ),
    (
        "until-syntax-plain",
        with_phases(
            "  - name: grow\n    temperature: 37\n    until: density >> 1e6\n    timeout: 2h\n"
        ),
        # 'until: ' value starts at col 12; offset 9 is the second '>'
        "9:21: until: expected a number, a name or '(', found '>'",
    ),
    (
        "until-syntax-double-quoted",
        with_phases(
            '  - name: grow\n    temperature: 37\n    until: "density >> 1e6"\n    timeout: 2h\n'
        ),
        "9:22: until: expected a number, a name or '(', found '>'",
    ),
    (
        "until-syntax-single-quoted",
        with_phases(
            "  - name: grow\n    temperature: 37\n    until: 'density = 1e6'\n    timeout: 2h\n"
        ),
        "9:21: until: unexpected character '=' (use '==' to compare)",
    ),
    (
        "until-syntax-multiline",
        with_phases(
            "  - name: grow\n    temperature: 37\n    until: density > 1e6 and\n"
            "      volume_ml > = 2\n    timeout: 2h\n"
        ),
        "10:19: until: unexpected character '=' (use '==' to compare)",
    ),
    (
        "until-syntax-block",
        with_phases(
            "  - name: grow\n    temperature: 37\n    until: >\n      density > 1e6 and\n"
            "      volume_ml > = 2\n    timeout: 2h\n"
        ),
        "11:19: until: unexpected character '=' (use '==' to compare)",
    ),
    (
        "until-unknown-name",
        with_phases(
            "  - name: grow\n    temperature: 37\n    until: total_cells >= target_cells\n"
            "    timeout: 2h\n"
        ),
        "9:27: until: unknown name 'target_cells' (signals: temperature, density, volume_ml, "
        "total_cells, growth_rate, doubling_time_h, phase_time_h, run_time_h; "
        "parameters: max_density)",
    ),
    (
        "until-not-boolean",
        with_phases(
            "  - name: grow\n    temperature: 37\n    until: density * 2\n    timeout: 2h\n"
        ),
        "9:12: until: the condition must be true or false",
    ),
    (
        "until-number",
        with_phases("  - name: grow\n    temperature: 37\n    until: 5\n    timeout: 2h\n"),
        "9:12: until must be a condition such as 'density >= 2e6', not the number 5",
    ),
    (
        "never-ends",
        with_phases("  - name: grow\n    temperature: 37\n"),
        "7:5: phase 'grow' could never end",
    ),
    (
        "unknown-step-kind",
        with_phases(
            "  - name: feed\n    temperature: 37\n    steps:\n      - tranfer: {pump: media}\n"
        ),
        "10:9: unknown step kind 'tranfer'; did you mean 'transfer'?",
    ),
    (
        "step-not-mapping",
        with_phases("  - name: feed\n    temperature: 37\n    steps:\n      - mix\n"),
        "10:9: a step must be a mapping such as 'transfer: {...}', not 'mix'",
    ),
    (
        "transfer-negative-volume",
        with_phases(
            "  - name: feed\n    temperature: 37\n    steps:\n"
            "      - transfer: {pump: media, volume_ml: -5, rate_ml_min: 10}\n"
        ),
        "10:44: volume_ml must be positive, not -5",
    ),
    (
        "transfer-zero-rate",
        with_phases(
            "  - name: feed\n    temperature: 37\n    steps:\n"
            "      - transfer: {pump: media, volume_ml: 5, rate_ml_min: 0}\n"
        ),
        "10:60: rate_ml_min must be positive, not 0",
    ),
    (
        "transfer-volume-not-all",
        with_phases(
            "  - name: feed\n    temperature: 37\n    steps:\n"
            "      - transfer: {pump: media, volume: most, rate_ml_min: 10}\n"
        ),
        "10:41: volume must be 'all' (use volume_ml for a number of mL), not 'most'",
    ),
    (
        "transfer-missing-volume",
        with_phases(
            "  - name: feed\n    temperature: 37\n    steps:\n"
            "      - transfer: {pump: media, rate_ml_min: 10}\n"
        ),
        "10:19: transfer needs volume_ml (a number of mL) or 'volume: all'",
    ),
    (
        "transfer-missing-pump",
        with_phases(
            "  - name: feed\n    temperature: 37\n    steps:\n"
            "      - transfer: {volume_ml: 5, rate_ml_min: 10}\n"
        ),
        "10:19: missing required key 'pump' in transfer",
    ),
    (
        "density-unknown-parameter",
        with_phases(
            "  - name: grow\n    temperature: 37\n    duration: 1h\n    density_control:\n"
            "      pump: media\n      max_density: max_dens\n      max_volume_ml: 800\n"
        ),
        "12:20: max_density 'max_dens' is not a declared parameter (parameters: max_density); "
        "did you mean 'max_density'?",
    ),
    (
        "density-missing-key",
        with_phases(
            "  - name: grow\n    temperature: 37\n    duration: 1h\n    density_control:\n"
            "      pump: media\n      max_density: 2e6\n"
        ),
        "11:7: missing required key 'max_volume_ml' in density_control",
    ),
    (
        "parameter-default-outside",
        VALID.replace("default: 2.0e6", "default: 2.0e7"),
        "5:26: default 2e+07 of parameter 'max_density' is outside [min, max] = [500000, 1e+07]",
    ),
    (
        "parameter-min-above-max",
        VALID.replace("min: 5.0e5", "min: 5.0e7"),
        "5:38: min 5e+07 is greater than max 1e+07 in parameter 'max_density'",
    ),
    (
        "parameter-bool",
        VALID.replace("max: 1.0e7", "max: false"),
        "5:50: max must be a number, not false",
    ),
    (
        "parameter-bad-name",
        VALID.replace("  max_density:", "  Max-Density:"),
        "5:3: invalid parameter name 'Max-Density'",
    ),
    (
        "parameter-is-signal",
        VALID.replace("  max_density:", "  density:"),
        "5:3: parameter name 'density' is a signal of the condition language",
    ),
    (
        "parameter-missing-default",
        VALID.replace("default: 2.0e6, ", ""),
        "5:16: missing required key 'default' in parameter 'max_density'",
    ),
]


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
