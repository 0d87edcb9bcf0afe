"""Account lockout (SPEC §12, Part 11 §11.300(d)): five failed password checks within 15 minutes
lock the account until someone unlocks it.

A failed check is a failed sign-in or a wrong password given to sign a record: both guess the
same secret. Failures and locks live in the journal, not in memory, so restarting the daemon does
not reset a guesser's count and a lock survives a power cut. The users file stays the
administrator's (the daemon may not be able to write it, ProtectSystem=strict), which is why the
lock is not a flag in it.

A right password does not clear the count: five wrong ones within any 15 minutes lock, as SPEC
§12 says, so a session that is already open cannot guess on between sign-ins.

Time here is the wall clock, also in a simulation: guessing happens in real time whatever the
process clock says. A failure for a name that has no account is counted like any other (the
answer must not tell which names exist) but can lock nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shuttled.records.journal_connection import connect_journal

MAX_FAILURES = 5
WINDOW_S = 15 * 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS password_failures (
    name TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS password_failures_by_name ON password_failures (name, at);
CREATE TABLE IF NOT EXISTS account_locks (
    name TEXT PRIMARY KEY,
    locked_at REAL NOT NULL,
    failures INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Lock:
    name: str
    locked_at: float
    failures: int


class AccountLocks:
    """One instance per journal file; every method commits before it returns."""

    def __init__(self, journal_path: Path, now: Callable[[], float] = time.time) -> None:
        self.path = journal_path
        self._now = now
        self._db = connect_journal(journal_path, SCHEMA)

    def close(self) -> None:
        self._db.close()

    def is_locked(self, name: str) -> bool:
        row = self._db.execute("SELECT 1 FROM account_locks WHERE name = ?", (name,)).fetchone()
        return row is not None

    def failed(self, name: str, kind: str, account_exists: bool) -> bool:
        """Count one failed check ("sign-in" or "signature"); True when this failure locked the
        account (the caller audits that)."""
        now = self._now()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM password_failures WHERE at < ?", (now - WINDOW_S,))
            self._db.execute("INSERT INTO password_failures (name, at, kind) VALUES (?, ?, ?)",
                             (name, now, kind))
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM password_failures WHERE name = ? AND at >= ?",
                (name, now - WINDOW_S),
            ).fetchone()
            if not account_exists or count < MAX_FAILURES:
                return False
            if self._db.execute("SELECT 1 FROM account_locks WHERE name = ?",
                                (name,)).fetchone():
                return False
            self._db.execute("INSERT INTO account_locks (name, locked_at, failures) "
                             "VALUES (?, ?, ?)", (name, now, count))
        return True

    def unlock(self, name: str) -> bool:
        """False when the account was not locked."""
        with self._db:
            self._db.execute("DELETE FROM password_failures WHERE name = ?", (name,))
            cursor = self._db.execute("DELETE FROM account_locks WHERE name = ?", (name,))
        return cursor.rowcount > 0

    def locks(self) -> list[Lock]:
        rows = self._db.execute(
            "SELECT name, locked_at, failures FROM account_locks ORDER BY name"
        ).fetchall()
        return [Lock(str(n), float(t), int(f)) for n, t, f in rows]
