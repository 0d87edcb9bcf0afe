"""The audit trail (SPEC §10): who did what to which unit, when and why, allowed or refused.

21 CFR Part 11 §11.10(e) and EU GMP Annex 11 §9 want a secure, computer-generated, time-stamped
trail that cannot be changed unnoticed. Each record is therefore chained to the one before it:
its `hash` is SHA-256 over the previous record's hash followed by the canonical JSON of its own
content (sequence number included, so a deleted record breaks the chain at the next one).
`verify()` walks the chain and names the first record that does not fit.

The table lives in the journal's SQLite file with its own connection (WAL lets both write), and
triggers refuse UPDATE and DELETE, so an honest mistake cannot change history. They do not stop
someone who drops them; the chain is what catches that. A chain cannot catch a complete rewrite
of every hash from the edit onward, which is why `verify` reports the head hash: recorded
elsewhere (a batch record, a ticket), it pins the trail as it was at that moment.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS = "0" * 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    content TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""


def canonical(content: dict[str, Any]) -> str:
    """One byte sequence per content: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(previous: str, content_json: str) -> str:
    return hashlib.sha256((previous + content_json).encode("utf-8")).hexdigest()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    time: str
    user: str
    role: str
    unit: str
    method: str
    arguments: dict[str, Any]
    reason: str
    result: str
    detail: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Verification:
    ok: bool
    records: int
    head: str  # hash of the last record that verified
    broken_seq: int | None = None
    problem: str = ""


class AuditTrail:
    """Append and read the chained records; one instance per journal file."""

    def __init__(self, journal_path: Path, now: Callable[[], str] = utc_now) -> None:
        self.path = journal_path
        self._now = now
        self._db = sqlite3.connect(journal_path, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def append(
        self,
        *,
        user: str,
        role: str,
        unit: str,
        method: str,
        arguments: dict[str, Any],
        reason: str,
        result: str,
        detail: str = "",
    ) -> AuditRecord:
        """Write one record, committed (fsynced) before the caller answers the client."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")  # no other writer between reading the head and us
            row = self._db.execute(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, previous = (row[0] + 1, row[1]) if row else (1, GENESIS)
            content = {
                "seq": seq,
                "time": self._now(),
                "user": user,
                "role": role,
                "unit": unit,
                "method": method,
                "arguments": arguments,
                "reason": reason,
                "result": result,
                "detail": detail,
            }
            text = canonical(content)
            digest = chain_hash(previous, text)
            self._db.execute(
                "INSERT INTO audit (seq, content, hash) VALUES (?, ?, ?)", (seq, text, digest)
            )
        return AuditRecord(**content, hash=digest)

    def records(self, unit: str | None = None, run_id: str | None = None) -> list[AuditRecord]:
        """Every record in order; optionally those of one unit (and from one run's start on)."""
        rows = self._db.execute("SELECT content, hash FROM audit ORDER BY seq").fetchall()
        result = []
        for text, digest in rows:
            try:
                content = json.loads(text)
                record = AuditRecord(**content, hash=digest)
            except (ValueError, TypeError):
                continue  # unreadable records are verify()'s business, not a listing's
            if unit is not None and record.unit != unit:
                continue
            result.append(record)
        return result

    def verify(self) -> Verification:
        return verify_rows(self._db.execute("SELECT seq, content, hash FROM audit ORDER BY seq"))


def verify_rows(rows: Any) -> Verification:
    """Walk the chain; the first record whose position, content or hash does not fit is named."""
    previous, expected_seq, count = GENESIS, 1, 0
    for seq, text, digest in rows:
        try:
            content_seq = json.loads(text).get("seq")
        except ValueError:
            content_seq = None
        if seq != expected_seq:
            problem = (
                f"record {expected_seq} is missing (record {seq} follows record {expected_seq - 1})"
                if seq > expected_seq
                else f"record {seq} is out of order"
            )
            return Verification(False, count, previous, expected_seq, problem)
        if content_seq != seq:
            return Verification(
                False, count, previous, seq,
                f"record {seq} carries sequence number {content_seq} (inserted or moved)",
            )
        if chain_hash(previous, text) != digest:
            return Verification(
                False, count, previous, seq,
                f"record {seq} does not match its hash (edited, or the chain before it was)",
            )
        previous, expected_seq, count = digest, expected_seq + 1, count + 1
    return Verification(True, count, previous)


def verify_journal(path: Path) -> Verification:
    """Offline check of a journal file, read-only (for `shuttlectl audit verify --journal`)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        exists = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'"
        ).fetchone()
        if not exists:
            return Verification(True, 0, GENESIS)
        return verify_rows(db.execute("SELECT seq, content, hash FROM audit ORDER BY seq"))
    finally:
        db.close()


def read_journal(path: Path) -> list[AuditRecord]:
    """Every readable record of a journal file, read-only."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT content, hash FROM audit ORDER BY seq").fetchall()
    except sqlite3.OperationalError:
        return []  # a journal from before the audit trail
    finally:
        db.close()
    records = []
    for text, digest in rows:
        try:
            records.append(AuditRecord(**json.loads(text), hash=digest))
        except (ValueError, TypeError):
            continue
    return records
