"""Transport security of the operator server: endpoints, the own certificate, the trust list."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyAes256Sha256RsaPss
from asyncua.ua.uaerrors import UaError
from operator_rig import ACCOUNTS, connect, make_daemon, unit_node

from shuttled.operator_server.pki import ensure_certificate

NONE_URI = "http://opcfoundation.org/UA/SecurityPolicy#None"


async def test_without_allow_insecure_only_sign_and_encrypt_endpoints_exist(
    tmp_path: Path,
) -> None:
    daemon = await make_daemon(tmp_path, allow_insecure=False)
    try:
        endpoints = await Client(daemon.endpoint).connect_and_get_server_endpoints()
        offered = {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode) for e in endpoints}
        assert offered == {
            ("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt),
            ("Aes256_Sha256_RsaPss", ua.MessageSecurityMode.SignAndEncrypt),
        }
        with pytest.raises((UaError, OSError, TimeoutError)):
            await connect(daemon.endpoint, "otto")  # SecurityPolicy None: not offered
        own = daemon.data_dir / "pki" / "own"
        assert (own / "key.pem").stat().st_mode & 0o777 == 0o600
        first = (own / "cert.der").read_bytes()
    finally:
        await daemon.server.stop()
    again = await make_daemon(tmp_path, allow_insecure=False)
    await again.server.stop()
    assert (own / "cert.der").read_bytes() == first  # made on first start only


async def test_an_unknown_client_certificate_is_refused_and_kept_for_the_administrator(
    tmp_path: Path,
) -> None:
    daemon = await make_daemon(tmp_path, allow_insecure=False, trust_all_loopback_clients=False)
    pki = daemon.data_dir / "pki"
    try:
        with pytest.raises((UaError, OSError, TimeoutError)):
            await connect(daemon.endpoint, "otto", secure=True, pki=tmp_path / "client")
        rejected = list((pki / "rejected").iterdir())
        assert len(rejected) == 1
        assert rejected[0].read_bytes() == (tmp_path / "client" / "cert.der").read_bytes()
        shutil.move(rejected[0], pki / "trusted" / rejected[0].name)  # the administrator's move
        client = await connect(daemon.endpoint, "otto", secure=True, pki=tmp_path / "client")
        try:
            unit, ns = await unit_node(client)
            assert await (await unit.get_child(f"{ns}:State")).read_value() == "IDLE"
        finally:
            await client.disconnect()
    finally:
        await daemon.server.stop()


async def test_aes256_sha256_rsapss_sessions_work_too(tmp_path: Path) -> None:
    daemon = await make_daemon(tmp_path, allow_insecure=False)
    try:
        client = Client(daemon.endpoint, timeout=10)
        client.application_uri = "urn:cellshuttle:test-client"
        own = ensure_certificate(tmp_path / "client", client.application_uri, "test", False)
        await client.set_security(
            SecurityPolicyAes256Sha256RsaPss, str(own.certificate), str(own.private_key),
            mode=ua.MessageSecurityMode.SignAndEncrypt,
        )
        client.set_user("sue")
        client.set_password(ACCOUNTS["sue"][1])
        await client.connect()
        try:
            unit, ns = await unit_node(client)
            assert await (await unit.get_child(f"{ns}:State")).read_value() == "IDLE"
        finally:
            await client.disconnect()
    finally:
        await daemon.server.stop()
