"""Pieces of the batch record read from the journal beyond the run report's data: the batch and
cartridge the run was bound to, its holds, its operator steps and its out-of-band intervals.

Each reads what the journal holds and nothing else; a journal from before a piece existed
(no batch columns, no operator steps) gives the empty answer, and the record says so.
"""

from __future__ import annotations

import json
import math
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shuttled.engine.statistics import TEMPERATURE_BAND_K, WARMED_UP_WITHIN_K
from shuttled.records.signatures import read_signatures
from shuttled.reports.data import ReportData
from shuttled.reports.html import EPOCH_PLAUSIBLE

HOLDING_STATES = ("HOLDING", "HELD")
RESUMING_STATES = ("RESTARTING", "RUNNING", "STOPPING", "STOPPED", "ABORTING", "ABORTED",
                   "COMPLETE")
OPERATOR_STEP_EVENT = "operator_step"


def utc_of(at: float | None) -> str | None:
    """UTC of a process time where process time is wall time (the service); None for a
    simulation's virtual time, which the record gives as hours since the start instead."""
    if at is None or not math.isfinite(at) or at < EPOCH_PLAUSIBLE:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def hours_of(at: float | None, data: ReportData) -> float | None:
    return None if at is None or not math.isfinite(at) else round(data.hours(at), 3)


def batch_of_run(journal: Path, run_id: str) -> tuple[str | None, str | None]:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT batch_id, cartridge_id FROM runs WHERE run_id = ?",
                         (run_id,)).fetchone()
    except sqlite3.OperationalError:  # a journal from before batches
        return None, None
    finally:
        db.close()
    return (row[0] or None, row[1] or None) if row else (None, None)


def holds_of(data: ReportData) -> list[dict[str, Any]]:
    """Each hold from the event that entered it to the one that left it (None: still held)."""
    holds: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for event in data.events:
        if event.kind != "state":
            continue
        if event.state in HOLDING_STATES and current is None:
            reason = event.detail.split(": ", 1)[-1]
            current = {"utc": utc_of(event.at), "at_h": hours_of(event.at, data),
                       "reason": reason, "by": event.user, "released_utc": None,
                       "released_at_h": None, "released_by": None}
            holds.append(current)
        elif event.state in RESUMING_STATES and current is not None:
            current["released_utc"], current["released_by"] = utc_of(event.at), event.user
            current["released_at_h"] = hours_of(event.at, data)
            current = None
    return holds


def operator_steps_of(data: ReportData, journal: Path) -> list[dict[str, Any]]:
    """Each operator step the run reached (SPEC §12): prompt, the values given, who performed
    and who verified it, with the signatures bound to it (engine/operator_steps.py journals an
    `operator_step` event per announcement, confirmation and verification)."""
    steps: dict[str, dict[str, Any]] = {}
    for event in data.events:
        if event.kind != OPERATOR_STEP_EVENT:
            continue
        try:
            detail = json.loads(event.detail)
        except ValueError:
            continue
        if not isinstance(detail, dict):
            continue
        key = str(detail.get("record_id") or f"{detail.get('phase')}/{detail.get('step')}")
        step = steps.setdefault(key, {
            "record_id": key, "phase": detail.get("phase"), "step": detail.get("step"),
            "prompt": detail.get("prompt"), "record": detail.get("record", []),
            "verify": bool(detail.get("verify")), "reached_h": hours_of(event.at, data),
            "values": {}, "performed": None, "verified": None, "auto": False})
        action = detail.get("action")
        if action in ("performed", "verified"):
            step[action] = {"by": detail.get("by"), "full_name": detail.get("full_name"),
                            "at_h": hours_of(event.at, data), "utc": utc_of(event.at),
                            "comment": detail.get("comment", "")}
            step["auto"] = step["auto"] or bool(detail.get("auto"))
        if action == "performed":
            step["values"] = detail.get("values") or {}
    signatures = _step_signatures(journal, data.run_id)
    for key, step in steps.items():
        step["signatures"] = [s.to_json() for s in signatures if s.record_id == key]
        step["complete"] = step["performed"] is not None and (
            not step["verify"] or step["verified"] is not None)
    return list(steps.values())


def _step_signatures(journal: Path, run_id: str) -> list:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        ids = [r[0] for r in db.execute(
            "SELECT DISTINCT record_id FROM signatures WHERE record_kind = 'operator_step'"
            " AND record_id LIKE ? ORDER BY seq", (f"{run_id}/%",))]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()
    found = []
    for record_id in ids:
        found.extend(read_signatures(journal, "operator_step", record_id))
    return found


def out_of_band_intervals(data: ReportData) -> list[dict[str, Any]]:
    """Intervals of the history where the temperature left the ±0.2 K band after it had
    settled on its setpoint (the summary's definition, engine/statistics.py)."""
    intervals: list[dict[str, Any]] = []
    setpoint, settled = math.nan, False
    current: dict[str, Any] | None = None
    for row in data.telemetry:
        target, measured = row.get("target"), row.get("temperature")
        if target is None or measured is None or math.isnan(measured) or math.isnan(target):
            continue
        if target != setpoint:
            setpoint, settled = target, False
        deviation = abs(measured - target)
        if not settled:
            settled = deviation <= WARMED_UP_WITHIN_K
            continue
        if deviation > TEMPERATURE_BAND_K:
            if current is None:
                current = {"from_at": row["at"], "to_at": row["at"], "max_deviation_k": 0.0}
                intervals.append(current)
            current["to_at"] = row["at"]
            current["max_deviation_k"] = max(current["max_deviation_k"], round(deviation, 3))
        else:
            if current is not None:
                current["to_at"] = row["at"]
            current = None
    return [{"from_utc": utc_of(i["from_at"]), "to_utc": utc_of(i["to_at"]),
             "from_h": hours_of(i["from_at"], data), "to_h": hours_of(i["to_at"], data),
             "minutes": round((i["to_at"] - i["from_at"]) / 60.0, 1),
             "max_deviation_k": i["max_deviation_k"]} for i in intervals]
