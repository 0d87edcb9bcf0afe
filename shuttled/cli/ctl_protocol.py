"""`shuttlectl protocol list|show|submit|approve|retire|export|import` and `site-key` (SPEC §12).

The lifecycle commands sign: the signer is `--user` (the session's user), and the password is
asked again on the terminal at the moment of signing, or read from `--sign-password-file F` in
scripts. It travels only inside the encrypted session's method call; shuttlectl writes it
nowhere. `site-key` prints this instrument's public key, which a receiving site gives to
`protocol import --trust`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from asyncua import ua
from rich.console import Console
from rich.table import Table

from shuttled.cli.common import EXIT_OK, fail
from shuttled.cli.ctl_client import CtlError, Session, call

EXPORT_TIMEOUT_S = 900.0  # the export runs the instrument's digital twin on the protocol
SIGNING = {"submit": ("SubmitProtocol", "authored"), "approve": ("ApproveProtocol", "approved"),
           "retire": ("RetireProtocol", "approved")}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    protocol = sub.add_parser("protocol", help="the protocol library: lifecycle, approval, "
                              "tech-transfer packages (SPEC §12)")
    actions = protocol.add_subparsers(dest="protocol_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every protocol with its state and signatures")
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    show = actions.add_parser("show", help="one protocol: text, history, signatures")
    show.add_argument("template_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    for name, (_method, meaning) in SIGNING.items():
        action = actions.add_parser(name, help=f"{name} a protocol (signs: {meaning})",
                                    allow_abbrev=False)
        action.add_argument("template_id", metavar="ID")
        if name == "retire":
            action.add_argument("--reason", required=True, help="why (audit trail)")
        action.add_argument("--comment", default="", help="a comment on the signature")
        action.add_argument("--sign-password-file", type=Path, metavar="F",
                            help="read the signing password from F's first line (scripts); "
                            "default: ask on the terminal")
        action.add_argument("--json", action="store_true", help="print JSON for scripts")
    export = actions.add_parser("export", help="write a signed tech-transfer package")
    export.add_argument("template_id", metavar="ID")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.shuttlepkg")
    imported = actions.add_parser("import", help="verify a package and load it here as draft")
    imported.add_argument("file", type=Path, metavar="FILE.shuttlepkg")
    imported.add_argument("--trust", type=Path, metavar="PUBKEY_FILE",
                          help="the sending instrument's public key (its `shuttlectl site-key`); "
                          "default: the daemon's <data_dir>/trusted-sites/*.pem")
    imported.add_argument("--json", action="store_true", help="print JSON for scripts")
    site_key = sub.add_parser("site-key", help="print this instrument's public key (PEM)")
    site_key.add_argument("--data-dir", type=Path, metavar="DIR",
                          help="the daemon's data directory (default: from the configuration)")
    site_key.add_argument("--config", type=Path, metavar="FILE",
                          help="the daemon's configuration (default $SHUTTLED_CONFIG or "
                          "/etc/shuttled/shuttled.toml)")


def signing_password(args: argparse.Namespace, user: str | None) -> str:
    path: Path | None = args.sign_password_file
    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise CtlError(f"cannot read the signing password file {path}: {error}") from None
        if not lines or not lines[0]:
            raise CtlError(f"{path} holds no password on its first line")
        return lines[0]
    if not sys.stdin.isatty():
        raise CtlError("no terminal to ask for the signing password on: give "
                       "--sign-password-file F")
    return getpass.getpass(f"Password of {user or 'the signer'} to sign: ")


def _s(text: str) -> ua.Variant:
    return ua.Variant(text, ua.VariantType.String)


async def _protocols(session: Session):
    return await session.instrument.get_child(f"{session.ns}:Protocols")


async def run_online(session: Session, args: argparse.Namespace, user: str | None) -> int:
    node = await _protocols(session)
    action = args.protocol_command
    if action == "list":
        (text,) = await call(session, node, "ListProtocols", [])
        return _print_listing(json.loads(text), args.json)
    if action == "show":
        (text,) = await call(session, node, "ShowProtocol", [_s(args.template_id)])
        return _print_one(json.loads(text), args.json)
    if action in SIGNING:
        method, meaning = SIGNING[action]
        password = signing_password(args, user)
        signature = json.dumps({"meaning": meaning, "password": password,
                                "comment": args.comment})
        inputs = [_s(args.template_id)] + ([_s(args.reason)] if action == "retire" else [])
        (state,) = await call(session, node, method, [*inputs, _s(signature)])
        if args.json:
            print(json.dumps({"template_id": args.template_id, "state": state}))
        else:
            print(f"{args.template_id}: {state} (signed {meaning} by {user})")
        return EXIT_OK
    if action == "export":
        session.client.uaclient.protocol.timeout = EXPORT_TIMEOUT_S
        (package,) = await call(session, node, "ExportProtocol", [_s(args.template_id)])
        try:
            args.output.write_text(package, encoding="utf-8")
        except OSError as error:
            raise CtlError(f"cannot write {args.output}: {error}") from None
        print(f"wrote {args.output}")
        return EXIT_OK
    return await _import(session, node, args)


async def _import(session: Session, node: Any, args: argparse.Namespace) -> int:
    try:
        package = args.file.read_text(encoding="utf-8")
        trusted = args.trust.read_text(encoding="utf-8") if args.trust else ""
    except (OSError, UnicodeDecodeError) as error:
        raise CtlError(f"cannot read {error.filename if hasattr(error, 'filename') else ''}: "
                       f"{error}") from None
    (identity,) = await call(session, node, "ImportProtocol", [_s(package), _s(trusted)])
    (text,) = await call(session, node, "ShowProtocol", [_s(identity)])
    described = json.loads(text)
    if args.json:
        print(json.dumps(described | {"text": None}))
        return EXIT_OK
    origin = described.get("origin", {})
    print(f"imported {identity} as {described['state']} from {origin.get('instrument_id')} "
          f"(key {origin.get('key_id')}, {origin.get('state_at_origin')} there)")
    for signed in origin.get("signatures", []):
        print(f"  origin: {signed['meaning']} by {signed['full_name']} ({signed['signer']}) "
              f"{signed['utc']}")
    print("  it needs this site's own submission and QA approval before it can start in GMP mode")
    return EXIT_OK


def _signature_lines(entry: dict[str, Any]) -> list[str]:
    lines = []
    for s in entry.get("signatures", []):
        mark = " [BROKEN: the text changed after signing]" if s.get("status") == "broken" else ""
        comment = f" — {s['comment']}" if s.get("comment") else ""
        lines.append(f"{s['meaning']} by {s['full_name']} ({s['signer']}) {s['utc']}"
                     f"{comment}{mark}")
    return lines


def _print_listing(entries: list[dict[str, Any]], as_json: bool) -> int:
    if as_json:
        print(json.dumps(entries))
        return EXIT_OK
    table = Table(title="Protocols")
    for column in ("identity", "state", "signatures", "origin"):
        table.add_column(column)
    for entry in entries:
        state = entry["state"] + ("" if entry.get("intact", True) else " (BROKEN)")
        origin = entry.get("origin", {}).get("instrument_id", "") or "here"
        table.add_row(entry["identity"], state, "\n".join(_signature_lines(entry)) or "-", origin)
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    return EXIT_OK


def _print_one(entry: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(entry))
        return EXIT_OK
    print(f"{entry['identity']}: {entry['state']}"
          + ("" if entry.get("intact", True) else " — BROKEN: the stored text changed"))
    for step in entry.get("history", []):
        print(f"  {step['utc']}  {step['from_state'] or '-'} → {step['to_state']}  "
              f"{step['user']}: {step['reason']}")
    for line in _signature_lines(entry):
        print(f"  signed: {line}")
    origin = entry.get("origin") or {}
    if origin:
        print(f"  origin: {origin.get('instrument_id')} (key {origin.get('key_id')}), "
              f"imported by {origin.get('imported_by')} {origin.get('imported_utc')}")
        for line in _signature_lines({"signatures": origin.get("signatures", [])}):
            print(f"  signed at origin: {line}")
    print()
    print(entry.get("text", ""))
    return EXIT_OK


def run_site_key(args: argparse.Namespace) -> int:
    from shuttled.cli.ctl_report import ConfigUnavailable, daemon_config
    from shuttled.records.instrument_key import InstrumentKeyError, load_public_key

    data_dir = args.data_dir
    if data_dir is None:
        try:
            data_dir = daemon_config(args.config).data_dir
        except ConfigUnavailable as error:
            return fail(f"{error} (give --data-dir DIR or --config FILE)")
    try:
        key = load_public_key(data_dir)
    except (InstrumentKeyError, OSError) as error:
        return fail(f"no instrument key in {data_dir}: {error} (the daemon creates it on its "
                    "first start)")
    print(f"# instrument key {key.key_id}", file=sys.stderr)
    sys.stdout.write(key.pem.decode("ascii"))
    return EXIT_OK
