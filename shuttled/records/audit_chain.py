"""The audit trail's hash chain (SPEC §10) as pure functions: canonical content, link, walk.

Each record's hash is SHA-256 over the previous record's hash followed by the canonical JSON of
its own content (sequence number included, so a deleted record breaks the chain at the next one).
The walk names the first record that does not fit, and says how it does not fit: a record that
was edited, deleted, inserted or moved. What a walk cannot see — records missing after the last
one, or a table rewritten from its first record on — is for the signed anchors
(audit_anchors.py, audit_verify.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64

# What a failed verification names (Verification.kind); "" when the trail verified.
EDITED = "edited"
DELETED = "deleted"
INSERTED = "inserted"
REORDERED = "reordered"
TRUNCATED = "truncated"
REWRITTEN = "rewritten"
MISSING_TABLE = "missing_table"
ANCHOR_INVALID = "anchor_invalid"
ANCHORS_MISSING = "anchors_missing"
UNREADABLE = "unreadable"


def canonical(content: dict[str, Any]) -> str:
    """One byte sequence per content: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(previous: str, content_json: str) -> str:
    return hashlib.sha256((previous + content_json).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Verification:
    """The answer of `audit verify`: the first problem found (kind, record, one sentence), or ok.

    `head` is the hash of the last record that verified; `anchors` how many signed anchors were
    checked and `last_anchor` the newest of them (as written in the anchors file)."""

    ok: bool
    records: int
    head: str
    broken_seq: int | None = None
    problem: str = ""
    kind: str = ""
    anchors: int = 0
    last_anchor: dict[str, Any] | None = None
    key_id: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "records": self.records, "head": self.head,
            "broken_record": self.broken_seq, "problem": self.problem, "kind": self.kind,
            "anchors": self.anchors, "last_anchor": self.last_anchor, "key_id": self.key_id,
            "notes": list(self.notes),
        }


def walk(rows: Iterable[tuple[int, str, str]], keep: frozenset[int] = frozenset()
         ) -> tuple[Verification, dict[int, str]]:
    """Walk the chain; the first record whose position, content or hash does not fit is named.
    Also returns the hashes of the records numbered in `keep` (the anchored counts) that the
    walk reached."""
    previous, expected_seq, count = GENESIS, 1, 0
    kept: dict[int, str] = {}
    for seq, text, digest in rows:
        try:
            content_seq = json.loads(text).get("seq")
        except (ValueError, AttributeError):
            content_seq = None
        if seq != expected_seq:
            if seq > expected_seq:
                kind = DELETED
                problem = (f"record {expected_seq} is missing "
                           f"(record {seq} follows record {expected_seq - 1})")
            else:
                kind, problem = REORDERED, f"record {seq} is out of order"
            return Verification(False, count, previous, expected_seq, problem, kind), kept
        if content_seq != seq:
            # Shifted up (content of an earlier number): something was inserted before it;
            # otherwise it was moved here from a later place.
            moved_up = not isinstance(content_seq, int) or content_seq < seq
            return Verification(
                False, count, previous, seq,
                f"record {seq} carries sequence number {content_seq} (inserted or moved)",
                INSERTED if moved_up else REORDERED,
            ), kept
        if chain_hash(previous, text) != digest:
            return Verification(
                False, count, previous, seq,
                f"record {seq} does not match its hash (edited, or the chain before it was)",
                EDITED,
            ), kept
        if seq in keep:
            kept[seq] = digest
        previous, expected_seq, count = digest, expected_seq + 1, count + 1
    return Verification(True, count, previous), kept


def verify_rows(rows: Iterable[tuple[int, str, str]]) -> Verification:
    """The chain alone (no anchors)."""
    return walk(rows)[0]
