"""The audit trail's latest signed anchor, as a report prints it (SPEC §12).

A printed report is one of the copies that leave the machine: the anchor it shows (record count,
head hash, time, key id) pins the trail as it was when the report was made, so a later cut or
rewrite on the instrument cannot match the paper. Read from the files beside the journal; a
report is never refused for an anchor it cannot read, it says so instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shuttled.records.audit_anchors import ANCHORS_FILE, read_anchor_file
from shuttled.records.instrument_key import InstrumentKeyError, load_public_key


@dataclass(frozen=True)
class AnchorSummary:
    count: int
    hash: str
    utc: str
    key: str
    signature_ok: bool | None  # None: no public key beside the journal to check it with


def latest_anchor(journal: Path) -> AnchorSummary | None:
    """The last anchor in `audit-anchors` beside the journal; None when there is none."""
    try:
        content = read_anchor_file(journal.parent / ANCHORS_FILE)
    except OSError:
        return None
    if not content.anchors:
        return None
    _, anchor = content.anchors[-1]
    try:
        signature_ok: bool | None = anchor.verifies_with(load_public_key(journal.parent))
    except InstrumentKeyError:
        signature_ok = None
    return AnchorSummary(anchor.count, anchor.hash, anchor.utc, anchor.key, signature_ok)
