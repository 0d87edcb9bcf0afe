"""The unit methods over real OPC UA: the run cycle, roles, status codes, audit of every call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.ua.uaerrors import UaStatusCodeError
from operator_rig import DEMO, INSTRUMENT, Daemon, connect, make_daemon, unit_node

from shuttled.records.audit import AuditTrail

S = ua.StatusCodes


async def call(unit, ns: int, method: str, *args: object) -> ua.CallMethodResult:
    """The raw result, so refusals are checked by status code rather than by exception."""
    method_node = await unit.get_child(f"{ns}:{method}")
    request = ua.CallMethodRequest(
        ObjectId=unit.nodeid,
        MethodId=method_node.nodeid,
        InputArguments=[a if isinstance(a, ua.Variant) else ua.Variant(a) for a in args],
    )
    return (await unit.session.call([request]))[0]


async def state(unit, ns: int) -> str:
    return await (await unit.get_child(f"{ns}:State")).read_value()


async def test_an_operator_loads_starts_holds_restarts_and_stops(daemon: Daemon) -> None:
    client = await connect(daemon.endpoint, "otto")
    try:
        unit, ns = await unit_node(client)
        loaded = await call(unit, ns, "LoadProtocol", DEMO.read_text())
        assert loaded.StatusCode.is_good()
        template_id, errors = (v.Value for v in loaded.OutputArguments)
        assert template_id.startswith("demo@1.0.0#") and errors == ""
        template = await unit.get_child(
            [f"{ns}:ProgramManager", f"{ns}:ProgramTemplateSet", f"{ns}:{template_id}"]
        )
        assert await (await template.get_child(f"{ns}:Name")).read_value() == "demo"

        started = await call(unit, ns, "Start", template_id, '{"target_cells": 6e7}', "batch 42")
        assert started.StatusCode.is_good()
        run_id = started.OutputArguments[0].Value
        assert run_id == f"{INSTRUMENT}-U01-0001"
        assert await state(unit, ns) == "RUNNING"
        active = [f"{ns}:ProgramManager", f"{ns}:ActiveProgram"]
        assert await (await unit.get_child([*active, f"{ns}:DeviceProgramRunId"])).read_value() \
            == run_id
        assert await (await unit.get_child([*active, f"{ns}:CurrentStepName"])).read_value() \
            == "warm-up"

        assert (await call(unit, ns, "Hold", "check the bag")).StatusCode.is_good()
        await daemon.tick()
        assert await state(unit, ns) == "HELD"
        hold_reason = await (await unit.get_child(f"{ns}:HoldReason")).read_value()
        assert hold_reason == "check the bag"
        assert (await call(unit, ns, "Restart", "bag fine")).StatusCode.is_good()
        await daemon.tick()
        assert await state(unit, ns) == "RUNNING"
        assert (await call(unit, ns, "Stop", "end of test")).StatusCode.is_good()
        await daemon.tick()
        assert await state(unit, ns) == "STOPPED"
        result = await unit.get_child(
            [f"{ns}:ProgramManager", f"{ns}:ResultSet", f"{ns}:{run_id}"]
        )
        assert await (await result.get_child(f"{ns}:State")).read_value() == "STOPPED"
    finally:
        await client.disconnect()
    events = daemon.runs["U01"].events
    assert any(e.user == "otto" and "check the bag" in e.detail for e in events)


async def test_a_command_the_state_does_not_allow_is_bad_invalid_state(daemon: Daemon) -> None:
    client = await connect(daemon.endpoint, "sue")
    try:
        unit, ns = await unit_node(client)
        for method in ("Hold", "Restart", "Stop", "Reset"):
            result = await call(unit, ns, method, "why not")
            assert result.StatusCode.value == S.BadInvalidState, method
            assert "IDLE" in result.InputArgumentDiagnosticInfos[0].AdditionalInfo
        # Start without any loaded protocol is an argument problem, not a state one.
        assert (await call(unit, ns, "Start", "", "", "go")).StatusCode.value \
            == S.BadInvalidArgument
        assert await state(unit, ns) == "IDLE"
    finally:
        await client.disconnect()


@pytest.mark.parametrize(
    ("user", "allowed"),
    [
        ("vera", set()),
        ("admin", set()),  # a viewer called admin is a viewer
        ("otto", {"Hold", "Stop"}),
        ("sue", {"Hold", "Stop", "Abort"}),
    ],
)
async def test_each_role_may_call_only_its_methods(
    daemon: Daemon, user: str, allowed: set[str]
) -> None:
    client = await connect(daemon.endpoint, user)
    try:
        unit, ns = await unit_node(client)
        load = await call(unit, ns, "LoadProtocol", DEMO.read_text())
        if user in ("vera", "admin"):
            assert load.StatusCode.value == S.BadUserAccessDenied
            for method in ("Start", "Hold", "Restart", "Stop", "Abort", "Reset"):
                args = ("", "", "r") if method == "Start" else ("r",)
                assert (await call(unit, ns, method, *args)).StatusCode.value \
                    == S.BadUserAccessDenied, method
            return
        assert load.StatusCode.is_good()
        for method in ("Abort", "Reset"):
            status = (await call(unit, ns, method, "r")).StatusCode.value
            # Abort/Reset are the supervisor's; in IDLE they are refused for the state.
            expected = S.BadInvalidState if method in allowed or user == "sue" \
                else S.BadUserAccessDenied
            assert status == expected, (user, method)
        assert (await call(unit, ns, "Start", "", "{}", "r")).StatusCode.is_good()
        abort = (await call(unit, ns, "Abort", "r")).StatusCode
        assert abort.is_good() == ("Abort" in allowed)
    finally:
        await client.disconnect()


async def test_the_name_admin_gets_no_address_space_rights(daemon: Daemon) -> None:
    client = await connect(daemon.endpoint, "admin")
    try:
        objects = client.nodes.objects
        with pytest.raises(UaStatusCodeError) as refused:
            await objects.add_folder(2, "Intruder")
        assert refused.value.code == S.BadUserAccessDenied
        unit, ns = await unit_node(client)
        state_node = await unit.get_child(f"{ns}:State")
        with pytest.raises(UaStatusCodeError):
            await state_node.write_value("COMPLETE")
        assert await state_node.read_value() == "IDLE"
    finally:
        await client.disconnect()


@pytest.mark.parametrize(
    ("user", "password"),
    [("otto", "wrong"), ("nobody", "whatever"), ("admin", "admin"), ("admin", "")],
)
async def test_a_wrong_password_or_unknown_user_is_refused(
    daemon: Daemon, user: str, password: str
) -> None:
    with pytest.raises(UaStatusCodeError) as refused:
        await connect(daemon.endpoint, user, password)
    assert refused.value.code in (S.BadUserAccessDenied, S.BadIdentityTokenRejected)


async def test_anonymous_is_refused_unless_allowed_and_then_only_reads(tmp_path: Path) -> None:
    closed = await make_daemon(tmp_path / "closed")
    try:
        with pytest.raises(UaStatusCodeError):
            await connect(closed.endpoint, None)
    finally:
        await closed.server.stop()
    open_ = await make_daemon(tmp_path / "open", allow_anonymous_read=True)
    try:
        client = await connect(open_.endpoint, None)
        try:
            unit, ns = await unit_node(client)
            assert await state(unit, ns) == "IDLE"
            for method, args in (("LoadProtocol", (DEMO.read_text(),)), ("Hold", ("r",))):
                result = await call(unit, ns, method, *args)
                assert result.StatusCode.value == S.BadUserAccessDenied
        finally:
            await client.disconnect()
        records = AuditTrail(open_.data_dir / "journal.sqlite3").records()
        assert [(r.user, r.method, r.result) for r in records] == [
            ("anonymous", "LoadProtocol", "BadUserAccessDenied"),
            ("anonymous", "Hold", "BadUserAccessDenied"),
        ]
        assert records[0].arguments["sha256"] and "phases" not in json.dumps(records[0].arguments)
    finally:
        await open_.server.stop()


async def test_malformed_arguments_get_status_codes_and_the_server_goes_on(
    daemon: Daemon,
) -> None:
    client = await connect(daemon.endpoint, "sue")
    try:
        unit, ns = await unit_node(client)
        int_arg = ua.Variant(42, ua.VariantType.Int32)
        cases = [
            ("Hold", (int_arg,), S.BadInvalidArgument),
            ("Hold", (), S.BadArgumentsMissing),
            ("Hold", ("a", "b"), S.BadTooManyArguments),
            ("Hold", ("   ",), S.BadInvalidArgument),
            ("Hold", (ua.Variant(["x", "y"], ua.VariantType.String),), S.BadInvalidArgument),
            ("LoadProtocol", (ua.Variant(b"\x00\xff", ua.VariantType.ByteString),),
             S.BadInvalidArgument),
            ("LoadProtocol", ("x" * 1_100_000,), S.BadInvalidArgument),
            ("Start", ("", "{not json", "r"), S.BadInvalidArgument),
            ("Start", ("", "[1, 2]", "r"), S.BadInvalidArgument),
            ("Start", ("", '{"max_density": "high"}', "r"), S.BadInvalidArgument),
            ("Start", ("", "{}", ""), S.BadInvalidArgument),
            ("Start", ("nope@1.0.0#000000000000", "{}", "r"), S.BadInvalidArgument),
        ]
        for method, args, expected in cases:
            result = await call(unit, ns, method, *args)
            assert result.StatusCode.value == expected, (method, args[:1], result.StatusCode)
        garbage = await call(unit, ns, "LoadProtocol", "phases: [unclosed\n  - {")
        assert garbage.StatusCode.is_good()
        template_id, errors = (v.Value for v in garbage.OutputArguments)
        assert template_id == "" and errors.splitlines()[0].split(":")[0].isdigit()
        loaded = await call(unit, ns, "LoadProtocol", DEMO.read_text())
        out_of_bounds = await call(unit, ns, "Start", "", '{"max_density": 1e12}', "r")
        assert out_of_bounds.StatusCode.value == S.BadInvalidArgument
        assert "max_density" in out_of_bounds.InputArgumentDiagnosticInfos[0].AdditionalInfo
        assert loaded.StatusCode.is_good() and await state(unit, ns) == "IDLE"
    finally:
        await client.disconnect()
    audit = AuditTrail(daemon.data_dir / "journal.sqlite3")
    assert len(audit.records()) == 15 and audit.verify().ok
