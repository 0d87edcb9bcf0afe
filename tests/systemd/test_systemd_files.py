"""The files under systemd/ (SPEC §9): the unit verifies and is hardened to an exposure of 1.5 or
less, and the example configuration loads and documents every key of the schema."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from shuttled.service.config_file import ConfigFile, load_config

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"
EXAMPLE = SYSTEMD / "shuttled.toml.example"
MAX_EXPOSURE = 1.5


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: scripts/setup installs the systemd package"
    return tool


def _installed_unit(tmp_path: Path) -> Path:
    """The unit as installed, with ExecStart at this checkout's virtual environment."""
    text = (SYSTEMD / "shuttled.service").read_text()
    shuttled = Path(sys.executable).parent / "shuttled"
    unit = tmp_path / "shuttled.service"
    unit.write_text(text.replace("/opt/shuttled/venv/bin/shuttled", str(shuttled)))
    return unit


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    result = subprocess.run(
        [_analyze(), "verify", str(_installed_unit(tmp_path))], capture_output=True, text=True
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_exposure_is_at_most_1_5_with_serial_ports_reachable(tmp_path: Path) -> None:
    result = subprocess.run(
        [_analyze(), "security", "--offline=true", "--no-pager", str(_installed_unit(tmp_path))],
        capture_output=True, text=True,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    unit = (SYSTEMD / "shuttled.service").read_text()
    assert "DevicePolicy=closed" in unit and "PrivateDevices=" not in unit
    for tty in ("char-ttyS", "char-ttyUSB", "char-ttyACM"):
        assert f"DeviceAllow={tty} rw" in unit
    assert "Type=notify" in unit and "RestartPreventExitStatus=78" in unit
    assert "WatchdogSec=" in unit


def test_the_example_configuration_loads() -> None:
    config = load_config(EXAMPLE)  # device paths need not exist: they are opened at start
    assert [u.unit_id for u in config.units] == ["U01", "U02"]
    assert config.mqtt is not None and config.mqtt.prefix == "shuttle"


def _keys(model: type[BaseModel]) -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        for candidate in (field.annotation, *getattr(field.annotation, "__args__", ())):
            for inner in (candidate, *getattr(candidate, "__args__", ())):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    keys |= _keys(inner)
    return keys


def test_the_example_documents_every_key_with_a_comment() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for key in sorted(_keys(ConfigFile)):
        at = [
            i for i, line in enumerate(lines)
            if re.match(rf"^(# )?{key} = ", line) or re.match(rf"^\[+[\w.]*{key}[\].]", line)
        ]
        assert at, f"{key} is not in the example"
        first = at[0]
        assert lines[first - 1].startswith("#") or lines[first].startswith("# "), (
            f"{key} has no comment"
        )


def test_sysusers_tmpfiles_and_udev_rules_name_the_service_group() -> None:
    assert "u shuttled" in (SYSTEMD / "shuttled.sysusers").read_text()
    assert "/var/lib/shuttled" in (SYSTEMD / "shuttled.tmpfiles").read_text()
    rules = [
        line for line in (SYSTEMD / "60-shuttled.rules").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert rules and all('GROUP="shuttled"' in r and 'SUBSYSTEM=="tty"' in r for r in rules)
