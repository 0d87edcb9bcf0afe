"""Released batch records, frozen (SPEC §12): what QA released is kept exactly as released.

At release the record's content is stored here with its SHA-256, and from then on every reader
shows this content, not a new rendering: a released record does not change when an alarm is
acknowledged or an audit record is written afterwards. What comes later is shown apart, as
addenda (reports/batch_record.py), never merged into what was released.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shuttled.records.journal_connection import connect_journal
from shuttled.records.signatures import canonical_sha256

SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_record_releases (
    run_id TEXT PRIMARY KEY,
    released_utc TEXT NOT NULL,
    released_by TEXT NOT NULL,
    content TEXT NOT NULL,
    sha256 TEXT NOT NULL
);
"""


class AlreadyReleased(Exception):
    """The record was released before (the message says when and by whom)."""


@dataclass(frozen=True)
class Release:
    run_id: str
    released_utc: str
    released_by: str
    content: dict[str, Any]
    sha256: str

    @property
    def intact(self) -> bool:
        return canonical_sha256(self.content) == self.sha256


def freeze(journal_path: Path, run_id: str, content: dict[str, Any], utc: str, user: str) -> None:
    db = connect_journal(journal_path, SCHEMA)
    try:
        with db:
            db.execute("BEGIN IMMEDIATE")
            known = release_in_db(db, run_id)
            if known is not None:
                raise AlreadyReleased(f"{run_id} was released by {known.released_by} "
                                      f"at {known.released_utc}")
            db.execute("INSERT INTO batch_record_releases VALUES (?, ?, ?, ?, ?)",
                       (run_id, utc, user, json.dumps(content, sort_keys=True),
                        canonical_sha256(content)))
    finally:
        db.close()


def release_in_db(db: sqlite3.Connection, run_id: str) -> Release | None:
    try:
        row = db.execute("SELECT run_id, released_utc, released_by, content, sha256 FROM "
                         "batch_record_releases WHERE run_id = ?", (run_id,)).fetchone()
    except sqlite3.OperationalError:  # a journal from before releases existed
        return None
    if row is None:
        return None
    return Release(row[0], row[1], row[2], json.loads(row[3]), row[4])


def read_release(journal_path: Path, run_id: str) -> Release | None:
    db = sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True)
    try:
        return release_in_db(db, run_id)
    finally:
        db.close()
