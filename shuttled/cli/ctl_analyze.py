"""`shuttlectl analyze FILE`: the protocol's dry run on the digital twin, for people and scripts."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from shuttled.cli import ctl_variability
from shuttled.cli.common import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    fail,
    parameter_assignment,
    protocol_refused,
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    analyze = commands.add_parser(
        "analyze",
        help="dry-run a protocol on the digital twin (offline)",
        description="Run FILE on one unit of the digital twin (same engine, control loop and "
        "drivers, virtual clock): phase timeline, duration, peak volume, media used, final cell "
        "count and every limit the protocol would violate. Exit 1 if it would not COMPLETE.",
    )
    analyze.add_argument("file", type=Path, metavar="FILE")
    analyze.add_argument(
        "--param",
        type=parameter_assignment,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a protocol parameter",
    )
    analyze.add_argument("--seed", type=int, default=0,
                         help="seed of the twin's sensor noise (with --patients: of the patients)")
    analyze.add_argument("--json", action="store_true", help="print the analysis as JSON")
    ctl_variability.add_arguments(analyze)


def run(args: argparse.Namespace) -> int:
    from protocols import ParameterError, ProtocolInvalid
    from shuttled.engine.operations import OperationRefused
    from shuttled.service.log_setup import configure_logging
    from shuttled.simulation.analyze import analyze

    configure_logging("error")
    if ctl_variability.wants_variability(args):
        return ctl_variability.run(args)
    if args.workers or args.scheduler or args.html:
        return fail("--workers, --scheduler and --html need --patients N", EXIT_USAGE)
    try:
        result = asyncio.run(analyze(args.file, dict(args.param), seed=args.seed))
    except (ProtocolInvalid, ParameterError, OperationRefused, ValueError) as error:
        return protocol_refused(error)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        _print(result)
    return EXIT_OK if not result.violations else EXIT_REFUSED


def _print(result) -> None:
    console = Console()
    table = Table(title=f"{result.protocol}: predicted timeline")
    for column in ("phase", "start", "end", "ended by"):
        table.add_column(column)
    for phase in result.phases:
        end = "-" if phase.end_h is None else f"{phase.end_h:.1f} h"
        table.add_row(phase.name, f"{phase.start_h:.1f} h", end, phase.ended_by)
    console.print(table)
    _print_operator_steps(console, result.operator_steps)
    console.print(
        f"final state {result.final_state} after {result.duration_h:.1f} h "
        f"({result.duration_h / 24:.1f} d); peak volume {result.peak_volume_ml:.0f} mL; "
        f"media {result.media_ml:.0f} mL; final cells {result.final_cells:.3g}; "
        f"temperature in band {result.temp_in_band_pct:.1f} %"
    )
    for violation in result.violations:
        console.print(f"[red]violation:[/] {violation}")
    if not result.violations:
        console.print("[green]no limit violated[/]")


def _print_operator_steps(console: Console, steps: list[dict]) -> None:
    """Where the run will wait for people (SPEC §12); the twin answered at once, people will not."""
    if not steps:
        return
    table = Table(title="operator steps: the run waits for people here")
    for column in ("at", "phase", "prompt", "records", "2nd person verifies"):
        table.add_column(column)
    for step in steps:
        table.add_row(f"{step['at_h']:.1f} h", step["phase"], step["prompt"],
                      ", ".join(step["record"]) or "-", "yes" if step["verify"] else "no")
    console.print(table)
    console.print(f"{len(steps)} operator step(s), answered by the twin at once (auto); the "
                  "time people take adds to the duration")
