"""One way to open the journal: every part that keeps records in it (audit trail, signatures,
protocol library, account locks) opens its own connection like this, so each commits on its own
and none waits for a transaction of another part's making."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect_journal(path: Path, schema: str = "") -> sqlite3.Connection:
    """Autocommit, WAL (readers never block the writer), FULL sync (a committed record survives
    a power cut), and the part's tables made if missing."""
    db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    if schema:
        db.executescript(schema)
    return db
