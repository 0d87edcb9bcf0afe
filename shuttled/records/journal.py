"""The durable record of runs: SQLite in WAL mode under the data directory.

Every run, with the exact protocol text it ran and its resolved parameters, and every state change
of it, is written here and committed before the daemon carries on, so a QA reviewer can
reconstruct a batch from this file alone, and run ids never repeat on an instrument.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from protocols.state_machine import RunState


class JournaledEvent(Protocol):
    """What the journal keeps of a run event (the engine's RunEvent is one). The records sit
    below the engine: they store its events without knowing the engine."""

    @property
    def at(self) -> float: ...
    @property
    def kind(self) -> str: ...
    @property
    def state(self) -> RunState: ...
    @property
    def detail(self) -> str: ...
    @property
    def user(self) -> str: ...

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    unit TEXT NOT NULL,
    number INTEGER NOT NULL,
    protocol_identity TEXT NOT NULL,
    protocol_text TEXT NOT NULL,
    parameters TEXT NOT NULL,
    started_at REAL NOT NULL,
    final_state TEXT
);
CREATE TABLE IF NOT EXISTS templates (
    unit TEXT NOT NULL,
    template_id TEXT NOT NULL,
    text TEXT NOT NULL,
    loaded_by TEXT NOT NULL,
    loaded_at REAL NOT NULL,
    PRIMARY KEY (unit, template_id)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    unit TEXT PRIMARY KEY,
    at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    unit TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL,
    user TEXT NOT NULL
);
"""
# Downsampled process values for run reports (shuttled/reports/history.py decides what is kept):
# one row per unit every few minutes of process time and at every state, phase or alarm change.
TELEMETRY_SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry (
    run_id TEXT NOT NULL,
    unit TEXT NOT NULL,
    at REAL NOT NULL,
    state TEXT NOT NULL,
    phase TEXT NOT NULL,
    temperature REAL,
    target REAL,
    heater REAL,
    density REAL,
    growth_rate REAL,
    volume_ml REAL,
    alarms TEXT NOT NULL,
    pumps TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS telemetry_run ON telemetry (run_id, at);
CREATE INDEX IF NOT EXISTS telemetry_unit ON telemetry (unit, at);
"""
# Chain of identity (SPEC §12): the batch (patient) and the cartridge a run is bound to; NULL
# for a run started without them (outside GMP mode) and for runs of journals from before them.
RUN_BATCH_COLUMNS = (("batch_id", "TEXT"), ("cartridge_id", "TEXT"))
TELEMETRY_COLUMNS = (
    "run_id", "unit", "at", "state", "phase", "temperature", "target", "heater", "density",
    "growth_rate", "volume_ml", "alarms", "pumps",
)


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed transition survives power loss
        self._db.executescript(SCHEMA)
        self._db.executescript(TELEMETRY_SCHEMA)
        self._add_missing_columns("runs", RUN_BATCH_COLUMNS)

    def close(self) -> None:
        self._db.close()

    def _add_missing_columns(self, table: str, columns: tuple[tuple[str, str], ...]) -> None:
        """Bring a journal written by an older daemon up to date in place: new columns are
        added empty (NULL), so its old runs read as runs without them."""
        present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns:
            if name not in present:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    @contextlib.contextmanager
    def _transaction(self, durable: bool = True) -> Iterator[None]:
        """One transaction; `durable=False` commits without its own fsync.

        In WAL mode a commit under synchronous=NORMAL survives a crash of the process (kill -9)
        and never corrupts the file; a power cut may roll back such commits made since the last
        fsync, and the next durable commit fsyncs them along with itself. Only what can be
        recomputed or loses nothing that matters (a long phase's elapsed time refreshed, a
        history sample) is written so; a state transition or a transfer's baseline never is.
        """
        if not durable:
            self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._db:
                yield
        finally:
            if not durable:
                self._db.execute("PRAGMA synchronous=FULL")

    def new_run_id(self, instrument_id: str, unit: str) -> tuple[str, int]:
        """The next run id of a unit: instrument, unit and a number that never repeats."""
        row = self._db.execute(
            "SELECT COALESCE(MAX(number), 0) FROM runs WHERE unit = ?", (unit,)
        ).fetchone()
        number = int(row[0]) + 1
        return f"{instrument_id}-{unit}-{number:04d}", number

    def record_run_start(
        self,
        run_id: str,
        number: int,
        unit: str,
        identity: str,
        text: str,
        parameters: dict[str, float],
        at: float,
        batch_id: str | None = None,
        cartridge_id: str | None = None,
    ) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO runs (run_id, unit, number, protocol_identity, protocol_text,"
                " parameters, started_at, batch_id, cartridge_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, unit, number, identity, text, json.dumps(parameters, sort_keys=True), at,
                 batch_id, cartridge_id),
            )

    def run_batch(self, run_id: str) -> tuple[str | None, str | None]:
        """(batch id, cartridge id) a run was bound to at Start; (None, None) if unbound."""
        row = self._db.execute(
            "SELECT batch_id, cartridge_id FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def append_events(self, run_id: str, unit: str, events: Iterable[JournaledEvent]) -> None:
        rows = [(run_id, unit, e.at, e.kind, e.state.value, e.detail, e.user) for e in events]
        if not rows:
            return
        with self._db:
            self._db.executemany(
                "INSERT INTO events (run_id, unit, at, kind, state, detail, user)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def record_final_state(self, run_id: str, state: str) -> None:
        with self._db:
            self._db.execute("UPDATE runs SET final_state = ? WHERE run_id = ?", (state, run_id))

    def record_template(self, unit: str, template_id: str, text: str, user: str, at: float) -> None:
        """A loaded protocol, kept so it is still loaded after a restart."""
        with self._db:
            self._db.execute(
                "INSERT INTO templates (unit, template_id, text, loaded_by, loaded_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(unit, template_id) DO UPDATE SET"
                " loaded_by = excluded.loaded_by, loaded_at = excluded.loaded_at",
                (unit, template_id, text, user, at),
            )

    def load_templates(self) -> list[tuple[str, str, str]]:
        """(unit, template id, text), oldest load first, so the last one loaded stays last."""
        return self._db.execute(
            "SELECT unit, template_id, text FROM templates ORDER BY loaded_at, rowid"
        ).fetchall()

    def save_checkpoints(
        self, checkpoints: dict[str, dict], at: float, durable: bool = True
    ) -> None:
        """Every changed unit's run state in one committed transaction, fsynced when `durable`
        (a change that must survive power loss; see `_transaction`)."""
        if not checkpoints:
            return
        with self._transaction(durable):
            self._db.executemany(
                "INSERT INTO checkpoints (unit, at, data) VALUES (?, ?, ?)"
                " ON CONFLICT(unit) DO UPDATE SET at = excluded.at, data = excluded.data",
                [
                    (unit, at, json.dumps(data, sort_keys=True))
                    for unit, data in checkpoints.items()
                ],
            )

    def load_checkpoints(self) -> dict[str, dict]:
        rows = self._db.execute("SELECT unit, data FROM checkpoints").fetchall()
        return {unit: json.loads(data) for unit, data in rows}

    def events_of(self, run_id: str) -> list[tuple[float, str, str, str, str]]:
        return self._db.execute(
            "SELECT at, kind, state, detail, user FROM events WHERE run_id = ? ORDER BY id",
            (run_id,),
        ).fetchall()

    def run_summaries(self) -> list[tuple[str, str, str, str, str]]:
        """(run id, unit, protocol identity, parameters JSON, last known state), oldest first:
        what the operator interface lists as results of runs from before this daemon started."""
        return self._db.execute(
            "SELECT r.run_id, r.unit, r.protocol_identity, r.parameters, COALESCE(r.final_state,"
            " (SELECT e.state FROM events e WHERE e.run_id = r.run_id ORDER BY e.id DESC LIMIT 1),"
            " '') FROM runs r ORDER BY r.started_at, r.rowid"
        ).fetchall()

    def append_telemetry(self, rows: list[tuple]) -> None:
        """Rows in TELEMETRY_COLUMNS order, every unit of a tick in one transaction, so a 16-unit
        instrument pays one commit per sampling interval, not one per unit. History is not
        fsynced on its own (`_transaction`): a power cut may cost the last samples, never more,
        and the next state change makes them durable."""
        if not rows:
            return
        with self._transaction(durable=False):
            self._db.executemany(
                f"INSERT INTO telemetry ({', '.join(TELEMETRY_COLUMNS)})"
                f" VALUES ({', '.join('?' * len(TELEMETRY_COLUMNS))})",
                rows,
            )

    def telemetry_of(self, run_id: str) -> list[tuple]:
        """A run's history rows in TELEMETRY_COLUMNS order, oldest first."""
        return self._db.execute(
            f"SELECT {', '.join(TELEMETRY_COLUMNS)} FROM telemetry WHERE run_id = ?"
            " ORDER BY at, rowid",
            (run_id,),
        ).fetchall()
