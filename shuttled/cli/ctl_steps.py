"""`shuttlectl confirm UNIT --value NAME=VALUE …` and `shuttlectl verify UNIT` (SPEC §12).

Operator steps: the run on UNIT waits at a `confirm` step of its protocol until someone confirms
it with the values it records (a `performed` signature) and, where the step asks for it, until a
second, different person verifies it (`verified`). Both sign as the session's user, with the
password given again now (`--sign-password-file F` in scripts, else asked on the terminal).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from asyncua import ua

from shuttled.cli.common import EXIT_OK, text_assignment
from shuttled.cli.ctl_client import CtlError, Session, call, read_paths, unit_of
from shuttled.cli.ctl_protocol import signing_password

COMMANDS = ("confirm", "verify")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    confirm = sub.add_parser("confirm", help="confirm the operator step a unit waits at "
                             "(signs: performed)")
    confirm.add_argument("--value", type=text_assignment, action="append", default=[],
                         metavar="NAME=VALUE", help="a value the step records, e.g. lot=ML-123 "
                         "(repeat for each name it records)")
    verify = sub.add_parser("verify", help="verify another user's confirmation of the operator "
                            "step a unit waits at (signs: verified)")
    for parser in (confirm, verify):
        parser.add_argument("unit", metavar="UNIT")
        parser.add_argument("--comment", default="", help="a comment on the signature")
        parser.add_argument("--sign-password-file", type=Path, metavar="F",
                            help="read the signing password from F's first line (scripts); "
                            "default: ask on the terminal")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def _s(text: str) -> ua.Variant:
    return ua.Variant(text, ua.VariantType.String)


async def run_online(session: Session, args: argparse.Namespace, user: str | None) -> int:
    unit = unit_of(session, args.unit)
    (prompt,) = await read_paths(session, unit, [("ProgramManager", "ActiveProgram",
                                                  "CurrentStepName")])
    meaning = "performed" if args.command == "confirm" else "verified"
    values = dict(getattr(args, "value", []))
    if len(values) != len(getattr(args, "value", [])):
        raise CtlError("each --value NAME may be given once")
    password = signing_password(args, user)
    signature = _s(json.dumps({"meaning": meaning, "password": password,
                               "comment": args.comment}))
    if args.command == "confirm":
        (status,) = await call(session, unit, "Confirm", [_s(json.dumps(values)), signature])
    else:
        (status,) = await call(session, unit, "Verify", [signature])
    if args.json:
        print(json.dumps({"unit": args.unit, "step": prompt, "values": values,
                          "signed": meaning, "by": user, "status": status}))
    else:
        then = "a second person must now verify it" if status == "verify" else "the run goes on"
        print(f"{args.unit}: '{prompt}' {meaning} by {user}; {then}")
    return EXIT_OK
