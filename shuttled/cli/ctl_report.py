"""`shuttlectl report RUN_ID [-o FILE.html]`: a run's self-contained HTML report.

By default the daemon renders it from its journal and hands it over the operator interface
(`Reports.Read`, an extension of SPEC §5, audited), like every other command of SPEC §1. Offline,
the same report is made from a journal file (SPEC §10), read-only: `--journal FILE` (a copy for
QA), or the journal in the data directory of a daemon configuration (`--config FILE`), so it also
works on the instrument's PC without signing in.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from shuttled.cli.common import EXIT_OK, fail

JOURNAL_NAME = "journal.sqlite3"


class ConfigUnavailable(Exception):
    """The daemon's configuration cannot be read (the message says why)."""


def daemon_config(config: Path | None):  # -> DaemonConfig, imported late (numba)
    """The daemon's configuration: `--config`, else $SHUTTLED_CONFIG, else the default path."""
    from shuttled.service.config_file import DEFAULT_CONFIG_PATH, ConfigError, load_config

    path = config or Path(os.environ.get("SHUTTLED_CONFIG", DEFAULT_CONFIG_PATH))
    try:
        return load_config(path)
    except ConfigError as error:
        raise ConfigUnavailable(str(error)) from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report",
        help="write a run's report as one self-contained HTML file",
        description="Write a run's report (plots, protocol and parameters, state timeline with "
        "users and reasons, alarms, audit records): from the daemon over OPC UA, or from a "
        "journal file with --journal or --config.",
    )
    report.add_argument("run_id", metavar="RUN_ID")
    report.add_argument("-o", "--output", type=Path, metavar="FILE.html",
                        help="where to write it (default RUN_ID.html here)")
    where = report.add_mutually_exclusive_group()
    where.add_argument("--journal", type=Path, metavar="FILE",
                       help="the journal file to read (e.g. a copy for QA)")
    where.add_argument("--config", type=Path, metavar="FILE",
                       help="a daemon configuration whose data directory holds the journal "
                       "(read offline)")


def write_report_file(html: bytes, args: argparse.Namespace) -> int:
    """The report fetched from the daemon, written whole or not at all."""
    output: Path = args.output or Path(f"{args.run_id}.html")
    temporary = output.with_name(output.name + ".tmp")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(html)
        temporary.replace(output)
    except OSError as error:
        return fail(f"cannot write {output}: {error}")
    print(output)
    return EXIT_OK


def report_offline(args: argparse.Namespace) -> int:
    from shuttled.reports.data import ReportUnavailable
    from shuttled.reports.html import write_report

    journal: Path | None = args.journal
    if journal is None:
        try:
            journal = daemon_config(args.config).data_dir / JOURNAL_NAME
        except ConfigUnavailable as error:
            return fail(f"{error} (give --journal FILE or --config FILE)")
    output: Path = args.output or Path(f"{args.run_id}.html")
    try:
        write_report(journal, args.run_id, output)
    except ReportUnavailable as error:
        return fail(str(error))
    except OSError as error:
        return fail(f"cannot write {output}: {error}")
    print(output)
    return EXIT_OK
