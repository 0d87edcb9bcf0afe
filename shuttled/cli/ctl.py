"""`shuttlectl`: the operator's command line.

Offline commands (validate, analyze, `audit --journal`, report, user) work on files; the others
talk to a running daemon over its OPC UA operator interface (SPEC §5), see ctl_online.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from protocols import validate_files
from shuttled.cli import ctl_alarms, ctl_analyze, ctl_online, ctl_protocol, ctl_users
from shuttled.cli.common import EXIT_OK, EXIT_REFUSED, add_version


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shuttlectl", description="Operate a Cell Shuttle instrument and check protocols."
    )
    add_version(parser, "shuttlectl")
    ctl_online.add_global_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate = commands.add_parser(
        "validate", help="check protocol files offline (exit 1 and FILE:LINE:COL: message on error)"
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.add_argument("--json", action="store_true", help="print the errors as JSON")
    ctl_analyze.add_parser(commands)
    ctl_online.add_parsers(commands)
    ctl_users.add_parser(commands)
    ctl_alarms.add_parsers(commands)
    return parser


def run_validate(args: argparse.Namespace) -> int:
    errors = validate_files(args.files)
    if args.json:
        print(
            json.dumps(
                [
                    {"file": e.file, "line": e.line, "col": e.col, "message": e.message}
                    for e in errors
                ]
            )
        )
    else:
        for error in errors:
            print(error, file=sys.stderr)
        if not errors:
            for path in args.files:
                print(f"{path}: valid")
    return EXIT_REFUSED if errors else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "validate":
        return run_validate(args)
    if args.command == "analyze":
        return ctl_analyze.run(args)
    if args.command == "user":
        if ctl_users.is_online(args):
            return ctl_online.run(args)
        return ctl_users.run(args)
    if args.command == "site-key":
        return ctl_protocol.run_site_key(args)
    if args.command in ctl_alarms.COMMANDS:
        return ctl_alarms.run(args)
    if args.command in ctl_online.ONLINE:
        return ctl_online.run(args)
    return EXIT_REFUSED  # pragma: no cover - argparse requires a known command


if __name__ == "__main__":
    sys.exit(main())
