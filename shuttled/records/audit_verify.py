"""`audit verify`: the chain, the table, and the signed anchors, with the first problem named.

Online (the daemon's own connection and key) and offline (a journal file, the anchors file and
the public key beside it, or given explicitly) run the same checks, in this order, and the first
problem found is the answer:

1. the audit table exists (a dropped table is `missing_table`, not an empty trail);
2. every line of the anchors file is an anchor, signed by the instrument key, following the one
   before it (`anchor_invalid`: the anchors file was edited);
3. the chain itself (`edited`, `deleted`, `inserted`, `reordered`, audit_chain.py);
4. every anchor against the table: fewer records than an anchor counts is `truncated`, another
   hash at an anchored count is `rewritten` (cut off and written again, or rewritten wholesale).

A trail of at least INTERVAL records without any anchors file is `anchors_missing`: the daemon
would have written one, so it was removed (or not copied along: `--anchors FILE`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

from shuttled.records.audit_anchors import ANCHORS_FILE, INTERVAL, AnchorFile, read_anchor_file
from shuttled.records.audit_chain import (
    ANCHOR_INVALID,
    ANCHORS_MISSING,
    GENESIS,
    MISSING_TABLE,
    REWRITTEN,
    TRUNCATED,
    UNREADABLE,
    Verification,
    walk,
)
from shuttled.records.instrument_key import PUBLIC_KEY_FILE, PublicKey

ROWS = "SELECT seq, content, hash FROM audit ORDER BY seq"


def _table_exists(db: sqlite3.Connection) -> bool:
    row = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'")
    return row.fetchone() is not None


def _anchor_problem(content: AnchorFile, public: PublicKey | None, where: str) -> str | None:
    """The first line of the anchors file that is not a valid, signed, linked anchor."""
    if content.unreadable:
        number, why = content.unreadable[0]
        return f"{where} line {number} is not an anchor ({why}): the anchors file was edited"
    if public is None:
        return (f"cannot check the signatures of {where}: no public key of the instrument "
                "(give --public-key FILE)")
    previous = GENESIS
    for number, anchor in content.anchors:
        if anchor.key != public.key_id:
            return (f"{where} line {number} (record {anchor.count}) was signed by key "
                    f"{anchor.key}, not by the instrument key {public.key_id}")
        if not anchor.verifies_with(public):
            return (f"{where} line {number} (record {anchor.count}, {anchor.utc}) has a "
                    "signature that does not verify: the anchors file was edited")
        if anchor.previous != previous:
            what = "the first anchor is missing" if number == 1 else (
                "an anchor before it was removed, added or moved")
            return f"{where} line {number} does not follow the line before it: {what}"
        previous = anchor.link()
    return None


def verify_database(
    db: sqlite3.Connection, anchors_path: Path | None, public: PublicKey | None
) -> Verification:
    """Every check of the module docstring, on an open connection to the journal."""
    if anchors_path is not None and anchors_path.exists():
        try:
            content: AnchorFile | None = read_anchor_file(anchors_path)
        except OSError as error:
            return Verification(False, 0, GENESIS, None,
                                f"cannot read the anchors file {anchors_path}: {error.strerror}",
                                ANCHOR_INVALID)
    else:
        content = None
    anchors = content.anchors if content is not None else []
    last = anchors[-1][1] if anchors else None
    context = {
        "anchors": len(anchors), "last_anchor": last.to_json() if last else None,
        "key_id": public.key_id if public is not None else "",
        "notes": (f"{anchors_path}: an incomplete last line was ignored (a write cut short)",)
        if content is not None and content.torn_tail else (),
    }
    try:
        if not _table_exists(db):
            why = (f"it was dropped (the anchors say {last.count} records)" if last
                   else "dropped, or this journal never had one")
            return Verification(False, 0, GENESIS, None, f"the journal has no audit table: {why}",
                                MISSING_TABLE, **context)
        if content is not None:
            where = anchors_path.name if anchors_path is not None else ANCHORS_FILE
            problem = _anchor_problem(content, public, where)
            if problem is not None:
                return Verification(False, 0, GENESIS, None, problem, ANCHOR_INVALID, **context)
        counts = frozenset(anchor.count for _, anchor in anchors)
        chain, hashes = walk(db.execute(ROWS), counts)
    except sqlite3.DatabaseError as error:
        return Verification(False, 0, GENESIS, None, f"the journal cannot be read: {error}",
                            UNREADABLE, **context)
    chain = replace(chain, **context)
    if not chain.ok:
        return chain
    for number, anchor in anchors:
        if anchor.count > chain.records:
            missing = anchor.count - chain.records
            return replace(chain, ok=False, broken_seq=chain.records + 1, kind=TRUNCATED,
                           problem=f"the trail has {chain.records} records but the anchor of "
                           f"{anchor.utc} (line {number}) says {anchor.count}: "
                           f"{missing} records at its end were removed")
        if hashes.get(anchor.count) != anchor.hash:
            return replace(chain, ok=False, broken_seq=anchor.count, kind=REWRITTEN,
                           problem=f"record {anchor.count} does not match the anchor of "
                           f"{anchor.utc} (line {number}): the trail was cut off and written "
                           "again, or rewritten")
    if anchors_path is not None and content is None and chain.records >= INTERVAL:
        return replace(chain, ok=False, kind=ANCHORS_MISSING,
                       problem=f"the trail has {chain.records} records but there is no anchors "
                       f"file {anchors_path}; the daemon writes one every {INTERVAL} records: "
                       "it was removed (or give --anchors FILE)")
    return chain


def verify_journal(
    path: Path, anchors_path: Path | None = None, public_key: Path | None = None
) -> Verification:
    """Offline check of a journal file, read-only (for `shuttlectl audit verify --journal`).
    The anchors file and public key default to the ones beside the journal."""
    anchors_path = anchors_path or path.parent / ANCHORS_FILE
    key_path = public_key or path.parent / PUBLIC_KEY_FILE
    public = PublicKey.load(key_path) if public_key is not None or key_path.exists() else None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return verify_database(db, anchors_path, public)
    finally:
        db.close()
