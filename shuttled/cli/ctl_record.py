"""`shuttlectl record show|review|release RUN_ID`: the electronic batch record (SPEC §12).

`show` writes `record.json`, `record.html` and, where Chromium is installed, `record.pdf` into a
folder (`-o DIR`, default `record-RUN_ID`): online through `Records.Read`, or offline from a
journal file (`--journal FILE`, `--config FILE`), read-only, like `shuttlectl report`. `review`
(supervisor or qa) and `release` (qa) sign the record as `--user`, with the password asked again
(or `--sign-password-file F`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from asyncua import ua

from shuttled.cli.common import EXIT_OK, fail
from shuttled.cli.ctl_client import CtlError, Session, call
from shuttled.cli.ctl_protocol import signing_password

RECORD_TIMEOUT_S = 300.0  # a long run's record, and the PDF, are made on demand


def add_parser(sub: argparse._SubParsersAction) -> None:
    record = sub.add_parser("record", help="the electronic batch record of a run: show, "
                            "review, release (SPEC §12)")
    actions = record.add_subparsers(dest="record_command", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="write record.json, record.html (and record.pdf)")
    show.add_argument("run_id", metavar="RUN_ID")
    show.add_argument("-o", "--output", type=Path, metavar="DIR",
                      help="folder to write into (default: record-RUN_ID)")
    where = show.add_mutually_exclusive_group()
    where.add_argument("--journal", type=Path, metavar="FILE", help="offline: this journal file")
    where.add_argument("--config", type=Path, metavar="FILE",
                       help="offline: the journal of this configuration's data directory")
    for name, meaning in (("review", "reviewed"), ("release", "released")):
        action = actions.add_parser(name, help=f"sign the record as {meaning}",
                                    allow_abbrev=False)
        action.add_argument("run_id", metavar="RUN_ID")
        action.add_argument("--comment", default="", help="a comment on the signature")
        action.add_argument("--sign-password-file", type=Path, metavar="F",
                            help="read the signing password from F's first line (scripts)")


def is_offline(args: argparse.Namespace) -> bool:
    return args.record_command == "show" and (args.journal is not None or args.config is not None)


def _folder(args: argparse.Namespace) -> Path:
    folder: Path = args.output or Path(f"record-{args.run_id}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CtlError(f"cannot create {folder}: {error}") from None
    return folder


def _written(folder: Path, pdf: bool) -> int:
    names = ["record.json", "record.html"] + (["record.pdf"] if pdf else [])
    print(f"wrote {', '.join(str(folder / n) for n in names)}")
    if not pdf:
        print("note: no PDF (Chromium is not installed where the record was made)",
              file=sys.stderr)
    return EXIT_OK


def show_offline(args: argparse.Namespace) -> int:
    from shuttled.cli.ctl_report import JOURNAL_NAME, ConfigUnavailable, daemon_config
    from shuttled.reports.batch_record import build_record
    from shuttled.reports.batch_record_html import render_record
    from shuttled.reports.batch_record_pdf import write_pdf
    from shuttled.reports.data import ReportUnavailable

    journal: Path | None = args.journal
    try:
        if journal is None:
            journal = daemon_config(args.config).data_dir / JOURNAL_NAME
        record = build_record(journal, args.run_id)
    except (ConfigUnavailable, ReportUnavailable) as error:
        return fail(str(error))
    try:
        folder = _folder(args)
        (folder / "record.json").write_text(json.dumps(record, indent=1, ensure_ascii=False))
        html = render_record(record)
        (folder / "record.html").write_text(html, encoding="utf-8")
    except (OSError, CtlError) as error:
        return fail(str(error))
    return _written(folder, write_pdf(html, folder / "record.pdf"))


async def run_online(session: Session, args: argparse.Namespace, user: str | None) -> int:
    records = await session.instrument.get_child(f"{session.ns}:Records")
    session.client.uaclient.protocol.timeout = RECORD_TIMEOUT_S
    run_id = ua.Variant(args.run_id, ua.VariantType.String)
    if args.record_command == "show":
        folder = _folder(args)
        pdf = True
        for kind in ("json", "html", "pdf"):
            try:
                (data,) = await call(session, records, "Read",
                                     [run_id, ua.Variant(kind, ua.VariantType.String)])
            except CtlError as error:
                if kind == "pdf" and "BadNotSupported" in error.message:
                    pdf = False
                    continue
                raise
            (folder / f"record.{kind}").write_bytes(data or b"")
        return _written(folder, pdf)
    meaning = "reviewed" if args.record_command == "review" else "released"
    signature = json.dumps({"meaning": meaning, "password": signing_password(args, user),
                            "comment": args.comment})
    method = "ReviewRecord" if args.record_command == "review" else "ReleaseRecord"
    (status,) = await call(session, records, method,
                           [run_id, ua.Variant(signature, ua.VariantType.String)])
    print(f"{args.run_id}: {status} (signed {meaning} by {user})")
    return EXIT_OK
