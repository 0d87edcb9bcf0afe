"""The table of malformed protocols the loader must locate, one case per mistake a process
engineer can make; kept apart from the tests so each file stays readable."""

from __future__ import annotations

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
