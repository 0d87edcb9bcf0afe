"""The end-of-run summary: one record per run, as a table for people and JSON for scripts.

The JSON keys are a contract (SPEC §1); `wall_s` is the only wall-clock field, so two runs with
the same seed give identical JSON apart from it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from rich.console import Console
from rich.table import Table

from shuttled.engine.unit_run import UnitRun
from shuttled.loop.control_loop import ControlLoop

WALL_CLOCK_FIELDS = ("wall_s",)


@dataclass(frozen=True)
class RunSummary:
    unit: str
    state: str
    run_id: str | None
    protocol: str | None
    phase: str | None
    hold_reason: str
    duration_h: float
    final_cells: float
    temp_mean: float | None
    temp_max_abs_dev: float
    temp_in_band_pct: float
    max_density_ratio: float
    media_ml: float
    alarms: list[str]
    wall_s: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def summarise(run: UnitRun, loop: ControlLoop, now: float, wall_s: float) -> RunSummary:
    stats = loop.statistics[run.unit_id]
    estimate = loop.estimates[run.unit_id]
    reading = loop.last_readings.get(run.unit_id)
    volume = reading.volume_ml if reading is not None and not math.isnan(reading.volume_ml) else 0.0
    in_vessel = estimate.density * volume if not math.isnan(estimate.density) else 0.0
    phase = run.phase
    return RunSummary(
        unit=run.unit_id,
        state=run.state.value,
        run_id=run.run_id,
        protocol=run.protocol.identity if run.protocol else None,
        phase=phase.name if phase else None,
        hold_reason=run.hold_reason,
        duration_h=round(run.run_time_s(now) / 3600.0, 4),
        final_cells=float(f"{in_vessel + stats.harvested_cells:.4g}"),
        temp_mean=None if math.isnan(stats.temp_mean) else round(stats.temp_mean, 3),
        temp_max_abs_dev=round(stats.max_abs_deviation, 3),
        temp_in_band_pct=round(stats.temp_in_band_pct, 2),
        max_density_ratio=round(stats.max_density_ratio, 3),
        media_ml=round(run.delivered_ul.get("media", 0.0) / 1000.0, 3),
        alarms=list(loop.alarm_history[run.unit_id]),
        wall_s=round(wall_s, 2),
    )


def print_table(summaries: list[RunSummary], console: Console) -> None:
    table = Table(title="Run summary")
    for column in (
        "unit",
        "state",
        "run",
        "duration",
        "final cells",
        "T mean",
        "max |ΔT|",
        "in band",
        "media",
        "alarms",
    ):
        table.add_column(
            column, justify="right" if column not in ("unit", "state", "run") else "left"
        )
    for s in summaries:
        style = "green" if s.state == "COMPLETE" else "red"
        table.add_row(
            s.unit,
            f"[{style}]{s.state}[/]" + (f" ({s.hold_reason})" if s.hold_reason else ""),
            s.run_id or "-",
            f"{s.duration_h:.2f} h",
            f"{s.final_cells:.3g}",
            "-" if s.temp_mean is None else f"{s.temp_mean:.2f} °C",
            f"{s.temp_max_abs_dev:.2f} K",
            f"{s.temp_in_band_pct:.1f} %",
            f"{s.media_ml:.1f} mL",
            ", ".join(s.alarms) or "-",
        )
    console.print(table)
