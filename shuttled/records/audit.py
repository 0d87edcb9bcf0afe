"""The audit trail (SPEC §10): who did what to which unit, when and why, allowed or refused.

21 CFR Part 11 §11.10(e) and EU GMP Annex 11 §9 want a secure, computer-generated, time-stamped
trail that cannot be changed unnoticed. Each record is therefore chained to the one before it:
its `hash` is SHA-256 over the previous record's hash followed by the canonical JSON of its own
content (sequence number included, so a deleted record breaks the chain at the next one).
`verify()` walks the chain and names the first record that does not fit.

The table lives in the journal's SQLite file with its own connection (WAL lets both write), and
triggers refuse UPDATE and DELETE, so an honest mistake cannot change history. They do not stop
someone who drops them; the chain catches what is changed inside it, and the signed anchors
(audit_anchors.py) what a chain cannot see: a tail cut off, a table dropped and started afresh.
Once the daemon attaches its anchors, every INTERVAL-th record is anchored, and at start the
table is held against the last anchor: a mismatch is logged and becomes a record of its own.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from shuttled.records.audit_anchors import INTERVAL, Anchor, AnchorLog
from shuttled.records.audit_chain import (
    GENESIS,
    Verification,
    canonical,
    chain_hash,
    verify_rows,
)
from shuttled.records.audit_verify import verify_database, verify_journal

__all__ = [
    "GENESIS", "AuditRecord", "AuditTrail", "Verification", "canonical", "chain_hash",
    "read_journal", "verify_journal", "verify_rows",
]

log = structlog.get_logger("shuttled.records")

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
TRIGGERS = ("audit_no_update", "audit_no_delete")


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


class AuditTrail:
    """Append and read the chained records; one instance per journal file."""

    def __init__(self, journal_path: Path, now: Callable[[], str] = utc_now) -> None:
        self.path = journal_path
        self._now = now
        self._db = sqlite3.connect(journal_path, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self.found_table, self.found_triggers = self._inspect()
        self._db.executescript(SCHEMA)
        self.anchors: AnchorLog | None = None

    def _inspect(self) -> tuple[bool, bool]:
        """Whether the table and both append-only triggers were there before we made them."""
        names = {row[0] for row in self._db.execute(
            "SELECT name FROM sqlite_master WHERE name = 'audit' OR tbl_name = 'audit'")}
        return "audit" in names, all(t in names for t in TRIGGERS)

    def close(self) -> None:
        self._db.close()

    def head(self) -> tuple[int, str]:
        """(records, hash of the last one); (0, GENESIS) for an empty trail."""
        row = self._db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def attach_anchors(self, anchors: AnchorLog) -> None:
        """Anchor from now on. First hold the table against the last anchor: a table that was
        missing or lost its triggers, a tail cut off, a rewritten head are logged as errors and
        recorded (`AuditTrailCheck`), then the head is anchored if it is not yet."""
        self.anchors = anchors
        for problem in self._start_up_problems(anchors.last):
            log.error("audit trail damaged", problem=problem)
            self.append(user="system", role="system", unit="", method="AuditTrailCheck",
                        arguments={}, reason="", result="Bad", detail=problem)
        self.anchor_now()

    def _start_up_problems(self, last: Anchor | None) -> list[str]:
        problems = []
        if last is not None and not self.found_table:
            problems.append(f"the audit table was missing (the anchor of {last.utc} says "
                            f"{last.count} records); a new one was started")
        elif self.found_table and not self.found_triggers:
            problems.append("the append-only triggers of the audit table were missing; "
                            "they were created again")
        if last is not None and self.found_table:
            count, _ = self.head()
            row = self._db.execute("SELECT hash FROM audit WHERE seq = ?", (last.count,))
            found = row.fetchone()
            if count < last.count:
                problems.append(f"the trail has {count} records but the anchor of {last.utc} "
                                f"says {last.count}: records at its end were removed")
            elif found is None or found[0] != last.hash:
                problems.append(f"record {last.count} does not match the anchor of {last.utc}")
        if last is None and self.head()[0] >= INTERVAL:
            log.warning("audit trail of more than one interval has no anchors: anchoring starts "
                        "now (first start with anchoring, or the anchors file was removed)")
        return problems

    def anchor_now(self) -> Anchor | None:
        """Anchor the current head unless it is anchored already (the hook for electronic
        signatures and for a clean stop). A failure to write is logged, never raised: the
        operation being audited must not fail because of its anchor; the next one retries."""
        if self.anchors is None:
            return None
        count, head = self.head()
        if count == 0 or self.anchors.anchored(count, head):
            return None
        try:
            return self.anchors.append(count, head)
        except OSError as error:
            log.error("audit anchor not written", path=str(self.anchors.path), error=str(error))
            return None

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
        """Write one record, committed (fsynced) before the caller answers the client; anchor
        the head when an INTERVAL boundary is passed."""
        content = {"user": user, "role": role, "unit": unit, "method": method,
                   "arguments": arguments, "reason": reason, "result": result, "detail": detail}
        try:
            record = self._insert(content)
        except sqlite3.OperationalError:
            if self._inspect()[0]:
                raise
            self._recreate_table()
            record = self._insert(content)
        if self.anchors is not None and self.anchors.due(record.seq):
            self.anchor_now()
        return record

    def append_many(self, entries: list[dict[str, Any]]) -> list[AuditRecord]:
        """Several records (each with `append`'s keyword arguments) in one committed
        transaction: one fsync for all of them, so a tick's alarm transitions — hundreds a
        minute in an alarm storm — cost the control tick one commit, not one per transition.
        Anchored like `append`: once the batch passes an INTERVAL boundary."""
        if not entries:
            return []
        contents = [
            {"user": e["user"], "role": e["role"], "unit": e["unit"], "method": e["method"],
             "arguments": e["arguments"], "reason": e["reason"], "result": e["result"],
             "detail": e.get("detail", "")}
            for e in entries
        ]  # fmt: skip
        try:
            records = self._insert_many(contents)
        except sqlite3.OperationalError:
            if self._inspect()[0]:
                raise
            self._recreate_table()
            records = self._insert_many(contents)
        if self.anchors is not None and self.anchors.due(records[-1].seq):
            self.anchor_now()
        return records

    def _insert_many(self, contents: list[dict[str, Any]]) -> list[AuditRecord]:
        records = []
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, previous = (row[0], row[1]) if row else (0, GENESIS)
            for fields in contents:
                seq += 1
                content = {"seq": seq, "time": self._now(), **fields}
                previous = chain_hash(previous, canonical(content))
                self._db.execute(
                    "INSERT INTO audit (seq, content, hash) VALUES (?, ?, ?)",
                    (seq, canonical(content), previous),
                )
                records.append(AuditRecord(**content, hash=previous))
        return records

    def _insert(self, fields: dict[str, Any]) -> AuditRecord:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")  # no other writer between reading the head and us
            row = self._db.execute(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, previous = (row[0] + 1, row[1]) if row else (1, GENESIS)
            content = {"seq": seq, "time": self._now(), **fields}
            text = canonical(content)
            digest = chain_hash(previous, text)
            self._db.execute(
                "INSERT INTO audit (seq, content, hash) VALUES (?, ?, ?)", (seq, text, digest)
            )
        return AuditRecord(**content, hash=digest)

    def _recreate_table(self) -> None:
        """The table was dropped under the running daemon: operator actions must still be
        recorded, so a new table is started, and its first record says what happened."""
        last = self.anchors.last if self.anchors is not None else None
        said = f" (the anchor of {last.utc} says {last.count} records)" if last else ""
        problem = f"the audit table was dropped while the daemon ran{said}; a new one was started"
        log.error("audit trail damaged", problem=problem)
        self._db.executescript(SCHEMA)
        self._insert({"user": "system", "role": "system", "unit": "",
                      "method": "AuditTrailCheck", "arguments": {}, "reason": "",
                      "result": "Bad", "detail": problem})

    def records(self, unit: str | None = None, run_id: str | None = None) -> list[AuditRecord]:
        """Every record in order; optionally those of one unit (and from one run's start on)."""
        rows = self._db.execute("SELECT content, hash FROM audit ORDER BY seq").fetchall()
        return [r for r in _parsed(rows) if unit is None or r.unit == unit]

    def page(self, first: int, count: int) -> list[AuditRecord]:
        """At most `count` records from sequence number `first` on: reading a trail of a
        million records page by page costs one page per page, not the whole trail each time."""
        rows = self._db.execute("SELECT content, hash FROM audit WHERE seq >= ? ORDER BY seq"
                                " LIMIT ?", (first, count)).fetchall()
        return _parsed(rows)

    def latest(self, unit: str, count: int) -> list[AuditRecord]:
        """The newest `count` records of one unit, newest first: what a unit's page shows. The
        scan runs back from the newest record, where a unit's recent records are."""
        rows = self._db.execute(
            "SELECT content, hash FROM audit WHERE json_extract(content, '$.unit') = ?"
            " ORDER BY seq DESC LIMIT ?", (unit, count)).fetchall()
        return _parsed(rows)

    def verify(self) -> Verification:
        """The whole check (audit_verify.py) against the daemon's own anchors and key; without
        anchors attached (a tool's own AuditTrail), the table and the chain."""
        if self.anchors is None:
            return verify_database(self._db, None, None)
        return verify_database(self._db, self.anchors.path, self.anchors.key.public)


def _parsed(rows: list[tuple[str, str]]) -> list[AuditRecord]:
    """Records from (content, hash) rows; unreadable ones are verify()'s business, not a
    listing's."""
    records = []
    for text, digest in rows:
        try:
            records.append(AuditRecord(**json.loads(text), hash=digest))
        except (ValueError, TypeError):
            continue
    return records


def read_journal(path: Path) -> list[AuditRecord]:
    """Every readable record of a journal file, read-only."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT content, hash FROM audit ORDER BY seq").fetchall()
    except sqlite3.OperationalError:
        return []  # a journal from before the audit trail
    finally:
        db.close()
    return _parsed(rows)
