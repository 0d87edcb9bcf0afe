"""Review and release of a batch record (SPEC §12), and what each needs.

    open ──Review (reviewed; supervisor or qa; run ended)──▶ reviewed
    reviewed ──Release (released; qa; the review still matches)──▶ released (frozen)

A review signs the record as it is at that moment; if the record changes afterwards (an alarm
acknowledged late, an intervention on the unit) the review shows as broken and release needs a
new one. Release signs and freezes the content; a released record is never reviewed, released
or changed again, and what comes later is shown as addenda.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shuttled.engine.operations_errors import OperationRefused
from shuttled.engine.protocol_approval import Signer
from shuttled.records.audit import utc_now
from shuttled.records.record_releases import AlreadyReleased, freeze
from shuttled.records.signatures import SignatureBook
from shuttled.reports.batch_record import (
    RECORD_KIND,
    build_record,
    record_sha256,
    run_has_ended,
    signed_content,
)
from shuttled.reports.data import ReportUnavailable


class RecordReview:
    def __init__(self, journal: Path, signatures: SignatureBook) -> None:
        self.journal = journal
        self.signatures = signatures

    def record(self, run_id: str) -> dict[str, Any]:
        try:
            return build_record(self.journal, run_id)
        except ReportUnavailable as unavailable:
            raise OperationRefused(OperationRefused.ARGUMENT, str(unavailable)) from None

    def _open_record(self, run_id: str, step: str, meaning: str, signer: Signer) -> dict:
        if signer.meaning != meaning:
            raise OperationRefused(OperationRefused.ARGUMENT,
                                   f"{step} needs a signature meaning {meaning!r}, "
                                   f"not {signer.meaning!r}")
        record = self.record(run_id)
        if record["review_status"] == "released":
            released = record["released"]
            raise OperationRefused(
                OperationRefused.STATE,
                f"{run_id} was released by {released['by']} at {released['utc']}: a released "
                "record is frozen; later entries are addenda")
        if not run_has_ended(record):
            raise OperationRefused(OperationRefused.STATE,
                                   f"{run_id} is {record['state']}: review it once it has ended")
        return record

    def _sign(self, record: dict[str, Any], signer: Signer) -> None:
        self.signatures.sign(
            record_kind=RECORD_KIND, record_id=record["run_id"],
            record_sha256=record_sha256(record), signer=signer.name, role=signer.role,
            full_name=signer.full_name, meaning=signer.meaning, comment=signer.comment,
            unit=record["unit"],
        )

    # Building a record is slow (the whole run from the journal) and may run in a worker thread;
    # signing writes through the daemon's own connections and runs where they were made.

    def check_review(self, run_id: str, signer: Signer) -> dict[str, Any]:
        return self._open_record(run_id, "ReviewRecord", "reviewed", signer)

    def check_release(self, run_id: str, signer: Signer) -> dict[str, Any]:
        record = self._open_record(run_id, "ReleaseRecord", "released", signer)
        if record["review_status"] != "reviewed":
            raise OperationRefused(
                OperationRefused.STATE,
                f"{run_id} needs a review of the record as it is now before release "
                "(none yet, or it changed after the review)")
        return record

    def sign_review(self, record: dict[str, Any], signer: Signer) -> str:
        self._sign(record, signer)
        return "reviewed"

    def sign_release(self, record: dict[str, Any], signer: Signer) -> str:
        try:
            freeze(self.journal, record["run_id"], signed_content(record), utc_now(),
                   signer.name)
        except AlreadyReleased as released:
            raise OperationRefused(OperationRefused.STATE, str(released)) from None
        self._sign(record, signer)
        return "released"

    def review(self, run_id: str, signer: Signer) -> str:
        return self.sign_review(self.check_review(run_id, signer), signer)

    def release(self, run_id: str, signer: Signer) -> str:
        return self.sign_release(self.check_release(run_id, signer), signer)
