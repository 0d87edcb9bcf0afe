"""The durable outbound queue: MQTT messages waiting for a broker's PUBACK, in the journal file.

aiomqtt's publish fails while offline and paho's own queue lives in memory, so the daemon owns
its queue (ARCHITECTURE.md). It lives in the journal's SQLite file (its own tables, its own
connection; WAL lets both connections share the file) so one backup holds the whole record.

Each telemetry message's `seq` is taken from `mqtt_sequence` in the same transaction that queues
the message, so a sequence number is never given twice nor skipped, also across restarts. A row
is deleted only after the broker acknowledged it: delivery is at least once, and `seq` lets a
historian drop the rare duplicate after a connection broke between PUBACK and delete.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS mqtt_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    queued_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS mqtt_sequence (
    unit TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    id: int
    topic: str
    payload: dict


class Outbox:
    def __init__(self, journal_path: Path) -> None:
        journal_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(journal_path, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=5000")  # the journal's own connection may write
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # queued means it survives power loss
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def sequences(self) -> dict[str, int]:
        """The last `seq` given per unit (0 before the first message)."""
        return dict(self._db.execute("SELECT unit, seq FROM mqtt_sequence").fetchall())

    def enqueue(
        self, messages: list[tuple[str, dict]], sequences: dict[str, int], at: float
    ) -> None:
        """Queue messages and record the new sequence numbers in one committed transaction."""
        if not messages and not sequences:
            return
        with self._db:
            self._db.executemany(
                "INSERT INTO mqtt_outbox (topic, payload, queued_at) VALUES (?, ?, ?)",
                [(topic, json.dumps(payload, separators=(",", ":")), at)
                 for topic, payload in messages],
            )
            self._db.executemany(
                "INSERT INTO mqtt_sequence (unit, seq) VALUES (?, ?)"
                " ON CONFLICT(unit) DO UPDATE SET seq = excluded.seq",
                list(sequences.items()),
            )

    def peek(self, after_id: int, limit: int) -> list[QueuedMessage]:
        """The oldest queued messages after `after_id`, in the order they were queued."""
        rows = self._db.execute(
            "SELECT id, topic, payload FROM mqtt_outbox WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [QueuedMessage(i, topic, json.loads(payload)) for i, topic, payload in rows]

    def acknowledge(self, up_to_id: int) -> None:
        """The broker has every message up to this id: forget them."""
        with self._db:
            self._db.execute("DELETE FROM mqtt_outbox WHERE id <= ?", (up_to_id,))

    def last_id(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM mqtt_outbox").fetchone()
        return int(row[0])

    def pending(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM mqtt_outbox").fetchone()[0])
