"""The batch record for people: one self-contained HTML page (and, from it, the PDF).

It opens with what a reviewer must decide on: the batch, cartridge and outcome, the review
status with its signatures, and the review by exception. What went to plan follows: approvals
of the protocol, phases, transfers, operator steps. The audit-chain head closes it, so a printed
copy can be held against the trail later.
"""

from __future__ import annotations

from html import escape
from typing import Any

from shuttled.reports.html import CSS

EXTRA_CSS = """
.status{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;color:#fff}
.open{background:#8a6d00}.reviewed{background:#1f5fa8}.released{background:#1e7d32}
.exceptions li{margin:2px 0}.none{color:#1e7d32;font-weight:600}
"""


def _cell(value: Any) -> str:
    return f"<td>{escape('' if value is None else str(value))}</td>"


def _table(headers: list[str], rows: list[list[Any]], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _signature_rows(signatures: list[dict[str, Any]]) -> list[list[Any]]:
    return [[s["meaning"], f"{s['full_name']} ({s['signer']})", s["utc"], s.get("comment", ""),
             "BROKEN: the record changed after signing" if s.get("status") == "broken"
             else "signed"] for s in signatures]


def _exceptions(record: dict[str, Any]) -> str:
    deviations = record["deviations"]
    if not deviations:
        return '<p class="none">No exceptions: no alarm, hold, out-of-band interval, ' \
               "operator intervention or short transfer.</p>"
    items = "".join(f"<li><b>{escape(d['kind'])}</b> {escape(d['when'] or '')} — "
                    f"{escape(d['what'])}</li>" for d in deviations)
    return f'<ul class="exceptions">{items}</ul>'


def _steps(record: dict[str, Any]) -> str:
    rows = []
    for step in record["operator_steps"]:
        values = ", ".join(f"{k}={v}" for k, v in (step.get("values") or {}).items())
        who = []
        for meaning in ("performed", "verified"):
            done = step.get(meaning)
            if done:
                who.append(f"{meaning} by {done.get('full_name') or done.get('by')}")
            elif meaning == "performed" or step.get("verify"):
                who.append(f"NOT {meaning}")
        auto = " (answered by the simulation)" if step.get("auto") else ""
        rows.append([step.get("reached_h"), step.get("prompt"), values, "; ".join(who) + auto])
    return _table(["reached h", "prompt", "values", "signed"], rows,
                  "the protocol has no operator steps")


def render_record(record: dict[str, Any]) -> str:
    status = record["review_status"]
    protocol = record["protocol"]
    released = record.get("released") or {}
    head = record["audit_head"]
    sections = [
        f'<h1>Batch record {escape(record["run_id"])}</h1>',
        f'<p class="sub">Batch <b>{escape(str(record["batch"] or "(none bound)"))}</b> · '
        f'cartridge <b>{escape(str(record["cartridge"] or "(not checked)"))}</b> · unit '
        f'{escape(record["unit"])} · outcome <b>{escape(record["state"])}</b> · '
        f'{record.get("duration_h")} h · review status '
        f'<span class="status {escape(status)}">{escape(status)}</span></p>',
        "<h2>Review by exception</h2>", _exceptions(record),
        "<h2>Review and release</h2>",
        _table(["meaning", "signed by", "UTC", "comment", "status"],
               _signature_rows(record["signatures"]), "not reviewed yet"),
    ]
    if released:
        sections.append(f'<p>Released {escape(released["utc"])} by {escape(released["by"])}; '
                        f'frozen content SHA-256 <span class="mono">{escape(released["sha256"])}'
                        "</span>" + ("" if released.get("intact") else
                                     ' — <b class="refused">the frozen copy was changed</b>')
                        + "</p>")
    sections += [
        "<h2>Protocol</h2>",
        f'<p><span class="mono">{escape(protocol["identity"])}</span> — library state '
        f'{escape(protocol["state"] or "unknown")}</p>',
        _table(["meaning", "signed by", "UTC", "comment", "status"],
               _signature_rows(record["approvals"]), "the protocol carries no signatures"),
        "<h2>Phases</h2>",
        _table(["phase", "start h", "end h"],
               [[p["name"], p["start_h"], p["end_h"]] for p in record["phases"]], "no phase ran"),
        "<h2>Transfers</h2>",
        _table(["kind", "pump", "requested mL", "delivered mL", "start h"],
               [[t["kind"], t["pump"], t["requested_ml"], t["delivered_ml"], t["started_h"]]
                for t in record["transfers"]], "no transfer"),
        "<h2>Operator steps</h2>", _steps(record),
        "<h2>Alarms</h2>",
        _table(["alarm", "when", "transition", "by", "comment"],
               [[a.get("name"), a.get("utc") or a.get("raised_utc"), a.get("kind", "raised"),
                 a.get("user"), a.get("comment") or a.get("detail")] for a in record["alarms"]],
               "no alarm"),
        "<h2>Holds</h2>",
        _table(["held at h", "reason", "by", "released at h", "by"],
               [[h["at_h"], h["reason"], h["by"], h["released_at_h"], h["released_by"]]
                for h in record["holds"]], "no hold"),
    ]
    if record["addenda"]:
        sections += ["<h2>Addenda (after release)</h2>",
                     _table(["UTC", "user", "what", "result"],
                            [[a["utc"], a["user"], f"{a['method']} {a['reason']}", a["result"]]
                             for a in record["addenda"]], "none")]
    sections.append(f'<footer>Audit trail head when printed: {head["count"]} records, '
                    f'<span class="mono">{escape(head["hash"])}</span>. Record format '
                    f'{escape(record["format"])}.</footer>')
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<title>Batch record {escape(record["run_id"])}</title>'
            f"<style>{CSS}{EXTRA_CSS}</style></head><body>" + "".join(sections)
            + "</body></html>")
