"""The run report prints the audit trail's latest signed anchor (SPEC §12): a copy on paper of
where the trail stood, so a later cut on the instrument cannot match it."""

from __future__ import annotations

import json
from pathlib import Path

from test_report_edge_cases import RUN, _held_journal

from shuttled.records.audit import AuditTrail, utc_now
from shuttled.records.audit_anchors import ANCHORS_FILE, AnchorLog
from shuttled.records.instrument_key import load_or_create
from shuttled.reports.data import load_report_data
from shuttled.reports.html import render_report


def test_the_audit_section_shows_the_latest_anchor_and_its_signature(tmp_path: Path) -> None:
    journal = _held_journal(tmp_path)
    html = render_report(load_report_data(journal, RUN))
    assert "The audit trail has no signed anchor yet" in html

    trail = AuditTrail(journal)
    key = load_or_create(tmp_path)
    trail.attach_anchors(AnchorLog(tmp_path / ANCHORS_FILE, key, utc_now))  # anchors head 4
    count, head = trail.head()
    trail.close()
    html = render_report(load_report_data(journal, RUN))
    section = html[html.index('<section id="audit">'):]
    assert f"Audit trail anchored at record {count} on " in section
    assert head in section and key.key_id in section and "signature verified" in section

    path = tmp_path / ANCHORS_FILE
    line = json.loads(path.read_text())
    path.write_text(json.dumps({**line, "count": 99}) + "\n")
    html = render_report(load_report_data(journal, RUN))
    assert "anchored at record 99" in html and "signature does not verify" in html
