"""Signed anchors of the audit trail (SPEC §12), with a real SQLite journal and real files.

What the hash chain alone cannot see — a tail cut off, a table dropped, a trail cut and written
again — is held against the anchors; an anchors file that was edited is named as such. The
checks here are those of `audit verify` offline; test_audit_anchors_cli.py runs the command, and
tests/telemetry/test_audit_anchors_live.py the daemon.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from shuttled.records.audit import AuditTrail, utc_now, verify_journal
from shuttled.records.audit_anchors import ANCHORS_FILE, INTERVAL, Anchor, AnchorLog
from shuttled.records.instrument_key import load_or_create


def _append(trail: AuditTrail, records: int, first: int = 0) -> None:
    for i in range(first, first + records):
        trail.append(user="otto", role="operator", unit="U01", method="Hold",
                     arguments={"run_id": f"R{i}"}, reason=f"reason {i}", result="Good")


def _anchored(data: Path, records: int) -> AuditTrail:
    """The daemon's trail: anchors attached, `records` appended."""
    trail = AuditTrail(data / "journal.sqlite3")
    trail.attach_anchors(AnchorLog(data / ANCHORS_FILE, load_or_create(data), utc_now))
    _append(trail, records)
    return trail


def _tamper(path: Path, *statements: str) -> None:
    """What someone with the file and sqlite3 could do: drop the guards, then change rows."""
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER IF EXISTS audit_no_update")
    db.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def _lines(data: Path) -> list[dict]:
    return [json.loads(line) for line in (data / ANCHORS_FILE).read_text().splitlines()]


def test_every_hundredth_record_is_anchored_signed_and_linked(tmp_path: Path) -> None:
    trail = _anchored(tmp_path, 2 * INTERVAL + 50)
    anchors = [Anchor.from_json(line) for line in _lines(tmp_path)]
    assert [a.count for a in anchors] == [100, 200]
    key = load_or_create(tmp_path)
    assert all(a.verifies_with(key.public) and a.key == key.key_id for a in anchors)
    assert anchors[1].previous == anchors[0].link()
    records = trail.records()
    assert anchors[1].hash == records[199].hash
    assert trail.anchor_now() is not None and trail.anchor_now() is None  # head 250, once
    assert _lines(tmp_path)[-1]["count"] == 250
    result = trail.verify()
    assert result.ok and result.anchors == 3 and result.last_anchor["count"] == 250
    assert (tmp_path / ANCHORS_FILE).stat().st_mode & 0o777 == 0o640
    trail.close()


def test_records_written_by_another_process_are_anchored_at_the_next_append(
    tmp_path: Path,
) -> None:
    daemon = _anchored(tmp_path, 98)
    tool = AuditTrail(tmp_path / "journal.sqlite3")  # as `shuttlectl user` appends offline
    _append(tool, 5)
    tool.close()
    assert not (tmp_path / ANCHORS_FILE).exists()
    _append(daemon, 1)  # record 104: past the boundary that has no anchor yet
    assert [line["count"] for line in _lines(tmp_path)] == [104]
    daemon.close()


def test_a_truncated_tail_is_named_even_with_the_triggers_dropped(tmp_path: Path) -> None:
    _anchored(tmp_path, 103).close()
    journal = tmp_path / "journal.sqlite3"
    assert verify_journal(journal).ok
    _tamper(journal, "DELETE FROM audit WHERE seq > 97")
    result = verify_journal(journal)
    assert not result.ok and result.kind == "truncated" and result.records == 97
    assert "the trail has 97 records but the anchor of" in result.problem
    assert "says 100" in result.problem


def test_a_tail_cut_off_and_written_again_is_named(tmp_path: Path) -> None:
    _anchored(tmp_path, 100).close()
    journal = tmp_path / "journal.sqlite3"
    _tamper(journal, "DELETE FROM audit WHERE seq > 95")
    forger = AuditTrail(journal)  # a valid chain again, five records other than the anchored
    _append(forger, 5, first=1000)
    forger.close()
    result = verify_journal(journal)
    assert not result.ok and result.kind == "rewritten" and result.broken_seq == 100


def test_a_dropped_table_is_named_not_taken_for_an_empty_trail(tmp_path: Path) -> None:
    _anchored(tmp_path, 100).close()
    journal = tmp_path / "journal.sqlite3"
    _tamper(journal, "DROP TABLE audit")
    result = verify_journal(journal)
    assert not result.ok and result.kind == "missing_table"
    assert "no audit table" in result.problem and "100 records" in result.problem


def test_a_journal_that_never_had_the_table_is_not_intact_either(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    sqlite3.connect(journal).execute("CREATE TABLE runs (id)").connection.close()
    result = verify_journal(journal)
    assert not result.ok and result.kind == "missing_table"


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda lines: [{**lines[0], "count": 99}, *lines[1:]], "does not verify"),
        (lambda lines: [{**lines[0], "hash": "0" * 64}, *lines[1:]], "does not verify"),
        (lambda lines: lines[1:], "line 1 does not follow"),
        (lambda lines: [lines[0], lines[2]], "line 2 does not follow"),
        (lambda lines: [lines[1], lines[0], lines[2]], "line 1 does not follow"),
        (lambda lines: [*lines[:2], {"count": 300}], "line 3 is not an anchor"),
    ],
    ids=["count", "hash", "first-removed", "middle-removed", "reordered", "garbage"],
)
def test_an_edited_anchors_file_is_named(tmp_path: Path, edit, named: str) -> None:
    _anchored(tmp_path, 3 * INTERVAL).close()
    path = tmp_path / ANCHORS_FILE
    lines = edit(_lines(tmp_path))
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = verify_journal(tmp_path / "journal.sqlite3")
    assert not result.ok and result.kind == "anchor_invalid"
    assert named in result.problem


def test_anchors_re_signed_with_another_key_are_named(tmp_path: Path) -> None:
    """Someone who made a key of their own and re-signed the anchors: the key beside the
    journal does not match them; a trusted copy of the public key catches a replaced one."""
    _anchored(tmp_path, INTERVAL).close()
    trusted = tmp_path / "trusted.pub.pem"
    trusted.write_bytes(load_or_create(tmp_path).public.pem)
    other = tmp_path / "other"
    forged_log = AnchorLog(tmp_path / "forged", load_or_create(other), utc_now)
    trail = AuditTrail(tmp_path / "journal.sqlite3")
    forged_log.append(*trail.head())
    trail.close()
    (tmp_path / ANCHORS_FILE).write_bytes((tmp_path / "forged").read_bytes())
    result = verify_journal(tmp_path / "journal.sqlite3")
    assert not result.ok and "was signed by key" in result.problem
    # ... and with the key beside the journal replaced too, the trusted copy still says so
    (tmp_path / "instrument-key.pub.pem").write_bytes((other / "instrument-key.pub.pem")
                                                      .read_bytes())
    assert verify_journal(tmp_path / "journal.sqlite3").ok
    result = verify_journal(tmp_path / "journal.sqlite3", public_key=trusted)
    assert not result.ok and result.kind == "anchor_invalid"


def test_a_removed_anchors_file_is_named_once_an_anchor_was_due(tmp_path: Path) -> None:
    _anchored(tmp_path, INTERVAL).close()
    moved = tmp_path / "elsewhere"
    (tmp_path / ANCHORS_FILE).rename(moved)
    result = verify_journal(tmp_path / "journal.sqlite3")
    assert not result.ok and result.kind == "anchors_missing"
    assert verify_journal(tmp_path / "journal.sqlite3", anchors_path=moved).ok


def test_a_torn_last_line_is_ignored_by_verify_and_cut_off_by_the_daemon(tmp_path: Path) -> None:
    _anchored(tmp_path, INTERVAL).close()
    path = tmp_path / ANCHORS_FILE
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"count": 200, "hash": "ab')  # the power failed mid-write
    result = verify_journal(tmp_path / "journal.sqlite3")
    assert result.ok and result.notes and "incomplete last line" in result.notes[0]
    AnchorLog(path, load_or_create(tmp_path), utc_now)
    assert path.read_bytes() == whole


def test_the_daemon_records_what_it_finds_at_start(tmp_path: Path) -> None:
    """Truncated, table dropped, triggers dropped: logged, and a record of its own."""
    _anchored(tmp_path, 100).close()
    journal = tmp_path / "journal.sqlite3"
    _tamper(journal, "DELETE FROM audit WHERE seq > 90")
    trail = _anchored(tmp_path, 0)
    check = trail.records()[-1]
    assert check.method == "AuditTrailCheck" and check.result == "Bad"
    assert "the trail has 90 records" in check.detail
    assert "triggers" in trail.records()[-2].detail  # they were dropped too, and are back
    db = sqlite3.connect(journal)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit WHERE seq = 1")
    db.close()
    trail.close()

    _tamper(journal, "DROP TABLE audit")
    trail = _anchored(tmp_path, 0)
    (check,) = trail.records()
    assert "the audit table was missing" in check.detail
    trail.close()
    assert verify_journal(journal).kind == "truncated"  # history stays broken


def test_a_table_dropped_under_the_running_daemon_is_recorded_and_recreated(
    tmp_path: Path,
) -> None:
    trail = _anchored(tmp_path, 100)
    _tamper(tmp_path / "journal.sqlite3", "DROP TABLE audit")
    assert trail.verify().kind == "missing_table"
    _append(trail, 1)
    first, second = trail.records()
    assert first.method == "AuditTrailCheck" and "dropped while the daemon ran" in first.detail
    assert second.method == "Hold"
    assert trail.verify().kind == "truncated"
    trail.close()


def test_an_anchor_that_cannot_be_written_does_not_fail_the_record(tmp_path: Path) -> None:
    trail = _anchored(tmp_path, 99)
    (tmp_path / ANCHORS_FILE).mkdir()  # writing it now fails
    _append(trail, 1)
    assert trail.records()[-1].seq == 100
    (tmp_path / ANCHORS_FILE).rmdir()
    _append(trail, 1)  # the next record retries
    assert [line["count"] for line in _lines(tmp_path)] == [101]
    trail.close()
