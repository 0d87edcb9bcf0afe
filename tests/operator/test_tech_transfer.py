"""Tech-transfer packages between two instruments over real OPC UA (SPEC §12), and a QA
approval by an independent OPC UA stack (node-opcua)."""

from __future__ import annotations

import json
from pathlib import Path

from asyncua import ua
from gmp_rig import protocol_call, reason_of, show
from operator_rig import ACCOUNTS, Daemon, connect, make_daemon
from test_node_opcua import _node_opcua, run_node_script
from test_protocol_lifecycle import load_demo, sign_step

from shuttled.records.instrument_key import PUBLIC_KEY_FILE, load_or_create

S = ua.StatusCodes
APPROVE_SCRIPT = Path(__file__).parent / "node" / "approve_protocol.js"


async def approved_package(daemon: Daemon) -> tuple[str, str]:
    identity = await load_demo(daemon)
    await sign_step(daemon, "otto", "SubmitProtocol", identity, "authored")
    await sign_step(daemon, "quinn", "ApproveProtocol", identity, "approved")
    client = await connect(daemon.endpoint, "sue")
    try:
        exported = await protocol_call(client, "ExportProtocol", identity)
    finally:
        await client.disconnect()
    assert exported.StatusCode.is_good(), reason_of(exported)
    return identity, exported.OutputArguments[0].Value


async def import_package(daemon: Daemon, package: str, trusted: str) -> ua.CallMethodResult:
    client = await connect(daemon.endpoint, "quinn")
    try:
        return await protocol_call(client, "ImportProtocol", package, trusted)
    finally:
        await client.disconnect()


async def test_a_package_arrives_intact_as_a_draft_with_its_origin_or_not_at_all(
        tmp_path: Path) -> None:
    origin = await make_daemon(tmp_path / "site-a")
    receiver = await make_daemon(tmp_path / "site-b")
    try:
        identity, package = await approved_package(origin)
        content = json.loads(package)["content"]
        assert content["lifecycle"]["state"] == "approved"
        assert content["analysis"]["final_state"] == "COMPLETE"  # the sender's digital twin
        site_a_key = (origin.data_dir / PUBLIC_KEY_FILE).read_text()
        site_b_key = load_or_create(receiver.data_dir).public.pem.decode()
        # one byte changed anywhere in the content: refused, nothing lands
        edited = package.replace('"version": "1.0.0"', '"version": "1.0.1"', 1)
        assert edited != package
        refused = await import_package(receiver, edited, site_a_key)
        assert refused.StatusCode.value == S.BadInvalidArgument
        assert "changed after export" in reason_of(refused)
        # signed by a key other than the one this site trusts
        untrusted = await import_package(receiver, package, site_b_key)
        assert untrusted.StatusCode.value == S.BadInvalidArgument
        assert "not trusted" in reason_of(untrusted)
        nobody = await import_package(receiver, package, "")
        assert nobody.StatusCode.value == S.BadInvalidArgument
        assert "not trusted" in reason_of(nobody)

        imported = await import_package(receiver, package, site_a_key)
        assert imported.StatusCode.is_good(), reason_of(imported)
        client = await connect(receiver.endpoint, "vera")
        try:
            arrived = await show(client, identity)
        finally:
            await client.disconnect()
        assert arrived["state"] == "draft"  # approved there, a draft here
        assert arrived["origin"]["instrument_id"] == "CS-TEST"
        assert arrived["origin"]["state_at_origin"] == "approved"
        assert [(s["signer"], s["meaning"]) for s in arrived["origin"]["signatures"]] == [
            ("otto", "authored"), ("quinn", "approved")]
        assert arrived["signatures"] == []  # this site's QA has not signed yet
    finally:
        await origin.server.stop()
        await receiver.server.stop()


async def test_the_trusted_sites_folder_and_a_garbled_package(tmp_path: Path) -> None:
    origin = await make_daemon(tmp_path / "site-a")
    receiver = await make_daemon(tmp_path / "site-b")
    try:
        identity, package = await approved_package(origin)
        for garbage, why in (("", "not JSON"), ("{}", "format"),
                             ('{"format": "shuttled-protocol-package/1"}', "lacks content")):
            result = await import_package(receiver, garbage, "")
            assert result.StatusCode.value == S.BadInvalidArgument and why in reason_of(result)
        bad_key = await import_package(receiver, package, "not a key")
        assert bad_key.StatusCode.value == S.BadInvalidArgument
        trusted = receiver.data_dir / "trusted-sites"
        trusted.mkdir()
        (trusted / "site-a.pem").write_bytes((origin.data_dir / PUBLIC_KEY_FILE).read_bytes())
        imported = await import_package(receiver, package, "")
        assert imported.StatusCode.is_good(), reason_of(imported)
        assert imported.OutputArguments[0].Value == identity
        client = await connect(receiver.endpoint, "otto")  # an operator may not import
        try:
            denied = await protocol_call(client, "ImportProtocol", package, "")
            assert denied.StatusCode.value == S.BadUserAccessDenied
        finally:
            await client.disconnect()
    finally:
        await origin.server.stop()
        await receiver.server.stop()


async def test_node_opcua_approves_a_protocol_with_a_signature(tmp_path: Path) -> None:
    node = _node_opcua()
    daemon = await make_daemon(tmp_path, allow_insecure=False)
    try:
        identity = await load_demo_secure(daemon, tmp_path)
        result = await run_node_script(node, APPROVE_SCRIPT, tmp_path, daemon.endpoint,
                                       str(tmp_path / "node-pki"), identity, "quinn",
                                       ACCOUNTS["quinn"][1])
    finally:
        await daemon.server.stop()
    assert result["wrong_password"] == "BadUserAccessDenied"
    assert result["approve"] == {"status": "Good", "outputs": ["approved"]}
    signed = result["shown"]["signatures"][-1]
    assert (signed["signer"], signed["meaning"], signed["status"]) == (
        "quinn", "approved", "signed")
    assert signed["comment"] == "approved from node-opcua"


async def load_demo_secure(daemon: Daemon, tmp_path: Path) -> str:
    """Load and submit over an encrypted session (the daemon offers no other here)."""
    from gmp_rig import signature
    from operator_rig import DEMO, unit_node
    from test_methods_and_roles import call

    client = await connect(daemon.endpoint, "otto", secure=True, pki=tmp_path / "pki")
    try:
        unit, ns = await unit_node(client)
        loaded = await call(unit, ns, "LoadProtocol", DEMO.read_text())
        identity = loaded.OutputArguments[0].Value
        submitted = await protocol_call(client, "SubmitProtocol", identity,
                                        signature("otto", "authored"))
        assert submitted.StatusCode.is_good(), reason_of(submitted)
        return identity
    finally:
        await client.disconnect()
