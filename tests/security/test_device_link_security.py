"""The encrypted link between the bioreactor driver and the (simulated) controller, over loopback
TCP: SignAndEncrypt by default, both sides' trust lists, and the administrator's copy that admits
an unknown peer."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from asyncua import Client, ua
from asyncua.crypto.cert_gen import generate_private_key
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from drivers.bioreactor_opcua import OpcUaBioreactor, OpcUaSecurity
from drivers.bioreactor_security import ControllerNotTrusted, ControllerRefusedUs
from drivers.interfaces import DeviceError
from drivers.opcua_pki import copy_into
from simulators.opcua_bioreactor import (
    NAMESPACE_URI,
    ControllerArrays,
    SimulatedBioreactorServer,
)

UNITS = ["U01", "U02"]


def _server(pki: Path, allow_insecure: bool = False, port: int = 0) -> SimulatedBioreactorServer:
    arrays = ControllerArrays(
        measured_temperature=np.array([36.5, 37.25]), volume_ml=np.full(2, 100.0),
        heater_pct=np.zeros(2), stirrer_rpm=np.full(2, 60.0), available=[True, True],
    )
    return SimulatedBioreactorServer(UNITS, arrays, port, pki_dir=pki,
                                     allow_insecure=allow_insecure)


@pytest.fixture
async def controller(tmp_path: Path):
    server = _server(tmp_path / "controller")
    await server.start()
    yield server
    await server.stop()


def _driver(server: SimulatedBioreactorServer, security: OpcUaSecurity) -> OpcUaBioreactor:
    return OpcUaBioreactor(server.endpoint, NAMESPACE_URI, {u: u for u in UNITS}, timeout_s=5.0,
                           security=security, backoff_initial_s=0.0)


@pytest.mark.parametrize("policy", ["Basic256Sha256", "Aes256_Sha256_RsaPss"])
async def test_the_driver_signs_and_encrypts_and_reads_and_writes(
    controller: SimulatedBioreactorServer, tmp_path: Path, policy: str
) -> None:
    driver = _driver(controller, controller.client_security(tmp_path / "client", policy))
    try:
        await driver.connect()
        assert driver._client is not None
        session = driver._client.security_policy
        assert session.URI.rsplit("#", 1)[1] == policy
        assert session.Mode == ua.MessageSecurityMode.SignAndEncrypt
        readings = await driver.read_units()
        assert readings["U02"].temperature == 37.25
        assert await driver.write_heaters({"U01": 42.0, "U02": 7.5}) == {"U01": True, "U02": True}
        assert list(controller.arrays.heater_pct) == [42.0, 7.5]
    finally:
        await driver.close()
    key = tmp_path / "client" / "own" / "key.pem"
    assert key.stat().st_mode & 0o777 == 0o600  # made on first start, for its owner only


async def test_an_unknown_controller_is_refused_kept_in_rejected_and_admitted_once_copied(
    controller: SimulatedBioreactorServer, tmp_path: Path
) -> None:
    pki = tmp_path / "client"
    security = OpcUaSecurity(pki_dir=str(pki))
    controller.trust_client(security.client_certificate().certificate)  # the controller's side
    driver = _driver(controller, security)
    with pytest.raises(ControllerNotTrusted) as refused:
        await driver.read_units()
    rejected = list((pki / "rejected").iterdir())
    assert len(rejected) == 1
    assert rejected[0].read_bytes() == controller.certificate.read_bytes()
    message = str(refused.value)
    assert "\n" not in message
    assert f"its certificate is in {rejected[0]}" in message
    assert f"copy it to {pki / 'trusted'}/ to trust it" in message
    # Nothing was sent under the untrusted certificate: no session was ever asked for.
    assert list(controller.trust_list.rejected_dir.iterdir()) == []

    shutil.copy(rejected[0], pki / "trusted")  # the administrator, after checking the thumbprint
    readings = await driver.read_units()
    assert readings["U01"].temperature == 36.5
    await driver.close()


async def test_a_controller_that_presents_another_certificate_is_refused(
    controller: SimulatedBioreactorServer, tmp_path: Path
) -> None:
    """A machine that takes over the controller's address (or a reinstalled controller) has
    another certificate: it is refused until an administrator trusts the new one."""
    security = controller.client_security(tmp_path / "client")
    driver = _driver(controller, security)
    await driver.read_units()
    await driver.close()
    await controller.stop()
    impostor = _server(tmp_path / "impostor", port=controller.port)
    impostor.trust_client(security.client_certificate().certificate)
    await impostor.start()
    try:
        with pytest.raises(ControllerNotTrusted, match="unknown certificate"):
            await driver.read_units()
        assert impostor.arrays.heater_pct[0] == 0.0
    finally:
        await impostor.stop()


async def test_the_controller_refuses_a_client_it_does_not_trust(
    controller: SimulatedBioreactorServer, tmp_path: Path
) -> None:
    pki = tmp_path / "client"
    security = OpcUaSecurity(pki_dir=str(pki))
    copy_into(controller.certificate, pki / "trusted")  # we trust it; it does not know us
    driver = _driver(controller, security)
    with pytest.raises(ControllerRefusedUs) as refused:
        await driver.read_units()
    own = pki / "own" / "cert.der"
    assert str(refused.value) == (
        f"bioreactor controller {controller.endpoint} refused the daemon's certificate "
        f"(BadCertificateUntrusted): add {own} to the controller's trusted certificates"
    )
    [kept] = controller.trust_list.rejected_dir.iterdir()
    assert kept.read_bytes() == own.read_bytes()
    assert controller.arrays.heater_pct[0] == 0.0

    shutil.copy(kept, controller.trust_list.trusted_dir)  # the controller's administrator
    assert (await driver.write_heaters({"U01": 5.0})) == {"U01": True}
    await driver.close()


async def test_the_controller_offers_only_encrypted_endpoints_unless_told_otherwise(
    controller: SimulatedBioreactorServer, tmp_path: Path
) -> None:
    offered = await Client(controller.endpoint).connect_and_get_server_endpoints()
    assert {(e.SecurityPolicyUri.rsplit("#", 1)[1], e.SecurityMode) for e in offered} == {
        ("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt),
        ("Aes256_Sha256_RsaPss", ua.MessageSecurityMode.SignAndEncrypt),
    }
    plain = _driver(controller, OpcUaSecurity("None"))
    with pytest.raises(DeviceError):
        await plain.read_units()  # a session over SecurityPolicy None is not served
    assert controller.arrays.heater_pct[0] == 0.0

    insecure = _server(tmp_path / "insecure", allow_insecure=True)
    await insecure.start()
    try:
        plain = _driver(insecure, OpcUaSecurity("None"))
        assert (await plain.read_units())["U01"].temperature == 36.5
        await plain.close()
    finally:
        await insecure.stop()


async def test_a_controller_without_the_configured_policy_is_named_with_what_it_offers(
    tmp_path: Path,
) -> None:
    insecure_only = _server(tmp_path / "controller", allow_insecure=True)
    await insecure_only.start()
    try:
        security = insecure_only.client_security(tmp_path / "client", "Aes128_Sha256_RsaOaep")
        with pytest.raises(DeviceError, match=(
            "offers no Aes128_Sha256_RsaOaep SignAndEncrypt endpoint "
            r"\(it offers: Aes256_Sha256_RsaPss SignAndEncrypt, Basic256Sha256 SignAndEncrypt, "
            r"None\)"
        )):  # fmt: skip
            await _driver(insecure_only, security).read_units()
    finally:
        await insecure_only.stop()


async def test_a_pinned_controller_certificate_needs_no_trust_list(
    controller: SimulatedBioreactorServer, tmp_path: Path
) -> None:
    trusted = controller.client_security(tmp_path / "made")
    pinned = OpcUaSecurity(certificate=trusted.client_certificate().certificate.as_posix(),
                           private_key=trusted.client_certificate().private_key.as_posix(),
                           server_certificate=str(controller.certificate))
    driver = _driver(controller, pinned)
    assert (await driver.read_units())["U01"].good
    await driver.close()


def test_security_settings_that_cannot_work_are_refused_when_the_driver_is_built() -> None:
    with pytest.raises(ValueError, match="unknown security policy 'Basic128Rsa15'"):
        OpcUaSecurity("Basic128Rsa15", pki_dir="/tmp/x")
    with pytest.raises(ValueError, match="unknown security mode 'None'"):
        OpcUaSecurity("Basic256Sha256", "None", pki_dir="/tmp/x")
    with pytest.raises(ValueError, match="certificate and private_key go together"):
        OpcUaSecurity(certificate="c.der", pki_dir="/tmp/x")
    with pytest.raises(ValueError, match="needs a certificate and private key, or a pki"):
        OpcUaSecurity(server_certificate="s.der")
    with pytest.raises(ValueError, match="needs a trust list"):
        OpcUaSecurity(certificate="c.der", private_key="k.pem")
    assert OpcUaSecurity("None").insecure


async def test_a_pki_directory_that_cannot_be_made_is_named_in_the_error(
    controller: SimulatedBioreactorServer, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    driver = _driver(controller, OpcUaSecurity(pki_dir=str(tmp_path / "a-file" / "pki")))
    with pytest.raises(DeviceError) as failed:
        await driver.connect()
    assert str(failed.value) == (
        f"bioreactor controller {controller.endpoint}: certificates: Not a directory: "
        f"{tmp_path / 'a-file' / 'pki' / 'own'}"
    )


def _expired_certificate(path: Path) -> Path:
    key = generate_private_key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "old controller")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=400)).not_valid_after(now - timedelta(days=35))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(Encoding.DER))
    return path


async def test_an_expired_controller_certificate_is_refused_with_its_dates(
    controller: SimulatedBioreactorServer, tmp_path: Path
) -> None:
    made = controller.client_security(tmp_path / "client")
    own = made.client_certificate()
    expired = _expired_certificate(tmp_path / "old.der")
    pinned = OpcUaSecurity(certificate=str(own.certificate), private_key=str(own.private_key),
                           server_certificate=str(expired))
    with pytest.raises(DeviceError, match=(
        r"its certificate is valid from \d{4}-\d\d-\d\d \d\d:\d\d to .* UTC, not now: the "
        "controller needs a new certificate, trusted anew"
    )):  # fmt: skip
        await _driver(controller, pinned).read_units()
