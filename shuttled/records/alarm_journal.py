"""The alarms' durable record (SPEC §13): each alarm's current lifecycle and every transition.

Two tables in the journal's SQLite file, written through their own connection (WAL lets the run
journal, the audit trail and this write side by side):

* `alarm_state`: one row per (unit, alarm) with its lifecycle as JSON, so a restarted daemon
  knows which alarms were active, acknowledged or shelved, and neither forgets one (an
  unacknowledged alarm that cleared while the daemon was down is still waiting for someone) nor
  raises one again that it had already raised.
* `alarm_events`: every transition, in order, with its run: what run reports list as the
  alarm's lifecycle (raised, acknowledged by whom with which comment, shelved, cleared).

All transitions of one control tick are committed (fsynced) in one transaction, before the
transition is published anywhere: what MQTT or an OPC UA client saw is always in the journal.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm_state (
    unit TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (unit, name)
);
CREATE TABLE IF NOT EXISTS alarm_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    unit TEXT NOT NULL,
    name TEXT NOT NULL,
    run_id TEXT,
    at REAL NOT NULL,
    utc TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    severity INTEGER NOT NULL,
    user TEXT NOT NULL,
    comment TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alarm_events_run ON alarm_events (run_id, seq);
"""
EVENT_COLUMNS = (
    "seq", "unit", "name", "run_id", "at", "utc", "kind", "state", "severity", "user", "comment",
)


class AlarmJournal:
    """Read and write the two alarm tables of one journal file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged alarm stays acknowledged
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def load_states(self) -> list[dict[str, Any]]:
        """Every alarm's last saved lifecycle (unreadable rows are skipped, not fatal)."""
        states = []
        for (data,) in self._db.execute("SELECT data FROM alarm_state ORDER BY unit, name"):
            try:
                states.append(json.loads(data))
            except ValueError:
                continue
        return states

    def last_seq(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM alarm_events").fetchone()
        return int(row[0])

    def record(
        self, states: Iterable[dict[str, Any]], events: Iterable[dict[str, Any]]
    ) -> None:
        """New lifecycles and their transitions, in one committed transaction."""
        state_rows = [(s["unit"], s["name"], json.dumps(s, sort_keys=True)) for s in states]
        event_rows = [
            (e["seq"], e["unit"], e["name"], e["run_id"], e["at"], e["utc"], e["kind"],
             e["state"], e["severity"], e["user"], e["comment"], json.dumps(e, sort_keys=True))
            for e in events
        ]  # fmt: skip
        if not state_rows and not event_rows:
            return
        with self._db:
            self._db.executemany(
                "INSERT INTO alarm_state (unit, name, data) VALUES (?, ?, ?)"
                " ON CONFLICT(unit, name) DO UPDATE SET data = excluded.data",
                state_rows,
            )
            self._db.executemany(
                "INSERT INTO alarm_events (seq, unit, name, run_id, at, utc, kind, state,"
                " severity, user, comment, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                event_rows,
            )


def alarm_events_of_run(path: Path, run_id: str) -> list[dict[str, Any]]:
    """A run's alarm transitions, oldest first, read-only (reports; [] before issue 17)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM alarm_events WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()
    return [dict(zip(EVENT_COLUMNS, row, strict=True)) for row in rows]
