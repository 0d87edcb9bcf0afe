"""shuttlectl's online commands: status, runs, load, start, the state commands and audit.

Each command reads or calls only what SPEC §5 publishes, so what works here works the same from
UaExpert or an MES; shuttlectl has no private back door into the daemon.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from asyncua import ua
from rich.console import Console
from rich.table import Table

from shuttled.cli.common import EXIT_OK, EXIT_REFUSED
from shuttled.cli.ctl_client import CtlError, Session, call, read_paths, unit_of

STATUS_PATHS: dict[str, tuple[str, ...]] = {
    "state": ("State",),
    "hold_reason": ("HoldReason",),
    "alarms": ("Alarms",),
    "temperature": ("FunctionSet", "Temperature", "CurrentValue"),
    "temperature_target": ("FunctionSet", "Temperature", "TargetValue"),
    "heater_pct": ("FunctionSet", "Temperature", "ControllerOutput"),
    "density": ("FunctionSet", "CellDensity", "SensorValue"),
    "growth_rate": ("FunctionSet", "CellDensity", "GrowthRate"),
    "volume_ml": ("FunctionSet", "Volume", "CurrentValue"),
    "protocol": ("ProgramManager", "ActiveProgram", "ProgramTemplateId"),
    "step": ("ProgramManager", "ActiveProgram", "CurrentStepName"),
    "run_id": ("ProgramManager", "ActiveProgram", "DeviceProgramRunId"),
    "batch": ("ProgramManager", "ActiveProgram", "BatchId"),
    "cartridge": ("ProgramManager", "ActiveProgram", "CartridgeId"),
    "runtime_s": ("ProgramManager", "ActiveProgram", "CurrentRuntime"),
    "remaining_s": ("ProgramManager", "ActiveProgram", "EstimatedRemaining"),
}


def _clean(value: Any) -> Any:
    """JSON has no NaN: an unknown measurement is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _number(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=None, sort_keys=False))


async def unit_status(session: Session) -> list[dict[str, Any]]:
    rows = []
    for unit, node in session.units.items():
        values = await read_paths(session, node, list(STATUS_PATHS.values()))
        row: dict[str, Any] = {"unit": unit}
        row.update({key: _clean(v) for key, v in zip(STATUS_PATHS, values, strict=True)})
        try:
            row["alarms"] = json.loads(row["alarms"] or "[]")
        except ValueError:
            row["alarms"] = []
        rows.append(row)
    return rows


async def cmd_status(session: Session, args: argparse.Namespace) -> int:
    rows = await unit_status(session)
    if args.json:
        _print_json(rows)
        return EXIT_OK
    health = await read_paths(session, session.instrument, [("DeviceHealth",)])
    name = (await session.instrument.read_browse_name()).Name
    table = Table(title=f"{name} — device health {health[0]}  (security: {session.policy})")
    for column in ("unit", "state", "step", "run", "batch", "°C", "target", "heater %", "cells/mL",
                   "growth 1/h", "mL", "alarms / hold reason"):
        table.add_column(column)
    for r in rows:
        notes = ", ".join(a["name"] for a in r["alarms"])
        if r["hold_reason"]:
            notes = f"{notes}; held: {r['hold_reason']}" if notes else f"held: {r['hold_reason']}"
        table.add_row(
            r["unit"], r["state"], r["step"] or "", r["run_id"] or "", r["batch"] or "",
            _number(r["temperature"], ".2f"), _number(r["temperature_target"], ".1f"),
            _number(r["heater_pct"], ".0f"), _number(r["density"], ".3g"),
            _number(r["growth_rate"], ".4f"), _number(r["volume_ml"], ".1f"), notes,
        )
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    return EXIT_OK


async def list_runs(session: Session) -> list[dict[str, Any]]:
    runs = []
    for unit, node in session.units.items():
        result_set = await node.get_child(
            [f"{session.ns}:ProgramManager", f"{session.ns}:ResultSet"]
        )
        for result in await result_set.get_children():
            run_id = (await result.read_browse_name()).Name
            state, protocol, parameters, runtime, batch = await read_paths(
                session, result,
                [("State",), ("ProgramTemplateId",), ("Parameters",), ("Runtime",),
                 ("BatchId",)],
            )
            runs.append({"run_id": run_id, "unit": unit, "state": state, "protocol": protocol,
                         "batch": batch or None, "parameters": json.loads(parameters or "{}"),
                         "runtime_s": _clean(runtime), "active": False})
    for row in await unit_status(session):
        if row["run_id"]:
            runs.append({"run_id": row["run_id"], "unit": row["unit"], "state": row["state"],
                         "protocol": row["protocol"], "batch": row["batch"] or None,
                         "parameters": None,
                         "runtime_s": row["runtime_s"], "active": True})
    return runs


async def cmd_runs(session: Session, args: argparse.Namespace) -> int:
    runs = await list_runs(session)
    if args.json:
        _print_json(runs)
        return EXIT_OK
    table = Table(title="Runs")
    for column in ("run", "unit", "state", "protocol", "hours"):
        table.add_column(column)
    for r in runs:
        hours = "" if r["runtime_s"] is None else f"{r['runtime_s'] / 3600:.2f}"
        table.add_row(r["run_id"], r["unit"], r["state"] + (" (active)" if r["active"] else ""),
                      r["protocol"], hours)
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    return EXIT_OK


def _s(text: str) -> ua.Variant:
    return ua.Variant(text, ua.VariantType.String)


async def cmd_load(session: Session, args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CtlError(f"cannot read {path}: {error}") from None
    template_id, errors = await call(session, unit_of(session, args.unit), "LoadProtocol",
                                     [_s(text)])
    if args.json:
        _print_json({"unit": args.unit, "template_id": template_id,
                     "errors": errors.splitlines()})
    if not template_id:
        if not args.json:
            for line in errors.splitlines():
                print(f"{path}:{line}", file=sys.stderr)
        return EXIT_REFUSED
    if not args.json:
        print(template_id)
    return EXIT_OK


def add_signing_options(parser: argparse.ArgumentParser) -> None:
    """Start and Abort sign `performed` in GMP mode (SPEC §12): with --sign (the password is
    asked on the terminal) or --sign-password-file F (scripts)."""
    parser.add_argument("--sign", action="store_true",
                        help="sign 'performed' (required in GMP mode); asks for the password")
    parser.add_argument("--sign-password-file", type=Path, metavar="F",
                        help="sign with the password on F's first line (implies --sign)")
    parser.add_argument("--comment", default="", help="a comment on the signature")


def performed_signature(args: argparse.Namespace) -> str | None:
    """The Signature argument, or None when the command is not to be signed."""
    if not (args.sign or args.sign_password_file is not None):
        return None
    from shuttled.cli.ctl_protocol import signing_password

    password = signing_password(args, getattr(args, "user", None))
    return json.dumps({"meaning": "performed", "password": password, "comment": args.comment})


async def cmd_start(session: Session, args: argparse.Namespace) -> int:
    parameters = json.dumps(dict(args.param))
    inputs = [_s(args.protocol or ""), _s(parameters), _s(args.reason)]
    signature = performed_signature(args)
    if args.batch or args.cartridge or signature is not None:  # else SPEC §5's three inputs
        inputs += [_s(args.batch or ""), _s(args.cartridge or ""), _s(signature or "")]
    (run_id,) = await call(session, unit_of(session, args.unit), "Start", inputs)
    if args.json:
        _print_json({"unit": args.unit, "run_id": run_id})
    else:
        print(run_id)
    return EXIT_OK


async def cmd_command(session: Session, args: argparse.Namespace) -> int:
    method = args.command.capitalize()
    inputs = [_s(args.reason)]
    if method == "Abort" and (signature := performed_signature(args)) is not None:
        inputs.append(_s(signature))
    await call(session, unit_of(session, args.unit), method, inputs)
    (state,) = await read_paths(session, unit_of(session, args.unit), [("State",)])
    if args.json:
        _print_json({"unit": args.unit, "command": method, "state": state})
    else:
        print(f"{args.unit}: {method} accepted, state {state}")
    return EXIT_OK


async def unlock_user(session: Session, args: argparse.Namespace) -> int:
    """`shuttlectl user unlock NAME` as a supervisor signed in to the daemon (SPEC §12)."""
    users = await session.instrument.get_child(f"{session.ns}:Users")
    await call(session, users, "UnlockUser", [_s(args.name), _s(args.reason)])
    print(f"unlocked {args.name}")
    return EXIT_OK


async def read_audit(session: Session) -> list[dict[str, Any]]:
    trail = await session.instrument.get_child(f"{session.ns}:AuditTrail")
    records: list[dict[str, Any]] = []
    first = 1
    while True:
        page, next_record = await call(session, trail, "Read",
                                       [ua.Variant(first, ua.VariantType.UInt32)])
        records.extend(json.loads(page))
        if not next_record:
            return records
        first = next_record


async def read_report(session: Session, run_id: str) -> bytes:
    """A run's report from the daemon, piece by piece (`Reports.Read`, report_methods.py)."""
    reports = await session.instrument.get_child(f"{session.ns}:Reports")
    html, offset = b"", 0
    while True:
        piece, following = await call(session, reports, "Read", [
            ua.Variant(run_id, ua.VariantType.String), ua.Variant(offset, ua.VariantType.UInt32),
        ])
        html += piece or b""
        if not following:
            return html
        offset = following


async def verify_online(session: Session) -> dict[str, Any]:
    trail = await session.instrument.get_child(f"{session.ns}:AuditTrail")
    (result,) = await call(session, trail, "Verify", [])
    return json.loads(result)


def print_audit_log(records: list[dict[str, Any]], as_json: bool) -> int:
    if as_json:
        _print_json(records)
        return EXIT_OK
    table = Table(title="Audit trail")
    for column in ("#", "time (UTC)", "user", "role", "unit", "method", "arguments", "reason",
                   "result"):
        table.add_column(column)
    for r in records:
        arguments = ", ".join(f"{k}={v}" for k, v in r["arguments"].items() if v not in ("", {}))
        result = r["result"] + (f": {r['detail']}" if r.get("detail") else "")
        table.add_row(str(r["seq"]), r["time"], r["user"], r["role"], r["unit"], r["method"],
                      arguments, r["reason"], result)
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    return EXIT_OK
