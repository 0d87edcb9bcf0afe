"""The service configuration: every bad key gets one line naming it, and exit 78."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from drivers.serial_line import PROBE_LINE, PUMP_LINE, SerialLine
from shuttled.devices import Devices
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


def _pump_bus_with(keys: str) -> tuple[str, str]:
    """A change to the GOOD file that adds `keys` to its pump bus."""
    return 'kind = "pumps"', f'kind = "pumps"\n{keys}'


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
        # Line settings of a bus (SPEC §7, §8): the key, the value and what would be right.
        (_pump_bus_with("baud = 12345"), "buses.pumps1.baud: baud 12345 is not a standard rate: "
                                         "one of 1200, 2400, 4800, 9600, 19200"),
        (_pump_bus_with('baud = "9600"'), "buses.pumps1.baud: Input should be a valid integer"),
        (_pump_bus_with("baud = 9600.0"), "buses.pumps1.baud: Input should be a valid integer"),
        (_pump_bus_with('framing = "9N1"'), "buses.pumps1.framing: framing '9N1': data bits 9, "
                                            "not 7 or 8"),
        (_pump_bus_with('framing = "8X1"'), "framing: framing '8X1': parity X, not N, E or O"),
        (_pump_bus_with('framing = "8N3"'), "framing: framing '8N3': stop bits 3, not 1 or 2"),
        (_pump_bus_with('framing = "8N1.5"'), "framing: framing '8N1.5': stop bits 1.5, not 1"),
        (_pump_bus_with('framing = "N81"'), "buses.pumps1.framing: framing 'N81': data bits 7 or "
                                            "8, parity N, E or O, stop bits 1 or 2, written"),
        (_pump_bus_with("framing = 8"), "buses.pumps1.framing: Input should be a valid string"),
        (_pump_bus_with('parity = "E"'), "buses.pumps1.parity: unknown key"),
        (
            ('kind = "modbus"', 'kind = "modbus"\nframing = "7E1"'),
            "buses.probes1.framing: framing '7E1': Modbus RTU moves 8-bit bytes",
        ),
        (
            _pump_bus_with('baud = 1200\nframing = "8E1"'),
            "buses.pumps1.baud: at 1200 8E1 a pumps bus's longest exchange takes 1.01 s on the "
            "wire, not less than device_timeout_s (1 s)",
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


def test_each_bus_opens_at_its_kinds_line_settings_unless_it_names_its_own(
    tmp_path: Path,
) -> None:
    unit = load_config(_write(tmp_path, GOOD)).units[0]
    assert unit.pumps["media"].line == PUMP_LINE == SerialLine(115200, 8, "N", 1)  # SPEC §7
    assert unit.probe.line == PROBE_LINE == SerialLine(19200, 8, "N", 2)  # SPEC §8
    plant = GOOD.replace('kind = "pumps"', 'kind = "pumps"\nbaud = 9600\nframing = "7e1"').replace(
        'kind = "modbus"', 'kind = "modbus"\nbaud = 38400\nframing = "8O1"'
    )
    unit = load_config(_write(tmp_path, plant)).units[0]
    assert {p.line for p in unit.pumps.values()} == {SerialLine(9600, 7, "E", 1)}
    assert unit.probe.line == SerialLine(38400, 8, "O", 1)


async def test_a_modbus_bus_at_8n1_is_accepted_with_a_warning_at_every_start(
    tmp_path: Path,
) -> None:
    """Many Modbus devices ship at 8N1 although RTU specifies 8N2: allowed, and said."""
    text = GOOD.replace('kind = "modbus"', 'kind = "modbus"\nframing = "8N1"')
    config = load_config(_write(tmp_path, text))
    assert config.units[0].probe.line == SerialLine(19200, 8, "N", 1)
    with capture_logs() as logs:
        devices = Devices(config)  # builds the drivers; nothing is opened yet
    await devices.close()
    [warning] = [entry for entry in logs if entry["log_level"] == "warning"]
    assert warning["event"] == "probe bus framing is not Modbus RTU's"
    assert warning["port"] == "/dev/ttyUSB1" and "(8N2)" in warning["reason"]


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
