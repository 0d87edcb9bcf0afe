"""The service configuration: every bad key gets one line naming it, and exit 78."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shuttled.service.config_file import ConfigError, load_config

BIN = Path(sys.executable).parent

GOOD = """\
instrument_id = "CS-0001"
data_dir = "/var/lib/shuttled"

[bioreactors.main]
endpoint = "opc.tcp://10.0.0.5:4840"
namespace_uri = "urn:vendor:bioreactor"

[buses.pumps1]
port = "/dev/ttyUSB0"
kind = "pumps"

[buses.probes1]
port = "/dev/ttyUSB1"
kind = "modbus"

[[units]]
id = "U01"
bioreactor = "main"
node = "Vessel1"
[units.pumps.media]
bus = "pumps1"
address = 1
ul_per_rev = 80.0
direction = "in"
[units.pumps.harvest]
bus = "pumps1"
address = 2
ul_per_rev = 250.0
direction = "out"
[units.probe]
bus = "probes1"
device_id = 1
[units.limits]
temperature_max = 39.0
max_volume_ml = 900
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shuttled.toml"
    path.write_text(text)
    return path


def test_a_good_file_becomes_the_daemon_configuration(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, GOOD))
    unit = config.units[0]
    assert config.instrument_id == "CS-0001"
    assert (
        unit.bioreactor.endpoint == "opc.tcp://10.0.0.5:4840" and unit.bioreactor.node == "Vessel1"
    )
    assert unit.pumps["media"].port == "/dev/ttyUSB0" and unit.pumps["media"].into_vessel
    assert not unit.pumps["harvest"].into_vessel
    assert unit.probe.port == "/dev/ttyUSB1"
    assert unit.probe.poll_period_s == 30.0  # density changes over hours: not every tick
    assert unit.limits.max_volume_ml == 900 and unit.limits.temperature_max == 39.0
    assert config.operator.allow_insecure is False  # secure unless said otherwise


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("max_volume_ml = 900", "max_volum_ml = 900"),
            "units[0].limits.max_volum_ml: unknown key",
        ),
        (('instrument_id = "CS-0001"\n', ""), "instrument_id: required key is missing"),
        (("address = 1", "address = 40"), "units[0].pumps.media.address: Input should be less"),
        (("address = 2", "address = 1"), "address: 1 on bus 'pumps1' is already U01.media"),
        (('bioreactor = "main"', 'bioreactor = "other"'), "no [bioreactors.other] section"),
        (('bus = "probes1"', 'bus = "pumps1"'), "bus 'pumps1' is a pumps bus, not modbus"),
        (
            ('direction = "in"', 'direction = "up"'),
            "units[0].pumps.media.direction: Input should be",
        ),
        (("temperature_max = 39.0", "temperature_max = 3.0"), "temperature_max: Input should be"),
        (
            ("ul_per_rev = 80.0", 'ul_per_rev = "eighty"'),
            "ul_per_rev: Input should be a valid number",
        ),
        (
            ('endpoint = "opc.tcp', 'endpoint = "http'),
            "bioreactors.main.endpoint: String should match",
        ),
        (("[buses.probes1]", "[buses.probes1"), "TOML syntax error"),
        (
            ("device_id = 1\n", "device_id = 1\npoll_period_s = 0\n"),
            "units[0].probe.poll_period_s: Input should be greater than 0",
        ),
    ],
)
def test_a_bad_file_gets_one_line_naming_the_key(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError) as raised:
        load_config(_write(tmp_path, GOOD.replace(old, new, 1)))
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'shuttled.toml'}: ")
    assert expected in message
    assert "\n" not in message


def test_serve_exits_78_with_the_reason_and_no_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("max_volume_ml = 900", "max_volum_ml = 900"))
    result = subprocess.run(
        [str(BIN / "shuttled"), "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 78
    assert "units[0].limits.max_volum_ml: unknown key" in result.stderr
    assert "Traceback" not in result.stderr
