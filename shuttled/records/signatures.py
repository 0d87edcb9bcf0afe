"""Electronic signatures (SPEC §12; 21 CFR Part 11 §11.50, §11.70, §11.200; Annex 11 §14).

A signature says who signed (account and printed name), when (UTC), what it meant, and which
content: the SHA-256 of the signed record's canonical content. Whoever shows a signed record
recomputes that hash: if the record changed after signing, the signature shows as broken, never
as signed (§11.70: a signature cannot be carried over to other content).

Each signature is also an audit record (method `Sign`, chained like every other), written first;
the signature row keeps that record's sequence number and hash, so deleting or editing a
signature row is visible against the chain, and `shuttlectl audit verify` covers signatures too.
The password that proved the signer is checked by the caller and never reaches this module.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shuttled.records.audit import AuditTrail, utc_now
from shuttled.records.journal_connection import connect_journal

MEANINGS = ("authored", "reviewed", "approved", "performed", "verified", "released")
MAX_COMMENT = 2000

SCHEMA = """
CREATE TABLE IF NOT EXISTS signatures (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    record_kind TEXT NOT NULL,
    record_id TEXT NOT NULL,
    signer TEXT NOT NULL,
    full_name TEXT NOT NULL,
    meaning TEXT NOT NULL,
    utc TEXT NOT NULL,
    record_sha256 TEXT NOT NULL,
    comment TEXT NOT NULL,
    audit_seq INTEGER NOT NULL,
    audit_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS signatures_by_record ON signatures (record_kind, record_id);
"""

SIGNED, BROKEN = "signed", "broken"


def canonical_sha256(content: Any) -> str:
    """The hash a signature binds to: of the exact text, or of canonical JSON for structures."""
    data = content.encode("utf-8") if isinstance(content, str) else json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Signature:
    signer: str
    full_name: str
    meaning: str
    utc: str
    record_sha256: str
    comment: str
    record_kind: str
    record_id: str
    audit_seq: int = 0

    def status(self, current_sha256: str) -> str:
        return SIGNED if current_sha256 == self.record_sha256 else BROKEN

    def to_json(self, current_sha256: str | None = None) -> dict[str, Any]:
        data = asdict(self)
        if current_sha256 is not None:
            data["status"] = self.status(current_sha256)
        return data

    def line(self, current_sha256: str | None = None) -> str:
        """How a person reads it: `approved by Quinn Adams (quinn) 2026-…Z`."""
        broken = current_sha256 is not None and self.status(current_sha256) == BROKEN
        text = f"{self.meaning} by {self.full_name} ({self.signer}) {self.utc}"
        if self.comment:
            text += f" — {self.comment}"
        return text + (" — BROKEN: the record changed after signing" if broken else "")


class SignatureBook:
    """Signatures of one journal; signing needs the audit trail (every signature is audited)."""

    def __init__(self, journal_path: Path, audit: AuditTrail | None = None) -> None:
        self.path = journal_path
        self.audit = audit
        self._db = connect_journal(journal_path, SCHEMA)

    def close(self) -> None:
        self._db.close()

    def sign(
        self, *, record_kind: str, record_id: str, record_sha256: str, signer: str, role: str,
        full_name: str, meaning: str, comment: str, unit: str = "",
    ) -> Signature:
        if meaning not in MEANINGS:
            raise ValueError(f"unknown signature meaning {meaning!r}")
        if self.audit is None:
            raise RuntimeError("signing needs the audit trail")
        utc = utc_now()
        record = self.audit.append(
            user=signer, role=role, unit=unit, method="Sign",
            arguments={"record_kind": record_kind, "record_id": record_id,
                       "record_sha256": record_sha256, "meaning": meaning,
                       "full_name": full_name, "utc": utc},
            reason=comment[:MAX_COMMENT], result="Good", detail=f"{meaning} {record_id}",
        )
        signature = Signature(signer, full_name, meaning, utc, record_sha256,
                              comment[:MAX_COMMENT], record_kind, record_id, record.seq)
        with self._db:
            self._db.execute(
                "INSERT INTO signatures (record_kind, record_id, signer, full_name, meaning, utc,"
                " record_sha256, comment, audit_seq, audit_hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record_kind, record_id, signer, full_name, meaning, utc, record_sha256,
                 signature.comment, record.seq, record.hash),
            )
        self.audit.anchor_now()  # SPEC §12: the chain head is anchored at every signature
        return signature

    def of(self, record_kind: str, record_id: str) -> list[Signature]:
        return signatures_in_db(self._db, record_kind, record_id)


def signatures_in_db(db: sqlite3.Connection, record_kind: str, record_id: str) -> list[Signature]:
    try:
        rows = db.execute(
            "SELECT signer, full_name, meaning, utc, record_sha256, comment, record_kind,"
            " record_id, audit_seq FROM signatures WHERE record_kind = ? AND record_id = ?"
            " ORDER BY seq", (record_kind, record_id),
        ).fetchall()
    except sqlite3.OperationalError:  # a journal from before signatures existed
        return []
    return [Signature(*row) for row in rows]


def read_signatures(journal_path: Path, record_kind: str, record_id: str) -> list[Signature]:
    """Offline (reports, `--journal`): read-only, never creates the table."""
    db = sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True)
    try:
        return signatures_in_db(db, record_kind, record_id)
    finally:
        db.close()
