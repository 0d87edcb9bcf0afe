"""`shuttlectl analyze FILE --patients N`: the protocol over N virtual patients.

The arguments are `analyze`'s (ctl_analyze.py adds these and hands over when --patients is
given). The work is shuttled/simulation/variability.py; here: where to run it (a local process
pool or `--scheduler` a Dask cluster), a progress bar on stderr for people, the aggregate as a
table, as one JSON object (`--json`) and as a self-contained HTML file (`--html`).

Exit codes: 0 when the analysis ran, whatever share of the patients completed (that share is the
answer, not a failure of the command); 1 for a protocol or parameter that analyze refuses, or an
error in a patient's run; 2 for bad usage (`--patients 0`); 3 when the Dask scheduler cannot be
reached.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shuttled.cli.common import (
    EXIT_OK,
    EXIT_UNREACHABLE,
    fail,
    positive_int,
    protocol_refused,
)


def add_arguments(analyze: argparse.ArgumentParser) -> None:
    group = analyze.add_argument_group(
        "patient variability",
        "Run FILE over N virtual patients (cells, growth, viability, site; "
        "docs/patient_variability.md) and report the share that completes and the spread.",
    )
    group.add_argument("--patients", type=positive_int, metavar="N",
                       help="number of virtual patients (seeded by --seed)")  # fmt: skip
    where = group.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_int, metavar="K",
                       help="local worker processes (default: one per CPU)")  # fmt: skip
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on a Dask cluster, e.g. tcp://10.0.0.5:8786")  # fmt: skip
    group.add_argument("--html", type=Path, metavar="FILE",
                       help="also write a self-contained HTML report with histograms")  # fmt: skip


def wants_variability(args: argparse.Namespace) -> bool:
    return args.patients is not None


def run(args: argparse.Namespace) -> int:
    from protocols import ParameterError, ProtocolInvalid
    from shuttled.reports.variability_html import write_variability
    from shuttled.simulation.variability import VariabilityJob, aggregate
    from shuttled.simulation.variability_runner import (
        PatientFailed,
        SchedulerUnreachable,
        run_dask,
        run_local,
    )

    try:
        job = VariabilityJob.from_file(args.file, dict(args.param), args.seed, args.patients)
    except (ProtocolInvalid, ParameterError, ValueError) as error:
        return protocol_refused(error)
    started = time.monotonic()
    try:
        with _progress(job.patients, enabled=not args.json and sys.stderr.isatty()) as on_done:
            if args.scheduler:
                runs = run_dask(job, args.scheduler, on_done)
            else:
                runs = run_local(job, args.workers, on_done)
    except SchedulerUnreachable as error:
        return fail(str(error), EXIT_UNREACHABLE)
    except PatientFailed as error:  # which patient and why, not a traceback
        return fail(f"the analysis of {error}")
    except KeyboardInterrupt:
        return fail("interrupted")
    report = aggregate(job, runs)
    if args.html:
        try:
            write_variability(report, args.html)
        except OSError as error:
            return fail(f"cannot write {args.html}: {error.strerror or error}")
    if args.json:
        print(json.dumps(report))
    else:
        _print(report, time.monotonic() - started, args.scheduler or "local processes")
        if args.html:
            Console().print(f"HTML report: {args.html}")
    return EXIT_OK


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on stderr while patients finish (people only: not for --json, nor
    when stderr is a log file)."""
    if not enabled:
        yield None
        return
    columns = (TextColumn("virtual patients"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("patients", total=total)
        yield lambda _index: progress.advance(task)


def _print(report: dict, wall_s: float, where: str) -> None:
    console = Console()
    share = report["complete_share"]
    style = "green" if share == 1 else "red"
    states = ", ".join(f"{state} {count}" for state, count in report["final_states"].items())
    console.print(
        f"{report['protocol']}: {report['patients']} virtual patients (seed {report['seed']}): "
        f"[{style}]{share * 100:.1f} % COMPLETE[/] ({states})"
    )
    table = Table(title="spread over patients")
    for column in ("", "P10", "P50", "P90"):
        table.add_column(column, justify="right")
    for key, label, fmt in (("duration_h", "duration (h)", ".1f"),
                            ("final_cells", "final cells", ".3g"),
                            ("media_ml", "media (mL)", ".0f")):  # fmt: skip
        table.add_row(label, *(format(report[key][p], fmt) for p in ("p10", "p50", "p90")))
    console.print(table)
    if report["violations"]:
        violations = Table(title="limit violations")
        for column in ("violation (numbers as N)", "patients", "share"):
            violations.add_column(column, justify="left" if column.startswith("v") else "right")
        for v in report["violations"]:
            violations.add_row(v["kind"], str(v["count"]), f"{v['share'] * 100:.1f} %")
        console.print(violations)
    else:
        console.print("[green]no limit violated by any patient[/]")
    sampled = Table(title="sampled patient parameters")
    for column in ("parameter", "min", "P50", "max"):
        sampled.add_column(column, justify="left" if column == "parameter" else "right")
    for name, values in report["sampled"].items():
        sampled.add_row(name, *(f"{values[k]:.4g}" for k in ("min", "p50", "max")))
    console.print(sampled)
    console.print(f"[dim]{report['patients']} patients on {where} in {wall_s:.1f} s[/]")
