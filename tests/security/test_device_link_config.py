"""The device link's security in the configuration file: encrypted unless "None" is written, and
every value that could not work refused at start-up with one line naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drivers.opcua_pki import ensure_certificate
from shuttled.service.config_file import ConfigError, load_config

BIN = Path(sys.executable).parent

CONFIG = """\
instrument_id = "CS-0001"
data_dir = "{data_dir}"

[bioreactors.main]
endpoint = "opc.tcp://10.0.0.5:4840"
namespace_uri = "urn:vendor:bioreactor"
{security}
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
[units.probe]
bus = "probes1"
device_id = 1
"""


def _write(tmp_path: Path, security: str) -> Path:
    path = tmp_path / "shuttled.toml"
    path.write_text(CONFIG.format(data_dir=tmp_path / "data", security=security))
    return path


def test_without_security_keys_the_link_is_encrypted_with_a_certificate_made_on_first_start(
    tmp_path: Path,
) -> None:
    bioreactor = load_config(_write(tmp_path, "")).units[0].bioreactor
    assert bioreactor.security_policy == "Basic256Sha256"
    assert bioreactor.security_mode == "SignAndEncrypt"
    assert bioreactor.certificate is None and bioreactor.server_certificate is None


def test_none_and_plant_certificates_are_accepted_when_written(tmp_path: Path) -> None:
    insecure = load_config(_write(tmp_path, 'security_policy = "None"')).units[0].bioreactor
    assert insecure.security_policy == "None"
    own = ensure_certificate(tmp_path / "plant", "urn:plant:cs-0001", "cs-0001", server=False)
    plant = load_config(_write(tmp_path, (
        f'security_policy = "Aes256_Sha256_RsaPss"\ncertificate = "{own.certificate}"\n'
        f'private_key = "{own.private_key}"\nserver_certificate = "{own.certificate}"'
    ))).units[0].bioreactor  # fmt: skip
    assert plant.security_policy == "Aes256_Sha256_RsaPss"
    assert (plant.certificate, plant.private_key) == (own.certificate, own.private_key)


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        (
            'security_policy = "Basic128Rsa15"',
            "bioreactors.main.security_policy: Input should be 'Basic256Sha256', "
            "'Aes256_Sha256_RsaPss', 'Aes128_Sha256_RsaOaep', 'None'",
        ),
        ('security_policy = "none"', "bioreactors.main.security_policy: Input should be"),
        (
            'security_mode = "Encrypt"',
            "bioreactors.main.security_mode: Input should be 'Sign' or 'SignAndEncrypt'",
        ),
        (
            'certificate = "{cert}"',
            "bioreactors.main: certificate and private_key go together",
        ),
        (
            'certificate = "{missing}"\nprivate_key = "{key}"',
            "bioreactors.main.certificate: no such file: {missing}",
        ),
        (
            'certificate = "{key}"\nprivate_key = "{key}"',
            "bioreactors.main.certificate: {key} is not a certificate (DER or PEM)",
        ),
        (
            'server_certificate = "{key}"',
            "bioreactors.main.server_certificate: {key} is not a certificate (DER or PEM)",
        ),
        (
            'security_policy = "None"\nserver_certificate = "{cert}"',
            'bioreactors.main: security_policy "None" uses no certificates: remove '
            "server_certificate, or choose a security policy",
        ),
    ],
)
def test_a_security_value_that_cannot_work_gets_one_line_naming_the_key(
    tmp_path: Path, security: str, expected: str
) -> None:
    own = ensure_certificate(tmp_path / "own", "urn:test", "test", server=False)
    paths = {"cert": own.certificate, "key": own.private_key, "missing": tmp_path / "nope.der"}
    with pytest.raises(ConfigError) as raised:
        load_config(_write(tmp_path, security.format(**paths)))
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'shuttled.toml'}: ")
    assert expected.format(**paths) in message
    assert "\n" not in message


def test_serve_exits_78_on_an_unknown_policy_without_a_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, 'security_policy = "Basic256"')
    result = subprocess.run([str(BIN / "shuttled"), "serve", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78
    assert "bioreactors.main.security_policy: Input should be" in result.stderr
    assert "Traceback" not in result.stderr
