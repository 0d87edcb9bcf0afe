"""shuttlectl alarms | ack | shelve | unshelve (SPEC §13), over OPC UA Alarms & Conditions.

The list comes from the instrument's `AlarmList` variable; acknowledging and shelving call the
standard methods on the condition — Acknowledge (i=9111) with the condition's latest EventId,
TimedShelve2 (i=24756) and Unshelve2 (i=24758) on its ShelvingState — exactly as UaExpert or a
SCADA would, so the daemon has one way in for every client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
from typing import Any

from asyncua import ua
from asyncua.ua.uaerrors import UaStatusCodeError
from rich.console import Console
from rich.table import Table

from shuttled.cli.common import EXIT_OK, EXIT_UNREACHABLE, fail
from shuttled.cli.ctl_client import CtlError, Session, open_session, read_credentials, unit_of

COMMANDS = {"alarms", "ack", "shelve", "unshelve"}
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration_s(text: str) -> float:
    """`2h`, `30m`, `1h30m`, `90s` or plain seconds; argparse error otherwise."""
    text = text.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 2h, 30m, 1h30m")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    listing = sub.add_parser("alarms", help="current alarms (active, or cleared and not yet "
                             "acknowledged); --all adds shelved and suppressed ones")
    listing.add_argument("unit", nargs="?", metavar="UNIT")
    listing.add_argument("--all", action="store_true", help="also shelved and suppressed alarms")
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    ack = sub.add_parser("ack", help="acknowledge an alarm (operator or supervisor)")
    ack.add_argument("unit", metavar="UNIT")
    ack.add_argument("name", metavar="NAME")
    ack.add_argument("--comment", required=True, help="what was seen or done (audit trail)")
    shelve = sub.add_parser("shelve", help="shelve an alarm for a while (supervisor)")
    shelve.add_argument("unit", metavar="UNIT")
    shelve.add_argument("name", metavar="NAME")
    shelve.add_argument("--for", dest="duration", type=duration_s, required=True,
                        metavar="DURATION", help="2h, 30m, 1h30m (at most the daemon's "
                        "max_shelve_s, 8 h by default)")
    shelve.add_argument("--reason", required=True, help="why (audit trail)")
    unshelve = sub.add_parser("unshelve", help="end an alarm's shelve now (supervisor)")
    unshelve.add_argument("unit", metavar="UNIT")
    unshelve.add_argument("name", metavar="NAME")
    unshelve.add_argument("--reason", default="", help="why (audit trail)")


async def read_alarms(session: Session) -> list[dict[str, Any]]:
    node = await session.instrument.get_child(f"{session.ns}:AlarmList")
    return json.loads(await node.read_value() or "[]")


def _find(alarms: list[dict[str, Any]], unit: str, name: str) -> dict[str, Any]:
    for alarm in alarms:
        if alarm["unit"] == unit and alarm["name"] == name:
            return alarm
    names = ", ".join(a["name"] for a in alarms if a["unit"] == unit) or "none"
    raise CtlError(f"no alarm {name} on {unit} (current: {names})")


async def _call(session: Session, target: str, method: int, label: str,
                args: list[ua.Variant]) -> None:  # fmt: skip
    request = ua.CallMethodRequest(ObjectId=ua.NodeId.from_string(target),
                                   MethodId=ua.NodeId(method), InputArguments=args)
    try:
        result = (await session.client.uaclient.call([request]))[0]
    except UaStatusCodeError as error:
        raise CtlError(f"{label} refused: {error}") from None
    if not result.StatusCode.is_good():
        reasons = [d.AdditionalInfo for d in result.InputArgumentDiagnosticInfos or []
                   if d and d.AdditionalInfo]  # fmt: skip
        reason = reasons[0] if reasons else "no reason given"
        raise CtlError(f"{label} refused: {reason} ({result.StatusCode.name})")


def _text(value: str) -> ua.Variant:
    return ua.Variant(ua.LocalizedText(value), ua.VariantType.LocalizedText)


async def _run(session: Session, args: argparse.Namespace) -> int:
    if args.command != "alarms" or args.unit:
        unit_of(session, args.unit)
    alarms = await read_alarms(session)
    if args.command == "alarms":
        return print_alarms(alarms, args.unit, args.all, args.json)
    alarm = _find(alarms, args.unit, args.name)
    if args.command == "ack":
        event_id = bytes.fromhex(alarm.get("event_id", ""))
        acknowledge = ua.ObjectIds.AcknowledgeableConditionType_Acknowledge
        await _call(session, alarm["condition"], acknowledge, "Acknowledge",
                    [ua.Variant(event_id, ua.VariantType.ByteString), _text(args.comment)])
        print(f"{args.unit}: {args.name} acknowledged")
    elif args.command == "shelve":
        await _call(session, alarm["shelving_state"],
                    ua.ObjectIds.ShelvedStateMachineType_TimedShelve2, "TimedShelve2",
                    [ua.Variant(args.duration * 1000.0, ua.VariantType.Double),
                     _text(args.reason)])  # fmt: skip
        print(f"{args.unit}: {args.name} shelved for {args.duration:g} s")
    else:
        await _call(session, alarm["shelving_state"],
                    ua.ObjectIds.ShelvedStateMachineType_Unshelve2, "Unshelve2",
                    [_text(args.reason)])
        print(f"{args.unit}: {args.name} unshelved")
    return EXIT_OK


def print_alarms(alarms: list[dict[str, Any]], unit: str | None, everything: bool,
                 as_json: bool) -> int:  # fmt: skip
    shown = [
        a for a in alarms
        if (unit is None or a["unit"] == unit)
        and (everything or not (a["shelved"] or a["suppressed"]))
    ]  # fmt: skip
    if as_json:
        keep = ("condition", "shelving_state", "event_id")
        print(json.dumps([{k: v for k, v in a.items() if k not in keep} for a in shown]))
        return EXIT_OK
    table = Table(title="Alarms" + (f" of {unit}" if unit else ""))
    for column in ("unit", "alarm", "sev", "state", "raised", "acked by / comment",
                   "shelved until", "message"):
        table.add_column(column)
    for a in shown:
        acked = f"{a['acked_by']}: {a['ack_comment']}" if a["acked_by"] else ""
        state = a["state"] + (" (suppressed)" if a["suppressed"] else "")
        table.add_row(a["unit"], a["name"], str(a["severity"]), state, a["raised"] or "",
                      acked, a["shelved"] or "", a["message"])  # fmt: skip
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    if not shown:
        print("no alarms")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    from shuttled.service.log_setup import configure_logging

    configure_logging("warning")

    async def online() -> int:
        user, password = read_credentials(args.user, args.password_file)
        session = await open_session(args.endpoint, user, password, args.pki_dir,
                                     server_cert=args.server_cert)  # fmt: skip
        try:
            return await _run(session, args)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.client.disconnect(), 5)

    try:
        return asyncio.run(online())
    except CtlError as error:
        return fail(error.message, error.code)
    except (OSError, TimeoutError) as error:
        return fail(f"lost the connection to {args.endpoint}: {error}", EXIT_UNREACHABLE)
