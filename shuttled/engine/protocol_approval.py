"""The rules of the protocol lifecycle (SPEC §12): who may move a master recipe where, and what
a GMP instrument may start.

    draft ──Submit (authored)──▶ in_review ──Approve (approved, qa, not the author)──▶ approved
      └──────────────── Retire (approved, qa, reason) from any state ─────────────▶ retired

The interfaces check the role and the password; this class checks the state, the separation of
duties (the approver is not the author: Annex 11 §10, a change is checked by someone else) and
that the stored text is still the text that was signed. Every accepted step is a signature in the
signature book (chained into the audit trail) and a row of the lifecycle history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocols.model import Protocol
from shuttled.engine.operations_errors import OperationRefused
from shuttled.records.protocol_library import (
    APPROVED,
    DRAFT,
    IN_REVIEW,
    RETIRED,
    LibraryConflict,
    LibraryEntry,
    ProtocolLibrary,
)
from shuttled.records.signatures import Signature, SignatureBook

RECORD_KIND = "protocol"


@dataclass(frozen=True)
class Signer:
    """The person signing, as the interface proved them (password checked at this moment)."""

    name: str
    role: str
    full_name: str
    meaning: str
    comment: str = ""


class ProtocolApprovals:
    def __init__(self, library: ProtocolLibrary, signatures: SignatureBook, gmp: bool) -> None:
        self.library = library
        self.signatures = signatures
        self.gmp = gmp

    def register(self, protocol: Protocol, user: str,
                 origin: dict[str, Any] | None = None) -> LibraryEntry:
        try:
            entry, _ = self.library.register(
                identity=protocol.identity, name=protocol.name, version=protocol.version,
                sha256=protocol.sha256, text=protocol.text, user=user, origin=origin,
            )
        except LibraryConflict as conflict:
            raise OperationRefused(OperationRefused.ARGUMENT, str(conflict)) from None
        return entry

    def entry(self, identity: str) -> LibraryEntry:
        entry = self.library.get(identity)
        if entry is None:
            known = ", ".join(e.identity for e in self.library.entries()) or "none"
            raise OperationRefused(OperationRefused.ARGUMENT,
                                   f"no protocol {identity!r} in the library (known: {known})")
        if not entry.intact:
            raise OperationRefused(OperationRefused.STATE,
                                   f"{identity}: the stored text no longer matches its hash")
        return entry

    def _sign(self, entry: LibraryEntry, signer: Signer, meaning: str) -> Signature:
        if signer.meaning != meaning:
            raise OperationRefused(OperationRefused.ARGUMENT,
                                   f"this step needs a signature meaning {meaning!r}, "
                                   f"not {signer.meaning!r}")
        return self.signatures.sign(
            record_kind=RECORD_KIND, record_id=entry.identity, record_sha256=entry.sha256,
            signer=signer.name, role=signer.role, full_name=signer.full_name, meaning=meaning,
            comment=signer.comment,
        )

    def _expect(self, entry: LibraryEntry, states: tuple[str, ...], step: str) -> None:
        if entry.state not in states:
            raise OperationRefused(
                OperationRefused.STATE,
                f"{step} is not allowed for a protocol that is {entry.state} "
                f"(allowed when {' or '.join(states)})",
            )

    def authors(self, identity: str) -> set[str]:
        return {s.signer for s in self.signatures.of(RECORD_KIND, identity)
                if s.meaning == "authored"}

    def submit(self, identity: str, signer: Signer) -> str:
        entry = self.entry(identity)
        self._expect(entry, (DRAFT,), "Submit")
        self._sign(entry, signer, "authored")
        self._move(entry, IN_REVIEW, signer.name, "submitted for review")
        return IN_REVIEW

    def approve(self, identity: str, signer: Signer) -> str:
        entry = self.entry(identity)
        self._expect(entry, (IN_REVIEW,), "Approve")
        if signer.name in self.authors(identity):
            raise OperationRefused(
                OperationRefused.ARGUMENT,
                f"{signer.name} authored {identity} and may not also approve it: "
                "another qa user must",
            )
        self._sign(entry, signer, "approved")
        self._move(entry, APPROVED, signer.name, "approved")
        return APPROVED

    def retire(self, identity: str, signer: Signer, reason: str) -> str:
        entry = self.entry(identity)
        self._expect(entry, (DRAFT, IN_REVIEW, APPROVED), "Retire")
        self._sign(entry, signer, "approved")
        self._move(entry, RETIRED, signer.name, reason)
        return RETIRED

    def _move(self, entry: LibraryEntry, to_state: str, user: str, reason: str) -> None:
        try:
            self.library.move(entry.identity, entry.state, to_state, user, reason)
        except LibraryConflict as conflict:
            raise OperationRefused(OperationRefused.STATE, str(conflict)) from None

    def check_startable(self, identity: str) -> None:
        """In GMP mode only an approved, intact protocol starts (SPEC §12)."""
        if not self.gmp:
            return
        entry = self.library.get(identity)
        state = entry.state if entry is not None else "not in the library"
        if entry is None or entry.state != APPROVED:
            raise OperationRefused(
                OperationRefused.STATE,
                f"{identity} is {state}: in GMP mode only approved protocols start",
            )
        if not entry.intact:
            raise OperationRefused(OperationRefused.STATE,
                                   f"{identity}: the stored text no longer matches its hash")

    def describe(self, identity: str, with_text: bool = True) -> dict[str, Any]:
        entry = self.library.get(identity)
        if entry is None:
            raise OperationRefused(OperationRefused.ARGUMENT, f"no protocol {identity!r}")
        return describe_entry(entry, self.signatures.of(RECORD_KIND, identity), with_text)

    def listing(self) -> list[dict[str, Any]]:
        return [describe_entry(e, self.signatures.of(RECORD_KIND, e.identity), False)
                for e in self.library.entries()]


def describe_entry(entry: LibraryEntry, signatures: list[Signature],
                   with_text: bool) -> dict[str, Any]:
    """The JSON every interface shows: state, history, signatures with their status."""
    current = entry.content_sha256
    data: dict[str, Any] = {
        "identity": entry.identity, "name": entry.name, "version": entry.version,
        "sha256": entry.sha256, "state": entry.state, "intact": entry.intact,
        "origin": entry.origin, "added_utc": entry.added_utc, "added_by": entry.added_by,
        "history": [t.__dict__ for t in entry.history],
        "signatures": [s.to_json(current) for s in signatures],
    }
    if with_text:
        data["text"] = entry.text
    return data
