"""The electronic batch record of one run (SPEC §12): what QA reviews and releases.

Built only from the journal (read-only), like the run report it draws on (data.py), so it can be
made while the daemon runs or years later from a copy. Its first section is the review by
exception: every alarm, hold, out-of-band interval and operator intervention, so a reviewer reads
what went wrong before what went right.

What a review or release signature binds to is the record's content without its signatures, its
review state and the moving audit head (`signed_content`): an entry that changes the content
after a review (an alarm acknowledged later, say) shows the review as broken. Once released, the
record is the frozen copy (records/record_releases.py) and later entries are addenda.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from shuttled.records.audit import AuditRecord, read_journal
from shuttled.records.record_releases import read_release
from shuttled.records.signatures import Signature, canonical_sha256, read_signatures
from shuttled.reports.batch_record_sources import (
    batch_of_run,
    holds_of,
    hours_of,
    operator_steps_of,
    out_of_band_intervals,
    utc_of,
)
from shuttled.reports.data import ReportData, load_report_data

RECORD_KIND = "batch_record"
FORMAT = "shuttled-batch-record/1"
UNSIGNED_KEYS = ("signatures", "review_status", "audit_head", "addenda", "released")
INTERVENTIONS = {"Hold", "Restart", "Stop", "Abort", "Reset", "Confirm", "Verify", "Start"}
ENDED = ("COMPLETE", "STOPPED", "ABORTED")
# Calls about the record itself (reading, reviewing, releasing it and their signatures) are in
# the audit trail, but they are not entries of the batch: no addenda.
RECORD_METHODS = {"Sign", "ReadRecord", "ReviewRecord", "ReleaseRecord"}


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 3)


def signed_content(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in UNSIGNED_KEYS}


def record_sha256(record: dict[str, Any]) -> str:
    return canonical_sha256(signed_content(record))


def _interventions(data: ReportData) -> list[dict[str, Any]]:
    return [
        {"utc": r.time, "user": r.user, "role": r.role, "method": r.method,
         "reason": r.reason, "result": r.result, "detail": r.detail}
        for r in data.audit if r.method in INTERVENTIONS and r.method != "Start"
    ]


def _alarms(data: ReportData) -> list[dict[str, Any]]:
    """The alarm lifecycle where the journal has it (SPEC §13), else the alarm intervals."""
    if data.alarm_lifecycle:
        return [{k: e.get(k) for k in ("name", "utc", "kind", "state", "severity", "user",
                                        "comment")} for e in data.alarm_lifecycle]
    return [{"name": a.name, "raised_utc": utc_of(a.raised_at), "cleared_utc": utc_of(a.cleared_at),
             "detail": a.detail} for a in data.alarms]


def _deviations(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Review by exception: one line per thing a reviewer must look at, oldest first."""
    items: list[dict[str, Any]] = []
    for alarm in record["alarms"]:
        if alarm.get("kind", "raised") in ("raised", "activated", "active") or "raised_utc" in \
                alarm:
            items.append({"kind": "alarm", "when": alarm.get("utc") or alarm.get("raised_utc"),
                          "what": f"alarm {alarm['name']}"
                          + (f" (severity {alarm['severity']})" if alarm.get("severity") else "")})
    for hold in record["holds"]:
        items.append({"kind": "hold", "when": hold["utc"] or f"{hold['at_h']} h",
                      "what": f"held: {hold['reason']} (by {hold['by']})"})
    for band in record["out_of_band"]:
        items.append({"kind": "out_of_band", "when": band["from_utc"] or f"{band['from_h']} h",
                      "what": f"temperature out of band for {band['minutes']:.0f} min "
                      f"(largest deviation {band['max_deviation_k']:.2f} K)"})
    for step in record["interventions"]:
        items.append({"kind": "intervention", "when": step["utc"],
                      "what": f"{step['method']} by {step['user']}: {step['reason']} "
                      f"({step['result']})"})
    for transfer in record["transfers"]:
        requested, delivered = transfer["requested_ml"], transfer["delivered_ml"]
        if requested is not None and (delivered is None or abs(delivered - requested) > 0.05):
            items.append({"kind": "transfer", "when": transfer["started_utc"],
                          "what": f"{transfer['pump']}: {delivered} of {requested} mL delivered"})
    for step in record["operator_steps"]:
        if not step.get("complete"):
            items.append({"kind": "operator_step", "when": f"{step.get('reached_h')} h",
                          "what": f"operator step not completed: {step.get('prompt')}"})
        elif step.get("auto"):
            items.append({"kind": "operator_step", "when": f"{step.get('reached_h')} h",
                          "what": f"answered by the simulation, not by people: "
                          f"{step.get('prompt')}"})
    if record["state"] not in ("COMPLETE",):
        items.append({"kind": "outcome", "when": None, "what": f"run ended {record['state']}"})
    if record["protocol"]["state"] not in ("approved", ""):
        items.append({"kind": "protocol", "when": None,
                      "what": f"protocol is {record['protocol']['state']} in the library"})
    return items  # grouped by kind, each kind in the order it happened


def build_live_record(journal: Path, run_id: str) -> dict[str, Any]:
    data = load_report_data(journal, run_id)
    batch, cartridge = batch_of_run(journal, run_id)
    run_text_sha = data.run_text_sha256
    record: dict[str, Any] = {
        "format": FORMAT,
        "run_id": run_id,
        "batch": batch,
        "cartridge": cartridge,
        "unit": data.unit,
        "state": data.final_state,
        "started_utc": utc_of(data.started_at),
        "ended_utc": utc_of(data.ended_at),
        "duration_h": hours_of(data.ended_at, data),
        "protocol": {"identity": data.identity, "sha256": run_text_sha,
                     "state": data.protocol_state,
                     "name": data.protocol.name if data.protocol else "",
                     "version": data.protocol.version if data.protocol else ""},
        "parameters": data.parameters,
        "approvals": [s.to_json(run_text_sha) for s in data.approvals],
        "phases": [{"name": name, "start_h": hours_of(start, data),
                    "end_h": hours_of(end, data), "start_utc": utc_of(start),
                    "end_utc": utc_of(end)} for name, start, end in data.phases],
        "transfers": [{"kind": t.kind, "pump": t.pump, "requested_ml": _number(t.requested_ml),
                       "delivered_ml": _number(t.delivered_ml),
                       "started_h": hours_of(t.started_at, data),
                       "started_utc": utc_of(t.started_at),
                       "ended_utc": utc_of(t.ended_at)} for t in data.transfers],
        "operator_steps": operator_steps_of(data, journal),
        "alarms": _alarms(data),
        "holds": holds_of(data),
        "out_of_band": out_of_band_intervals(data),
        "interventions": _interventions(data),
    }
    record["deviations"] = _deviations(record)
    return record


def _audit_head(records: list[AuditRecord]) -> dict[str, Any]:
    return {"count": len(records), "hash": records[-1].hash if records else ""}


def build_record(journal: Path, run_id: str) -> dict[str, Any]:
    """The record as a reader sees it now: live until released, then the frozen copy with
    later entries as addenda; with every review and release signature and its status."""
    release = read_release(journal, run_id)
    audit = read_journal(journal)
    if release is None:
        record = build_live_record(journal, run_id)
        record["review_status"] = "open"
        record["addenda"] = []
    else:
        record = dict(release.content)
        record["review_status"] = "released"
        record["released"] = {"utc": release.released_utc, "by": release.released_by,
                              "sha256": release.sha256, "intact": release.intact}
        record["addenda"] = _addenda(audit, record, release.released_utc)
    signatures: list[Signature] = read_signatures(journal, RECORD_KIND, run_id)
    current = record_sha256(record)
    record["signatures"] = [s.to_json(current) for s in signatures]
    if release is None and any(s.meaning == "reviewed" and s.status(current) == "signed"
                               for s in signatures):
        record["review_status"] = "reviewed"
    record["audit_head"] = _audit_head(audit)
    return record


def _addenda(audit: list[AuditRecord], record: dict[str, Any], since: str) -> list[dict]:
    """What the audit trail says about this run or its unit after the release."""
    return [
        {"utc": r.time, "user": r.user, "method": r.method, "reason": r.reason,
         "result": r.result, "detail": r.detail}
        for r in audit
        if r.time > since and r.method not in RECORD_METHODS
        and (r.arguments.get("run_id") == record["run_id"]
             or (r.method.startswith("Alarm") and r.unit == record["unit"]))
    ]


def run_has_ended(record: dict[str, Any]) -> bool:
    return record["state"] in ENDED
