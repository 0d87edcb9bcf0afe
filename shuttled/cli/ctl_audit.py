"""`shuttlectl audit verify|log`: the audit trail from the daemon, or from a journal file offline.

`verify` names the first problem it finds (audit_verify.py): an edited, deleted, inserted or
reordered record, a tail cut off or a trail rewritten (held against the signed anchors), a
missing audit table, an anchors file that was edited. Offline, the anchors file and the
instrument's public key are taken from beside the journal (`audit-anchors`,
`instrument-key.pub.pem`), or from `--anchors FILE` and `--public-key FILE` — a copy of the public
key kept elsewhere is the stronger check, since whoever can edit the data directory can also
replace the key beside it. Exit 0 intact, 1 broken or unreadable input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shuttled.cli.common import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, fail

HEADLINES = {
    "truncated": "truncated",
    "missing_table": "missing",
    "anchor_invalid": "anchors invalid",
    "anchors_missing": "anchors missing",
    "unreadable": "unreadable",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    audit = sub.add_parser("audit", help="verify or list the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    for name, text in (("verify", "check the hash chain and the signed anchors; names the "
                        "first problem"), ("log", "list the records")):
        action = audit_sub.add_parser(name, help=text)
        action.add_argument("--journal", type=Path, metavar="FILE",
                            help="read this journal file offline instead of asking the daemon")
        action.add_argument("--json", action="store_true", help="print JSON for scripts")
    verify = audit_sub.choices["verify"]
    verify.add_argument("--anchors", type=Path, metavar="FILE",
                        help="with --journal: the signed anchors (default: audit-anchors beside "
                        "the journal)")
    verify.add_argument("--public-key", type=Path, metavar="FILE",
                        help="with --journal: the instrument's public key, PEM (default: "
                        "instrument-key.pub.pem beside the journal)")


def offline_options_misused(args: argparse.Namespace) -> int | None:
    """--anchors and --public-key mean something only for a journal file."""
    if args.journal is None and (getattr(args, "anchors", None) or
                                 getattr(args, "public_key", None)):
        return fail("--anchors and --public-key go with --journal FILE", EXIT_USAGE)
    return None


def run_offline(args: argparse.Namespace) -> int:
    from shuttled.cli.ctl_commands import print_audit_log
    from shuttled.records.audit import read_journal
    from shuttled.records.audit_verify import verify_journal
    from shuttled.records.instrument_key import InstrumentKeyError

    path: Path = args.journal
    if not path.is_file():
        return fail(f"no journal file {path}")
    if args.audit_command == "log":
        return print_audit_log([r.to_dict() for r in read_journal(path)], args.json)
    for option, given in (("--anchors", args.anchors), ("--public-key", args.public_key)):
        if given is not None and not given.is_file():
            return fail(f"{option}: no file {given}")
    try:
        result = verify_journal(path, args.anchors, args.public_key)
    except InstrumentKeyError as error:
        return fail(str(error))
    return print_verification(result.to_json(), args.json, str(path))


def print_verification(result: dict[str, Any], as_json: bool, where: str) -> int:
    if as_json:
        print(json.dumps(result))
    elif result["ok"]:
        anchor = result.get("last_anchor")
        anchored = (f"; anchored at record {anchor['count']} on {anchor['utc']} by key "
                    f"{anchor['key']}" if anchor else "; no anchor yet")
        print(f"audit trail of {where} intact: {result['records']} records, "
              f"head {result['head']}{anchored}")
        for note in result.get("notes", []):
            print(f"note: {note}", file=sys.stderr)
    else:
        kind = result.get("kind", "")
        headline = HEADLINES.get(kind) or f"broken at record {result['broken_record']}"
        if kind == "rewritten":
            headline = f"rewritten at record {result['broken_record']}"
        print(f"error: audit trail of {where} {headline}: {result['problem']}", file=sys.stderr)
    return EXIT_OK if result["ok"] else EXIT_REFUSED
