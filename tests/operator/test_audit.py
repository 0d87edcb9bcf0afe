"""The hash-chained audit trail: edits, deletions and insertions are found and named."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from shuttled.records.audit import AuditTrail, canonical, chain_hash, verify_journal


def _trail(tmp_path: Path, records: int = 5) -> Path:
    path = tmp_path / "journal.sqlite3"
    trail = AuditTrail(path)
    for i in range(records):
        trail.append(
            user="otto", role="operator", unit="U01", method="Hold",
            arguments={"run_id": f"R{i}"}, reason=f"reason {i}", result="Good",
        )
    trail.close()
    return path


def _tamper(path: Path, *statements: str) -> None:
    """What someone with the file and sqlite3 could do: drop the guards, change rows."""
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("DROP TRIGGER audit_no_delete")
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def test_an_intact_trail_verifies_and_reports_its_head(tmp_path: Path) -> None:
    path = _trail(tmp_path)
    result = verify_journal(path)
    assert result.ok and result.records == 5
    assert result.head == AuditTrail(path).records()[-1].hash


def test_updates_and_deletes_are_refused_by_the_database(tmp_path: Path) -> None:
    path = _trail(tmp_path)
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit SET content = '{}' WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit WHERE seq = 2")
    db.close()


def test_an_edited_record_is_named(tmp_path: Path) -> None:
    path = _trail(tmp_path)
    db = sqlite3.connect(path)
    content = json.loads(db.execute("SELECT content FROM audit WHERE seq = 3").fetchone()[0])
    db.close()
    content["reason"] = "a better reason"
    _tamper(path, f"UPDATE audit SET content = '{canonical(content)}' WHERE seq = 3")
    result = verify_journal(path)
    assert not result.ok and result.broken_seq == 3 and result.records == 2
    assert "record 3" in result.problem


def test_a_deleted_record_is_named(tmp_path: Path) -> None:
    path = _trail(tmp_path)
    _tamper(path, "DELETE FROM audit WHERE seq = 2")
    result = verify_journal(path)
    assert not result.ok and result.broken_seq == 2
    assert "record 2 is missing" in result.problem


def test_the_last_record_deleted_is_caught_by_the_recorded_head(tmp_path: Path) -> None:
    path = _trail(tmp_path)
    head = verify_journal(path).head
    _tamper(path, "DELETE FROM audit WHERE seq = 5")
    assert verify_journal(path).head != head  # why verify prints the head: keep it elsewhere


def test_an_inserted_record_is_named_even_with_a_correct_hash(tmp_path: Path) -> None:
    path = _trail(tmp_path)
    db = sqlite3.connect(path)
    previous = db.execute("SELECT hash FROM audit WHERE seq = 2").fetchone()[0]
    db.close()
    forged = canonical({
        "seq": 3, "time": "2026-01-01T00:00:00.000Z", "user": "sue", "role": "supervisor",
        "unit": "U01", "method": "Abort", "arguments": {}, "reason": "never happened",
        "result": "Good", "detail": "",
    })
    # Make room after record 2 and slot the forgery in with a hash that fits its predecessor.
    _tamper(
        path,
        "UPDATE audit SET seq = seq + 100 WHERE seq >= 3",
        "UPDATE audit SET seq = seq - 99 WHERE seq >= 103",
        f"INSERT INTO audit (seq, content, hash) VALUES (3, '{forged}', "
        f"'{chain_hash(previous, forged)}')",
    )
    result = verify_journal(path)
    assert not result.ok and result.broken_seq == 4
    assert "record 4" in result.problem


def test_records_keep_every_field(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "journal.sqlite3", now=lambda: "2026-01-02T03:04:05.678Z")
    record = trail.append(
        user="sue", role="supervisor", unit="U02", method="Start",
        arguments={"protocol": "demo@1.0.0#3cb482e7a49f", "parameters": {}},
        reason="batch 7", result="Good", detail="CS-U02-0001",
    )
    again = trail.records(unit="U02")[0]
    assert again == record and again.time == "2026-01-02T03:04:05.678Z"
    assert trail.records(unit="U01") == []


@pytest.mark.parametrize(
    ("tampering", "named"),
    [
        ("UPDATE audit SET content = replace(content, 'reason 3', 'reason X') WHERE seq = 4", 4),
        ("DELETE FROM audit WHERE seq = 3", 3),
        ("INSERT INTO audit (seq, content, hash) VALUES (6, '{\"seq\": 6}', 'x')", 6),
    ],
)
def test_shuttlectl_audit_verify_names_the_broken_record_offline(
    tmp_path: Path, tampering: str, named: int
) -> None:
    path = _trail(tmp_path)
    _tamper(path, tampering)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "shuttlectl"), "audit", "verify", "--journal",
         str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert f"broken at record {named}:" in result.stderr and result.stderr.count("\n") == 1


def test_each_kind_of_tampering_is_named_by_its_kind(tmp_path: Path) -> None:
    """What `--json` gives a script: edited, deleted, inserted, reordered."""
    cases = {
        "edited": ["UPDATE audit SET content = replace(content, 'reason 1', 'reason X') "
                   "WHERE seq = 2"],
        "deleted": ["DELETE FROM audit WHERE seq = 2"],
        "reordered": ["UPDATE audit SET seq = 100 WHERE seq = 2",
                      "UPDATE audit SET seq = 2 WHERE seq = 3",
                      "UPDATE audit SET seq = 3 WHERE seq = 100"],
        "inserted": ["UPDATE audit SET seq = seq + 100 WHERE seq >= 4",
                     "UPDATE audit SET seq = seq - 99 WHERE seq >= 104",
                     "INSERT INTO audit (seq, content, hash) SELECT 4, content, hash FROM audit "
                     "WHERE seq = 3"],
    }
    for kind, statements in cases.items():
        directory = tmp_path / kind
        directory.mkdir()
        path = _trail(directory)
        _tamper(path, *statements)
        result = verify_journal(path)
        assert not result.ok and result.kind == kind, (kind, result)
