"""The protocol lifecycle over real OPC UA (SPEC §12): submit, approve, retire; who may sign
what; wrong passwords and lockout; GMP start; signatures bound to the text and kept durably."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from asyncua import ua
from gmp_rig import call_at, protocol_call, reason_of, show, signature
from operator_rig import DEMO, Daemon, connect, make_daemon, unit_node
from test_methods_and_roles import call

from shuttled.records.audit import AuditTrail

S = ua.StatusCodes


async def load_demo(daemon: Daemon, text: str | None = None, unit: str = "U01") -> str:
    client = await connect(daemon.endpoint, "otto")
    try:
        node, ns = await unit_node(client, unit)
        result = await call(node, ns, "LoadProtocol", text or DEMO.read_text())
        template_id, errors = (v.Value for v in result.OutputArguments)
        assert template_id, errors
        return template_id
    finally:
        await client.disconnect()


async def sign_step(daemon: Daemon, user: str, method: str, identity: str, meaning: str,
                    *, password: str | None = None, reason: str | None = None
                    ) -> ua.CallMethodResult:
    client = await connect(daemon.endpoint, user)
    try:
        args = [identity] + ([reason] if reason is not None else [])
        return await protocol_call(client, method, *args,
                                   signature(user, meaning, f"{user} signs", password))
    finally:
        await client.disconnect()


async def test_a_protocol_is_authored_by_one_user_and_approved_by_another_qa_user(
        daemon: Daemon) -> None:
    identity = await load_demo(daemon)
    submitted = await sign_step(daemon, "quinn", "SubmitProtocol", identity, "authored")
    assert submitted.StatusCode.is_good(), reason_of(submitted)
    assert submitted.OutputArguments[0].Value == "in_review"

    same = await sign_step(daemon, "quinn", "ApproveProtocol", identity, "approved")
    assert same.StatusCode.value == S.BadInvalidArgument
    assert "may not also approve" in reason_of(same)

    approved = await sign_step(daemon, "quincy", "ApproveProtocol", identity, "approved")
    assert approved.StatusCode.is_good(), reason_of(approved)

    client = await connect(daemon.endpoint, "vera")  # a viewer reads the library
    try:
        described = await show(client, identity)
    finally:
        await client.disconnect()
    assert described["state"] == "approved" and described["intact"]
    assert [(s["signer"], s["full_name"], s["meaning"], s["status"])
            for s in described["signatures"]] == [
        ("quinn", "Quinn Adams", "authored", "signed"),
        ("quincy", "Quincy Brown", "approved", "signed")]
    assert all(s["utc"].endswith("Z") for s in described["signatures"])
    assert [t["to_state"] for t in described["history"]] == ["draft", "in_review", "approved"]
    signs = [r for r in AuditTrail(daemon.data_dir / "journal.sqlite3").records()
             if r.method == "Sign"]
    assert [(r.user, r.arguments["meaning"]) for r in signs] == [
        ("quinn", "authored"), ("quincy", "approved")]


async def test_viewers_and_operators_cannot_approve(daemon: Daemon) -> None:
    identity = await load_demo(daemon)
    assert (await sign_step(daemon, "otto", "SubmitProtocol", identity, "authored")
            ).StatusCode.is_good()
    for user in ("vera", "otto", "sue"):
        refused = await sign_step(daemon, user, "ApproveProtocol", identity, "approved")
        assert refused.StatusCode.value == S.BadUserAccessDenied, user
    wrong_meaning = await sign_step(daemon, "quinn", "ApproveProtocol", identity, "reviewed")
    assert wrong_meaning.StatusCode.value == S.BadInvalidArgument
    client = await connect(daemon.endpoint, "quinn")
    try:
        assert (await show(client, identity))["state"] == "in_review"
    finally:
        await client.disconnect()


async def test_a_wrong_signing_password_is_refused_audited_and_the_fifth_locks_the_account(
        daemon: Daemon) -> None:
    identity = await load_demo(daemon)
    for attempt in range(5):
        refused = await sign_step(daemon, "otto", "SubmitProtocol", identity, "authored",
                                  password="not-the-password")
        assert refused.StatusCode.value == S.BadUserAccessDenied
        assert ("now locked" in reason_of(refused)) == (attempt == 4)
    journal = daemon.data_dir / "journal.sqlite3"
    records = AuditTrail(journal).records()
    submits = [r for r in records if r.method == "SubmitProtocol"]
    assert len(submits) == 5 and all(r.result == "BadUserAccessDenied" for r in submits)
    assert submits[0].arguments["meaning"] == "authored"
    assert "not-the-password" not in journal.read_bytes().decode("latin-1")
    assert any(r.method == "AccountLocked" and r.user == "otto" for r in records)

    try:  # the right password no longer signs otto in
        await connect(daemon.endpoint, "otto")
    except ua.UaError:
        pass
    else:
        raise AssertionError("a locked account signed in")

    client = await connect(daemon.endpoint, "sue")
    try:
        unlocked = await call_at(client, "Users", "UnlockUser", "otto", "identity checked")
        assert unlocked.StatusCode.is_good(), reason_of(unlocked)
        again = await call_at(client, "Users", "UnlockUser", "otto", "twice")
        assert again.StatusCode.value == S.BadInvalidArgument
    finally:
        await client.disconnect()
    submitted = await sign_step(daemon, "otto", "SubmitProtocol", identity, "authored")
    assert submitted.StatusCode.is_good(), reason_of(submitted)
    assert any(r.method == "UnlockUser" and r.arguments["name"] == "otto"
               for r in AuditTrail(journal).records())


async def test_an_operator_cannot_unlock_and_malformed_signatures_are_refused(
        daemon: Daemon) -> None:
    identity = await load_demo(daemon)
    client = await connect(daemon.endpoint, "otto")
    try:
        assert (await call_at(client, "Users", "UnlockUser", "sue", "x")
                ).StatusCode.value == S.BadUserAccessDenied
        for bad in ("", "not json", '{"meaning": "liked", "password": "x"}',
                    '{"meaning": "authored"}', '["authored"]'):
            result = await protocol_call(client, "SubmitProtocol", identity, bad)
            assert result.StatusCode.value == S.BadInvalidArgument, bad
        missing = await protocol_call(client, "SubmitProtocol", identity)
        assert missing.StatusCode.value == S.BadArgumentsMissing
    finally:
        await client.disconnect()


async def test_in_gmp_mode_only_an_approved_protocol_starts(tmp_path: Path) -> None:
    daemon = await make_daemon(tmp_path, gmp=True)
    try:
        identity = await load_demo(daemon)
        client = await connect(daemon.endpoint, "otto")
        try:
            unit, ns = await unit_node(client)
            refused = await call(unit, ns, "Start", identity, "", "batch 1")
            assert refused.StatusCode.value == S.BadInvalidState
            assert "only approved protocols start" in reason_of(refused)
            assert (await sign_step(daemon, "otto", "SubmitProtocol", identity, "authored")
                    ).StatusCode.is_good()
            assert (await sign_step(daemon, "quinn", "ApproveProtocol", identity, "approved")
                    ).StatusCode.is_good()
            # approved for the instrument: U02 starts it without loading the file again
            u02, _ = await unit_node(client, "U02")
            started = await call(u02, ns, "Start", identity, "", "batch 2", "DIN-0002",
                                 "CRT-U02", signature("otto", "performed"))
            assert started.StatusCode.is_good(), reason_of(started)
        finally:
            await client.disconnect()
        retired = await sign_step(daemon, "quinn", "RetireProtocol", identity, "approved",
                                  reason="superseded by 1.1.0")
        assert retired.StatusCode.is_good(), reason_of(retired)
        client = await connect(daemon.endpoint, "otto")
        try:
            unit, ns = await unit_node(client)
            refused = await call(unit, ns, "Start", identity, "", "batch 3")
            assert refused.StatusCode.value == S.BadInvalidState
            assert "retired" in reason_of(refused)
        finally:
            await client.disconnect()
    finally:
        await daemon.server.stop()


async def test_the_same_name_and_version_with_other_content_is_a_conflict(
        daemon: Daemon) -> None:
    await load_demo(daemon)
    changed = DEMO.read_text() + "\n# a changed comment is another content\n"
    client = await connect(daemon.endpoint, "otto")
    try:
        unit, ns = await unit_node(client, "U02")
        result = await call(unit, ns, "LoadProtocol", changed)
        template_id, errors = (v.Value for v in result.OutputArguments)
        assert template_id == ""
        assert "already known with other content" in errors and "new version" in errors
    finally:
        await client.disconnect()


async def test_signatures_survive_a_restart_and_an_edited_text_shows_them_broken(
        tmp_path: Path) -> None:
    daemon = await make_daemon(tmp_path, gmp=True)
    try:
        identity = await load_demo(daemon)
        await sign_step(daemon, "otto", "SubmitProtocol", identity, "authored")
        await sign_step(daemon, "quinn", "ApproveProtocol", identity, "approved")
    finally:
        await daemon.server.stop()
    daemon = await make_daemon(tmp_path, gmp=True)  # same data directory: a restart
    try:
        client = await connect(daemon.endpoint, "vera")
        try:
            before = await show(client, identity)
            assert [s["status"] for s in before["signatures"]] == ["signed", "signed"]
            with sqlite3.connect(daemon.data_dir / "journal.sqlite3") as db:
                db.execute("UPDATE protocol_library SET text = text || ' ' WHERE identity = ?",
                           (identity,))
            after = await show(client, identity)
        finally:
            await client.disconnect()
        assert not after["intact"]
        assert [s["status"] for s in after["signatures"]] == ["broken", "broken"]
        client = await connect(daemon.endpoint, "otto")
        try:
            unit, ns = await unit_node(client, "U02")
            refused = await call(unit, ns, "Start", identity, "", "batch")
            assert refused.StatusCode.value in (S.BadInvalidState, S.BadInvalidArgument)
        finally:
            await client.disconnect()
        listing = json.loads((await _list(daemon)).OutputArguments[0].Value)
        assert listing[0]["identity"] == identity and "text" not in listing[0]
    finally:
        await daemon.server.stop()


async def _list(daemon: Daemon) -> ua.CallMethodResult:
    client = await connect(daemon.endpoint, "vera")
    try:
        return await protocol_call(client, "ListProtocols")
    finally:
        await client.disconnect()
