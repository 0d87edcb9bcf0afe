"""The parsers and the dispatch of shuttlectl's commands that talk to a daemon (SPEC §1, §5)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path

from shuttled.cli import ctl_audit, ctl_protocol, ctl_record, ctl_steps
from shuttled.cli import ctl_commands as commands
from shuttled.cli.common import EXIT_UNREACHABLE, fail, parameter_assignment
from shuttled.cli.ctl_client import (
    DEFAULT_ENDPOINT,
    CtlError,
    open_session,
    read_credentials,
)

ONLINE = {"status", "runs", "load", "start", "hold", "restart", "stop", "abort", "reset", "audit",
          "report", "protocol", "record", *ctl_steps.COMMANDS}
STATE_COMMANDS = ("hold", "restart", "stop", "abort", "reset")


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("SHUTTLECTL_ENDPOINT", DEFAULT_ENDPOINT),
        metavar="URL",
        help=f"the daemon's OPC UA endpoint (default $SHUTTLECTL_ENDPOINT or {DEFAULT_ENDPOINT})",
    )
    parser.add_argument("--user", metavar="NAME", help="user name (default: from the password "
                        "file, else an anonymous session)")
    parser.add_argument("--password-file", type=Path, metavar="F",
                        help="file holding 'user:password' (as shuttled simulate writes it) or "
                        "the password alone")
    parser.add_argument("--pki-dir", type=Path, metavar="DIR",
                        help="where shuttlectl keeps its client certificate "
                        "(default ~/.config/shuttlectl/pki)")
    parser.add_argument("--server-cert", type=Path, metavar="FILE",
                        default=os.environ.get("SHUTTLECTL_SERVER_CERT") or None,
                        help="the daemon's certificate (DER or PEM, e.g. a copy of its "
                        "<data_dir>/pki/own/cert.der): refuse any other before signing in "
                        "(default $SHUTTLECTL_SERVER_CERT)")


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _json(sub.add_parser("status", help="state and live values of every unit"))
    _json(sub.add_parser("runs", help="runs of every unit: ended ones and the active ones"))
    load = sub.add_parser("load", help="load a protocol on a unit (prints the template id)")
    load.add_argument("unit", metavar="UNIT")
    load.add_argument("file", type=Path, metavar="FILE")
    _json(load)
    start = sub.add_parser("start", help="start a loaded protocol on a unit")
    start.add_argument("unit", metavar="UNIT")
    start.add_argument("--protocol", metavar="ID",
                       help="template id (default: the protocol loaded last on the unit)")
    start.add_argument("--param", type=parameter_assignment, action="append", default=[],
                       metavar="NAME=VALUE", help="override a protocol parameter")
    start.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    start.add_argument("--batch", metavar="ID", help="the patient's chain-of-identity id "
                       "(e.g. an ISBT 128 DIN) the run is bound to; required in GMP mode")
    start.add_argument("--cartridge", metavar="ID", help="the id of the cartridge installed in "
                       "the unit, checked by the instrument; required in GMP mode")
    commands.add_signing_options(start)
    _json(start)
    for name in STATE_COMMANDS:
        command = sub.add_parser(name, help=f"{name.capitalize()} the run on a unit")
        command.add_argument("unit", metavar="UNIT")
        command.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
        if name == "abort":
            commands.add_signing_options(command)
        _json(command)
    ctl_audit.add_parser(sub)
    from shuttled.cli import ctl_report

    ctl_report.add_parser(sub)
    ctl_protocol.add_parsers(sub)
    ctl_record.add_parser(sub)
    ctl_steps.add_parsers(sub)


async def _online(args: argparse.Namespace) -> int:
    user, password = read_credentials(args.user, args.password_file)
    session = await open_session(
        args.endpoint, user, password, args.pki_dir, server_cert=args.server_cert
    )
    try:
        if args.command == "status":
            return await commands.cmd_status(session, args)
        if args.command == "runs":
            return await commands.cmd_runs(session, args)
        if args.command == "load":
            return await commands.cmd_load(session, args)
        if args.command == "start":
            return await commands.cmd_start(session, args)
        if args.command in STATE_COMMANDS:
            return await commands.cmd_command(session, args)
        if args.command == "protocol":
            return await ctl_protocol.run_online(session, args, user)
        if args.command == "record":
            return await ctl_record.run_online(session, args, user)
        if args.command in ctl_steps.COMMANDS:  # operator steps (SPEC §12)
            return await ctl_steps.run_online(session, args, user)
        if args.command == "user":  # `user unlock` by a supervisor online
            return await commands.unlock_user(session, args)
        if args.command == "report":
            from shuttled.cli.ctl_report import write_report_file

            return write_report_file(await commands.read_report(session, args.run_id), args)
        if args.command == "audit" and args.audit_command == "verify":
            result = await commands.verify_online(session)
            return ctl_audit.print_verification(result, args.json, args.endpoint)
        return commands.print_audit_log(await commands.read_audit(session), args.json)
    finally:
        with contextlib.suppress(Exception):  # the answer is already printed
            await asyncio.wait_for(session.client.disconnect(), 5)


def run(args: argparse.Namespace) -> int:
    from shuttled.service.log_setup import configure_logging

    configure_logging("warning")
    try:
        if args.command == "audit":
            misused = ctl_audit.offline_options_misused(args)
            if misused is not None:
                return misused
            if args.journal is not None:
                return ctl_audit.run_offline(args)
        if args.command == "record" and ctl_record.is_offline(args):
            return ctl_record.show_offline(args)
        if args.command == "report" and (args.journal or args.config):  # see ctl_report.py
            from shuttled.cli.ctl_report import report_offline

            return report_offline(args)
        return asyncio.run(_online(args))
    except CtlError as error:
        return fail(error.message, error.code)
    except (OSError, TimeoutError) as error:
        return fail(f"lost the connection to {args.endpoint}: {error}", EXIT_UNREACHABLE)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
