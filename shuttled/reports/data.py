"""Everything a run report shows, read from the journal file alone (read-only).

The report is evidence for a batch record, so it is built only from what was durably recorded
— the run row with its exact protocol text and parameters, the run's events, the telemetry
history (report_history.py) and the hash-chained audit trail — never from a daemon's memory.
The file is opened read-only, so a report can be made while the daemon is writing (WAL) and
cannot change the record it describes.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocols import ProtocolInvalid, load_protocol_text
from protocols.model import Protocol
from shuttled.records.alarm_journal import alarm_events_of_run
from shuttled.records.audit import AuditRecord, read_journal
from shuttled.records.journal import TELEMETRY_COLUMNS
from shuttled.records.protocol_library import read_entry
from shuttled.records.signatures import Signature, canonical_sha256, read_signatures
from shuttled.reports.audit_anchor import AnchorSummary, latest_anchor

PHASE_EVENT = re.compile(r"^phase (?P<name>\S+) at ")
TRANSFER_START = re.compile(
    r"^(?P<kind>transfer|dilution) (?P<pump>\S+) (?P<ml>[0-9.]+) mL(?: started| \()"
)
TRANSFER_DONE = re.compile(r"^(?P<kind>transfer|dilution) (?P<pump>\S+) done: (?P<ml>[0-9.]+) mL")


class ReportUnavailable(Exception):
    """No report can be made (the message says why, for the operator)."""


@dataclass(frozen=True)
class Event:
    at: float
    kind: str
    state: str
    detail: str
    user: str


@dataclass
class TransferRecord:
    kind: str  # "transfer" (a protocol step) or "dilution" (density control)
    pump: str
    requested_ml: float
    started_at: float
    ended_at: float | None = None
    delivered_ml: float | None = None


@dataclass
class AlarmRecord:
    name: str
    raised_at: float
    cleared_at: float | None = None  # None: still active when the history ends
    detail: str = ""


@dataclass
class ReportData:
    run_id: str
    unit: str
    identity: str
    protocol_text: str
    protocol: Protocol | None
    parameters: dict[str, float]
    started_at: float
    final_state: str
    ended_at: float
    events: list[Event]
    telemetry: list[dict[str, Any]]
    audit: list[AuditRecord]
    transfers: list[TransferRecord] = field(default_factory=list)
    alarms: list[AlarmRecord] = field(default_factory=list)
    phases: list[tuple[str, float, float]] = field(default_factory=list)  # name, start, end
    anchor: AnchorSummary | None = None  # the audit trail's latest signed anchor
    # Every alarm transition of the run (SPEC §13): raised, acknowledged by whom with which
    # comment, shelved, cleared — from the journal's alarm_events, oldest first.
    alarm_lifecycle: list[dict[str, Any]] = field(default_factory=list)
    # The protocol's signatures (SPEC §12: authored, approved, ...), checked against the text as
    # run, and its lifecycle state in the library now ("" where the journal has no library).
    approvals: list[Signature] = field(default_factory=list)
    protocol_state: str = ""
    # Chain of identity (SPEC §12): the batch and cartridge the run was bound to at Start; None
    # for an unbound run or a journal from before batches.
    batch: str | None = None
    cartridge: str | None = None

    @property
    def run_text_sha256(self) -> str:
        return canonical_sha256(self.protocol_text)

    def hours(self, at: float) -> float:
        """Process time as hours since the run started (the plots' x axis)."""
        return (at - self.started_at) / 3600.0


def _connect(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise ReportUnavailable(f"no journal file {path}")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db.execute("SELECT 1 FROM sqlite_master").fetchall()
    except sqlite3.DatabaseError as error:
        raise ReportUnavailable(f"{path} is not a journal: {error}") from None
    return db


def _rows(db: sqlite3.Connection, sql: str, args: tuple) -> list[tuple]:
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []  # a journal from before that table existed: the report says what it lacks


def load_report_data(journal: Path, run_id: str) -> ReportData:
    db = _connect(journal)
    try:
        run = _rows(
            db,
            "SELECT unit, protocol_identity, protocol_text, parameters, started_at, final_state"
            " FROM runs WHERE run_id = ?",
            (run_id,),
        )
        if not run:
            known = [r[0] for r in _rows(db, "SELECT run_id FROM runs ORDER BY started_at", ())]
            hint = f" (runs: {', '.join(known[-5:])})" if known else " (it holds no runs)"
            raise ReportUnavailable(f"no run {run_id!r} in {journal}{hint}")
        unit, identity, text, parameters, started_at, final_state = run[0]
        bound = _rows(db, "SELECT batch_id, cartridge_id FROM runs WHERE run_id = ?", (run_id,))
        batch, cartridge = bound[0] if bound else (None, None)
        events = [
            Event(*row)
            for row in _rows(
                db,
                "SELECT at, kind, state, detail, user FROM events WHERE run_id = ? ORDER BY id",
                (run_id,),
            )
        ]
        telemetry = [
            dict(zip(TELEMETRY_COLUMNS, row, strict=True))
            for row in _rows(
                db,
                f"SELECT {', '.join(TELEMETRY_COLUMNS)} FROM telemetry WHERE run_id = ?"
                " ORDER BY at, rowid",
                (run_id,),
            )
        ]
    finally:
        db.close()
    try:
        protocol: Protocol | None = load_protocol_text(text, f"<{identity}>")
    except ProtocolInvalid:
        protocol = None  # still show the text and what was recorded
    last_state = events[-1].state if events else "UNKNOWN"
    ends = [e.at for e in events] + [t["at"] for t in telemetry] + [started_at]
    data = ReportData(
        run_id=run_id,
        unit=unit,
        identity=identity,
        protocol_text=text,
        protocol=protocol,
        parameters=json.loads(parameters),
        started_at=started_at,
        final_state=final_state or last_state,
        ended_at=max(ends),
        events=events,
        telemetry=telemetry,
        audit=run_audit_records(read_journal(journal), unit, run_id, identity),
        anchor=latest_anchor(journal),
        batch=batch,
        cartridge=cartridge,
    )
    data.phases = _phases(events, data.ended_at)
    data.transfers = _transfers(events)
    data.alarms = _alarms(events, telemetry, data.ended_at)
    data.alarm_lifecycle = alarm_events_of_run(journal, run_id)
    data.approvals = read_signatures(journal, "protocol", identity)
    entry = read_entry(journal, identity)
    data.protocol_state = entry.state if entry is not None else ""
    return data


def run_audit_records(
    records: list[AuditRecord], unit: str, run_id: str, identity: str
) -> list[AuditRecord]:
    """The audit records that belong to one run: the load of its protocol, its Start, and every
    call on its unit from then until the unit's next run starts (refused calls included, since
    an attempt that was refused is part of what happened to the batch)."""
    start = next(
        (r for r in records if r.method == "Start" and r.unit == unit and r.detail == run_id),
        None,
    )
    if start is None:  # no Start over OPC UA: keep whatever names the run
        return [r for r in records if r.arguments.get("run_id") == run_id]
    chosen: list[AuditRecord] = []
    load = [
        r for r in records
        if r.seq < start.seq and r.unit == unit and r.method == "LoadProtocol"
        and r.arguments.get("protocol") == identity
    ]
    if load:
        chosen.append(load[-1])
    for record in records:
        if record.seq < start.seq or record.unit != unit:
            continue
        if record.seq > start.seq and record.method == "Start" and record.result == "Good":
            break  # the unit's next run
        other = record.arguments.get("run_id")
        if other not in (None, run_id):
            break
        chosen.append(record)
    return chosen


def _phases(events: list[Event], end: float) -> list[tuple[str, float, float]]:
    starts = [
        (match["name"], e.at) for e in events if e.kind == "phase"
        and (match := PHASE_EVENT.match(e.detail))
    ]
    return [
        (name, at, starts[i + 1][1] if i + 1 < len(starts) else end)
        for i, (name, at) in enumerate(starts)
    ]


def _transfers(events: list[Event]) -> list[TransferRecord]:
    transfers: list[TransferRecord] = []
    open_by_pump: dict[str, TransferRecord] = {}
    for e in events:
        if e.kind != "step":
            continue
        if match := TRANSFER_DONE.match(e.detail):
            record = open_by_pump.pop(match["pump"], None)
            if record is None:  # started before a journal we cannot see (should not happen)
                record = TransferRecord(match["kind"], match["pump"], float("nan"), e.at)
                transfers.append(record)
            record.ended_at, record.delivered_ml = e.at, float(match["ml"])
        elif match := TRANSFER_START.match(e.detail):
            record = TransferRecord(match["kind"], match["pump"], float(match["ml"]), e.at)
            open_by_pump[record.pump] = record
            transfers.append(record)
    return transfers


def _alarms(events: list[Event], telemetry: list[dict[str, Any]], end: float) -> list[AlarmRecord]:
    """Alarm intervals from the history's alarm sets (each change has a row of its own), plus
    the engine's one-off alarm events (a density limit the volume cap kept it from meeting)."""
    alarms: list[AlarmRecord] = []
    active: dict[str, AlarmRecord] = {}
    for row in telemetry:
        names = set(json.loads(row["alarms"] or "[]"))
        for name in sorted(names - active.keys()):
            active[name] = AlarmRecord(name, row["at"])
            alarms.append(active[name])
        for name in sorted(active.keys() - names):
            active.pop(name).cleared_at = row["at"]
    alarms.extend(
        AlarmRecord("RUN_ALARM", e.at, e.at, e.detail) for e in events if e.kind == "alarm"
    )
    return sorted(alarms, key=lambda a: a.raised_at)


def list_runs(journal: Path) -> list[tuple[str, str, str]]:
    """(run id, unit, protocol identity) of every run in a journal, oldest first."""
    db = _connect(journal)
    try:
        return _rows(db, "SELECT run_id, unit, protocol_identity FROM runs"
                     " ORDER BY started_at, rowid", ())
    finally:
        db.close()
