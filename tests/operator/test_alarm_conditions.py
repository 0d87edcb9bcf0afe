"""OPC UA Alarms & Conditions on the operator server (SPEC §13), with asyncua as the client over
real OPC UA on loopback: ConditionRefresh, the unit and the Server as notifiers, Acknowledge with
its EventId, the shelving methods and their bounds, the roles, shelve expiry on the daemon's
clock, a restart, and shuttlectl's alarms, ack, shelve and unshelve."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from alarm_rig import RUNNING, condition_node, make_alarm_daemon
from asyncua import Client, ua
from operator_rig import ACCOUNTS, connect

O = ua.ObjectIds  # noqa: E741
ACK = ua.NodeId(O.AcknowledgeableConditionType_Acknowledge)
TIMED_SHELVE2 = ua.NodeId(O.ShelvedStateMachineType_TimedShelve2)
TWO_ALARMS = {"U01": {"OVER_TEMPERATURE": "trip"}, "U02": {"PUMP_MEDIA_ALARM": "STALL"}}


class Events:
    """Collects event notifications; `wait_for` awaits a condition on them, never a time."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    def event_notification(self, event: Any) -> None:
        fields = {k: v.Value for k, v in event.get_event_props_as_fields_dict().items()}
        self.seen.append(fields)
        self._changed.set()

    async def wait_for(self, predicate, timeout: float = 10.0) -> list[dict[str, Any]]:
        async def loop() -> list[dict[str, Any]]:
            while not (found := [e for e in self.seen if predicate(e)]):
                self._changed.clear()
                await self._changed.wait()
            return found
        return await asyncio.wait_for(loop(), timeout)


async def _subscribe(client: Client, node) -> tuple[Any, Events]:
    events = Events()
    subscription = await client.create_subscription(20, events)
    await subscription.subscribe_alarms_and_conditions(node, O.AlarmConditionType)
    return subscription, events


async def _call(client: Client, obj: ua.NodeId, method: ua.NodeId, *args: ua.Variant) -> str:
    request = ua.CallMethodRequest(ObjectId=obj, MethodId=method, InputArguments=list(args))
    return (await client.uaclient.call([request]))[0].StatusCode.name


def _bytes(value: bytes) -> ua.Variant:
    return ua.Variant(value, ua.VariantType.ByteString)


def _text(value: str) -> ua.Variant:
    return ua.Variant(ua.LocalizedText(value), ua.VariantType.LocalizedText)


def _ms(seconds: float) -> ua.Variant:
    return ua.Variant(seconds * 1000.0, ua.VariantType.Double)


async def test_refresh_acknowledge_shelve_roles_and_expiry(tmp_path: Path) -> None:
    daemon = await make_alarm_daemon(tmp_path, max_shelve_s=7200.0)
    otto = vera = sue = None
    try:
        await daemon.sync(TWO_ALARMS)  # raised before anyone subscribed
        otto = await connect(daemon.endpoint, "otto")
        subscription, events = await _subscribe(otto, otto.nodes.server)
        unit_subscription, unit_events = await _subscribe(otto, otto.get_node(
            ua.NodeId("CS-TEST.U01", 2)))
        status = await _call(otto, ua.NodeId(O.ConditionType),
                             ua.NodeId(O.ConditionType_ConditionRefresh),
                             ua.Variant(subscription.subscription_id, ua.VariantType.UInt32))
        assert status == "Good"
        both = await events.wait_for(lambda e: e.get("ConditionName") is not None)
        await events.wait_for(lambda e: e.get("EventType") == ua.NodeId(O.RefreshEndEventType))
        by_name = {e["ConditionName"]: e for e in both}
        assert {n: (e["Severity"], e["SourceName"], e["ActiveState/Id"], e["AckedState/Id"],
                    e["Retain"]) for n, e in by_name.items()} == {
            "OVER_TEMPERATURE": (800, "U01", True, False, True),
            "PUMP_MEDIA_ALARM": (500, "U02", True, False, True),
        }
        # the unit is a notifier of its own conditions only
        await _call(otto, ua.NodeId(O.ConditionType), ua.NodeId(O.ConditionType_ConditionRefresh),
                    ua.Variant(unit_subscription.subscription_id, ua.VariantType.UInt32))
        await unit_events.wait_for(
            lambda e: e.get("EventType") == ua.NodeId(O.RefreshEndEventType))
        assert {e["ConditionName"] for e in unit_events.seen if e.get("ConditionName")} == {
            "OVER_TEMPERATURE"}
        trip = by_name["OVER_TEMPERATURE"]
        condition = trip["NodeId"]

        vera = await connect(daemon.endpoint, "vera")
        assert await _call(vera, condition, ACK, _bytes(trip["EventId"]), _text("x")) == \
            "BadUserAccessDenied"
        # another session's subscription is not the caller's to refresh (Part 9)
        assert await _call(vera, ua.NodeId(O.ConditionType),
                           ua.NodeId(O.ConditionType_ConditionRefresh),
                           ua.Variant(subscription.subscription_id, ua.VariantType.UInt32)) == \
            "BadSubscriptionIdInvalid"
        assert await _call(otto, condition, ACK, _bytes(b"not-an-event"), _text("x")) == \
            "BadEventIdUnknown"
        assert await _call(otto, ua.NodeId("CS-TEST.U01", 2), ACK, _bytes(trip["EventId"]),
                           _text("x")) == "BadNodeIdUnknown"
        assert await _call(otto, condition, ACK, _bytes(trip["EventId"])) == \
            "BadArgumentsMissing"
        assert await _call(otto, condition, ACK, _bytes(trip["EventId"]),
                           _text("heater checked")) == "Good"
        acked = await events.wait_for(lambda e: e.get("ConditionName") == "OVER_TEMPERATURE"
                                      and e.get("AckedState/Id") is True)
        assert acked[-1]["Comment"].Text == "heater checked"
        assert acked[-1]["ClientUserId"] == "otto"
        assert await _call(otto, condition, ACK, _bytes(acked[-1]["EventId"]), _text("x")) == \
            "BadConditionBranchAlreadyAcked"

        shelving = ua.NodeId(f"{condition.Identifier}.ShelvingState", condition.NamespaceIndex)
        assert await _call(otto, shelving, TIMED_SHELVE2, _ms(60), _text("x")) == \
            "BadUserAccessDenied"
        sue = await connect(daemon.endpoint, "sue")
        assert await _call(sue, shelving, TIMED_SHELVE2, _ms(7201), _text("nuisance")) == \
            "BadShelvingTimeOutOfRange"
        assert await _call(sue, shelving, TIMED_SHELVE2, ua.Variant("2h"), _text("x")) == \
            "BadInvalidArgument"
        assert await _call(sue, shelving, TIMED_SHELVE2, _ms(3600), _text("nuisance")) == \
            "Good"
        await events.wait_for(lambda e: e.get("ShelvingState/CurrentState") is not None
                              and e["ShelvingState/CurrentState"].Text == "TimedShelved")
        assert await _call(sue, shelving, TIMED_SHELVE2, _ms(60), _text("x")) == \
            "BadConditionAlreadyShelved"

        await daemon.clock.sleep_until(3600.0)
        await daemon.sync(TWO_ALARMS)  # the next tick: still active, the shelve is over
        expired = await events.wait_for(
            lambda e: e.get("ConditionName") == "OVER_TEMPERATURE"
            and e["ShelvingState/CurrentState"].Text == "Unshelved" and e["AckedState/Id"] is False
            and e["ActiveState/Id"] is True)
        assert expired

        methods = [(r.user, r.method, r.result) for r in daemon.audit.records(unit="U01")]
        assert ("vera", "Acknowledge", "BadUserAccessDenied") in methods
        assert ("otto", "Acknowledge", "BadEventIdUnknown") in methods
        assert ("otto", "Acknowledge", "Good") in methods
        assert ("sue", "TimedShelve2", "BadShelvingTimeOutOfRange") in methods
        assert ("sue", "TimedShelve2", "Good") in methods
        assert ("system", "AlarmShelveExpired", "Good") in methods
    finally:
        for client in (otto, vera, sue):
            if client is not None:
                await client.disconnect()
        await daemon.stop()


async def test_a_restarted_daemon_shows_the_same_alarms_and_raises_none_again(
    tmp_path: Path,
) -> None:
    daemon = await make_alarm_daemon(tmp_path, settle_syncs=2)
    await daemon.sync(TWO_ALARMS)
    daemon.book.acknowledge("U02", "PUMP_MEDIA_ALARM", "known", "otto", "operator")
    await daemon.drain()
    before = [r.method for r in daemon.audit.records()]
    await daemon.stop()

    daemon = await make_alarm_daemon(tmp_path, settle_syncs=2)
    client = None
    try:
        await daemon.sync({"U01": {}, "U02": {}})  # the loop has not seen them yet
        await daemon.sync(TWO_ALARMS)
        client = await connect(daemon.endpoint, "otto")
        listed = json.loads(await client.get_node(
            daemon.server.alarm_conditions.list_node).read_value())
        assert {(a["name"], a["state"], a["occurrence"]) for a in listed} == {
            ("OVER_TEMPERATURE", "ACTIVE_UNACKED", 1), ("PUMP_MEDIA_ALARM", "ACTIVE_ACKED", 1)}
        node = await condition_node(client, "U01", "OVER_TEMPERATURE")
        assert await (await node.get_child("0:Retain")).read_value() is True
        assert [r.method for r in daemon.audit.records()] == before
    finally:
        if client is not None:
            await client.disconnect()
        await daemon.stop()


async def test_shuttlectl_lists_acknowledges_shelves_and_unshelves(tmp_path: Path) -> None:
    daemon = await make_alarm_daemon(tmp_path, max_shelve_s=8 * 3600.0)
    credentials = {}
    for user in ("otto", "sue"):
        credentials[user] = tmp_path / f"{user}.pw"
        credentials[user].write_text(f"{user}:{ACCOUNTS[user][1]}\n")

    async def ctl(user: str, *args: str) -> subprocess.CompletedProcess[str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shuttled.cli.ctl", "--endpoint", daemon.endpoint,
            "--password-file", str(credentials[user]), "--pki-dir", str(tmp_path / "pki"), *args,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        return subprocess.CompletedProcess(args, process.returncode, out.decode(), err.decode())

    try:
        await daemon.sync(TWO_ALARMS, units={"U01": RUNNING["U01"], "U02": RUNNING["U02"]})
        listed = await ctl("otto", "alarms", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [(a["unit"], a["name"], a["severity"], a["state"])
                for a in json.loads(listed.stdout)] == [
            ("U01", "OVER_TEMPERATURE", 800, "ACTIVE_UNACKED"),
            ("U02", "PUMP_MEDIA_ALARM", 500, "ACTIVE_UNACKED")]
        acked = await ctl("otto", "ack", "U01", "OVER_TEMPERATURE", "--comment", "checked")
        assert acked.returncode == 0, acked.stderr
        refused = await ctl("sue", "shelve", "U02", "PUMP_MEDIA_ALARM", "--for", "9h",
                            "--reason", "nuisance")
        assert refused.returncode == 1
        assert "BadShelvingTimeOutOfRange" in refused.stderr
        shelved = await ctl("sue", "shelve", "U02", "PUMP_MEDIA_ALARM", "--for", "2h",
                            "--reason", "nuisance")
        assert shelved.returncode == 0, shelved.stderr
        table = await ctl("otto", "alarms", "U02")
        assert "PUMP_MEDIA_ALARM" not in table.stdout and "no alarms" in table.stdout
        everything = json.loads((await ctl("otto", "alarms", "--all", "--json")).stdout)
        shelved_row = next(a for a in everything if a["name"] == "PUMP_MEDIA_ALARM")
        assert shelved_row["shelved_by"] == "sue" and shelved_row["shelve_reason"] == "nuisance"
        unshelved = await ctl("sue", "unshelve", "U02", "PUMP_MEDIA_ALARM")
        assert unshelved.returncode == 0, unshelved.stderr
        unknown = await ctl("otto", "ack", "U01", "NO_SUCH", "--comment", "x")
        assert unknown.returncode == 1 and "no alarm NO_SUCH on U01" in unknown.stderr
    finally:
        await daemon.stop()


async def test_node_opcua_refreshes_acknowledges_and_is_refused_a_long_shelve(
    tmp_path: Path,
) -> None:
    from test_node_opcua import NODE_DIR, _node_opcua

    node = _node_opcua()
    daemon = await make_alarm_daemon(tmp_path, max_shelve_s=8 * 3600.0)
    try:
        await daemon.sync(TWO_ALARMS)
        process = await asyncio.create_subprocess_exec(
            node, str(Path(__file__).parent / "node" / "alarm_session.js"), daemon.endpoint,
            "otto", ACCOUNTS["otto"][1], "vera", ACCOUNTS["vera"][1], "sue", ACCOUNTS["sue"][1],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={"NODE_PATH": str(NODE_DIR / "node_modules"), "PATH": "/usr/bin:/bin",
                 "HOME": str(tmp_path)},
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
    finally:
        await daemon.stop()
    assert process.returncode == 0, err.decode()[-3000:]
    marked = [line for line in out.decode().splitlines() if line.startswith("RESULT ")]
    assert len(marked) == 1, out.decode()[-3000:]
    result = json.loads(marked[0].removeprefix("RESULT "))
    assert result == {
        "refresh": "Good",
        "conditions": [["OVER_TEMPERATURE", "U01", 800, True, False, True],
                       ["PUMP_MEDIA_ALARM", "U02", 500, True, False, True]],
        "viewer_ack": "BadUserAccessDenied",
        "ack": "Good",
        "acked_comment": "seen by node-opcua",
        "too_long": "BadShelvingTimeOutOfRange",
        "shelve": "Good",
        "shelved": True,
    }
