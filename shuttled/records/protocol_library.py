"""The instrument's master recipes and their lifecycle (SPEC §12; ISA-88 master recipes,
Annex 11 §10 change control).

A protocol is known by its identity `name@version#sha12`, instrument-wide: loading the same text
on another unit is the same protocol, with the same approval. `name@version` names one content
for good: the same name and version with other text is refused as a conflict (a change needs a
new version, and its own approval), also after the first was retired.

The text is kept with its SHA-256; a protocol whose stored text no longer matches shows as
broken, and so do its signatures (signatures.py).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shuttled.records.audit import utc_now
from shuttled.records.journal_connection import connect_journal

DRAFT, IN_REVIEW, APPROVED, RETIRED = "draft", "in_review", "approved", "retired"
STATES = (DRAFT, IN_REVIEW, APPROVED, RETIRED)

SCHEMA = """
CREATE TABLE IF NOT EXISTS protocol_library (
    identity TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    text TEXT NOT NULL,
    state TEXT NOT NULL,
    origin TEXT NOT NULL,
    added_utc TEXT NOT NULL,
    added_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS protocol_lifecycle (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    identity TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    utc TEXT NOT NULL,
    user TEXT NOT NULL,
    reason TEXT NOT NULL
);
"""


class LibraryConflict(Exception):
    """Same name and version, other content (the message names the protocol known already)."""


@dataclass(frozen=True)
class Transition:
    from_state: str
    to_state: str
    utc: str
    user: str
    reason: str


@dataclass(frozen=True)
class LibraryEntry:
    identity: str
    name: str
    version: str
    sha256: str
    text: str
    state: str
    origin: dict[str, Any]  # {} when loaded here; a package's origin when imported
    added_utc: str
    added_by: str
    history: list[Transition] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest() == self.sha256

    @property
    def content_sha256(self) -> str:
        """What signatures are checked against: the stored text as it is now."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


class ProtocolLibrary:
    """One instance per journal file; every change commits before it returns."""

    def __init__(self, journal_path: Path) -> None:
        self.path = journal_path
        self._db = connect_journal(journal_path, SCHEMA)

    def close(self) -> None:
        self._db.close()

    def register(
        self, *, identity: str, name: str, version: str, sha256: str, text: str, user: str,
        origin: dict[str, Any] | None = None,
    ) -> tuple[LibraryEntry, bool]:
        """(entry, True) when new, as draft; (the known entry, False) when already known.
        LibraryConflict when name@version is known with other content."""
        known = self.get(identity)
        if known is not None:
            return known, False
        row = self._db.execute(
            "SELECT identity FROM protocol_library WHERE name = ? AND version = ?",
            (name, version),
        ).fetchone()
        if row is not None:
            raise LibraryConflict(
                f"protocol {name}@{version} is already known with other content ({row[0]}): "
                "a changed protocol needs a new version"
            )
        utc = utc_now()
        with self._db:
            self._db.execute(
                "INSERT INTO protocol_library (identity, name, version, sha256, text, state,"
                " origin, added_utc, added_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (identity, name, version, sha256, text, DRAFT,
                 json.dumps(origin or {}, sort_keys=True), utc, user),
            )
            self._record(identity, "", DRAFT, user, "imported" if origin else "loaded", utc)
        entry = self.get(identity)
        assert entry is not None
        return entry, True

    def _record(self, identity: str, from_state: str, to_state: str, user: str, reason: str,
                utc: str) -> None:
        self._db.execute(
            "INSERT INTO protocol_lifecycle (identity, from_state, to_state, utc, user, reason)"
            " VALUES (?, ?, ?, ?, ?, ?)", (identity, from_state, to_state, utc, user, reason),
        )

    def move(self, identity: str, expected: str, to_state: str, user: str, reason: str) -> None:
        """Change state only if it is still `expected` (two QA users approving at once: one
        wins, the other is refused by the caller's state check)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute(
                "UPDATE protocol_library SET state = ? WHERE identity = ? AND state = ?",
                (to_state, identity, expected),
            )
            if cursor.rowcount != 1:
                raise LibraryConflict(f"{identity} is no longer {expected}")
            self._record(identity, expected, to_state, user, reason, utc_now())

    def get(self, identity: str) -> LibraryEntry | None:
        return entry_in_db(self._db, identity)

    def entries(self) -> list[LibraryEntry]:
        identities = [r[0] for r in self._db.execute(
            "SELECT identity FROM protocol_library ORDER BY name, version, added_utc")]
        return [e for e in (self.get(i) for i in identities) if e is not None]


def entry_in_db(db: sqlite3.Connection, identity: str) -> LibraryEntry | None:
    try:
        row = db.execute(
            "SELECT identity, name, version, sha256, text, state, origin, added_utc, added_by"
            " FROM protocol_library WHERE identity = ?", (identity,),
        ).fetchone()
    except sqlite3.OperationalError:  # a journal from before the library existed
        return None
    if row is None:
        return None
    history = [Transition(*r) for r in db.execute(
        "SELECT from_state, to_state, utc, user, reason FROM protocol_lifecycle"
        " WHERE identity = ? ORDER BY seq", (identity,))]
    try:
        origin = json.loads(row[6])
    except ValueError:
        origin = {"unreadable": row[6]}
    return LibraryEntry(*row[:6], origin, row[7], row[8], history)


def read_entry(journal_path: Path, identity: str) -> LibraryEntry | None:
    """Offline (reports): read-only."""
    db = sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True)
    try:
        return entry_in_db(db, identity)
    finally:
        db.close()
