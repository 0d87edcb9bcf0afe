"""`shuttlectl audit verify --journal` on anchored trails, as an auditor runs it: a subprocess,
exit 1 and one line naming the problem, 0 and the anchor when intact, JSON for scripts."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from shuttled.records.audit import AuditTrail, utc_now
from shuttled.records.audit_anchors import ANCHORS_FILE, AnchorLog
from shuttled.records.instrument_key import load_or_create

SHUTTLECTL = str(Path(sys.executable).parent / "shuttlectl")


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHUTTLECTL, "audit", "verify", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data directory as the daemon leaves it: journal, anchors, instrument key; 150 records."""
    trail = AuditTrail(tmp_path / "journal.sqlite3")
    trail.attach_anchors(AnchorLog(tmp_path / ANCHORS_FILE, load_or_create(tmp_path), utc_now))
    for i in range(150):
        trail.append(user="sue", role="supervisor", unit="U01", method="Hold",
                     arguments={}, reason=f"r{i}", result="Good")
    trail.close()
    return tmp_path


def _sql(journal: Path, *statements: str) -> None:
    db = sqlite3.connect(journal)
    for statement in ("DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete",
                      *statements):
        db.execute(statement)
    db.commit()
    db.close()


def test_intact_prints_the_last_anchor(data: Path) -> None:
    result = verify("--journal", str(data / "journal.sqlite3"))
    assert result.returncode == 0, result.stderr
    assert "intact: 150 records" in result.stdout
    assert "anchored at record 100 on " in result.stdout
    result = verify("--journal", str(data / "journal.sqlite3"), "--json")
    answer = json.loads(result.stdout)
    assert answer["ok"] and answer["kind"] == "" and answer["last_anchor"]["count"] == 100
    assert answer["key_id"] == load_or_create(data).key_id


@pytest.mark.parametrize(
    ("statements", "headline"),
    [
        (("DELETE FROM audit WHERE seq > 60",), "truncated: the trail has 60 records"),
        (("DROP TABLE audit",), "missing: the journal has no audit table"),
        (("DELETE FROM audit WHERE seq = 7",), "broken at record 7: record 7 is missing"),
    ],
    ids=["truncated", "table-dropped", "deleted"],
)
def test_tampering_is_named_in_one_line(data: Path, statements: tuple[str, ...],
                                        headline: str) -> None:
    journal = data / "journal.sqlite3"
    _sql(journal, *statements)
    result = verify("--journal", str(journal))
    assert result.returncode == 1
    assert headline in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_an_edited_anchors_file_is_named(data: Path) -> None:
    path = data / ANCHORS_FILE
    line = json.loads(path.read_text())
    path.write_text(json.dumps({**line, "count": 60}) + "\n")  # hide the truncation below
    _sql(data / "journal.sqlite3", "DELETE FROM audit WHERE seq > 60")
    result = verify("--journal", str(data / "journal.sqlite3"))
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "anchors invalid: audit-anchors line 1 (record 60" in result.stderr
    assert "does not verify: the anchors file was edited" in result.stderr


def test_anchors_and_key_from_elsewhere(data: Path, tmp_path_factory) -> None:
    """A copy of the journal alone, checked against the anchors and a trusted public key."""
    copy = tmp_path_factory.mktemp("copy")
    (copy / "journal.sqlite3").write_bytes((data / "journal.sqlite3").read_bytes())
    alone = verify("--journal", str(copy / "journal.sqlite3"))
    assert alone.returncode == 1 and "anchors missing" in alone.stderr
    result = verify("--journal", str(copy / "journal.sqlite3"),
                    "--anchors", str(data / ANCHORS_FILE),
                    "--public-key", str(data / "instrument-key.pub.pem"))
    assert result.returncode == 0, result.stderr
    other = load_or_create(tmp_path_factory.mktemp("other"))
    (copy / "other.pem").write_bytes(other.public.pem)
    result = verify("--journal", str(copy / "journal.sqlite3"),
                    "--anchors", str(data / ANCHORS_FILE), "--public-key", str(copy / "other.pem"))
    assert result.returncode == 1 and f"not by the instrument key {other.key_id}" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--anchors", "/nonexistent/anchors"), 1, "--anchors: no file /nonexistent/anchors"),
        (("--public-key", "/nonexistent/key.pem"), 1, "--public-key: no file"),
        (("--public-key", "JOURNAL"), 1, "not a PEM public key"),
    ],
)
def test_bad_offline_options_are_refused(data: Path, args: tuple[str, ...], code: int,
                                         message: str) -> None:
    journal = str(data / "journal.sqlite3")
    args = tuple(journal if a == "JOURNAL" else a for a in args)
    result = verify("--journal", journal, *args)
    assert result.returncode == code and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_offline_options_without_a_journal_are_a_usage_error() -> None:
    result = verify("--anchors", "x")
    assert result.returncode == 2 and "go with --journal" in result.stderr


def test_a_file_that_is_no_journal_is_named(tmp_path: Path) -> None:
    bogus = tmp_path / "journal.sqlite3"
    bogus.write_text("not a database, just text that is long enough to look like a header\n")
    result = verify("--journal", str(bogus))
    assert result.returncode == 1 and "unreadable" in result.stderr
    assert "Traceback" not in result.stderr
