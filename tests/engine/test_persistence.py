"""What is fsynced and what is not: transitions always, elapsed-time refreshes and history never.

Observed on a real SQLite journal through its statement trace: a commit made without its own
fsync is the one wrapped in `PRAGMA synchronous=NORMAL`, and the connection is back at FULL after
it, also when the write fails.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_unit_run import _started, snap

from protocols.state_machine import Command
from shuttled.engine.persistence import REFRESH_S, RunPersistence
from shuttled.records.journal import TELEMETRY_COLUMNS, Journal

FULL = 2


class Traced:
    def __init__(self, journal: Journal) -> None:
        self.statements: list[str] = []
        journal._db.set_trace_callback(self.statements.append)

    def take(self) -> list[str]:
        taken, self.statements[:] = list(self.statements), []
        return taken

    @staticmethod
    def unsynced(statements: list[str]) -> bool:
        return "PRAGMA synchronous=NORMAL" in statements


def _synchronous(journal: Journal) -> int:
    return int(journal._db.execute("PRAGMA synchronous").fetchone()[0])


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    journal = Journal(tmp_path / "journal.sqlite3")
    yield journal
    journal.close()


def test_a_change_is_fsynced_and_a_refresh_of_elapsed_time_is_not(journal: Journal) -> None:
    traced = Traced(journal)
    persistence = RunPersistence(journal)
    run = _started()
    assert persistence.persist([run], 0.0) == 1
    first = traced.take()
    assert any("INSERT INTO checkpoints" in s for s in first) and not traced.unsynced(first)

    run.step(snap(5.0))
    persistence.persist([run], 5.0)  # the warm-up ended: a new step, saved and fsynced
    assert not traced.unsynced(traced.take())

    assert persistence.persist([run], 30.0) == 0  # only time passed, and not a minute of it
    assert traced.take() == []
    assert persistence.persist([run], 5.0 + REFRESH_S) == 1  # a minute: refreshed, not fsynced
    refresh = traced.take()
    assert traced.unsynced(refresh) and refresh[-1] == "PRAGMA synchronous=FULL"
    assert _synchronous(journal) == FULL

    run.command(Command.HOLD, "cover open", 6.0 + REFRESH_S, user="alice")
    persistence.persist([run], 6.0 + REFRESH_S)
    assert not traced.unsynced(traced.take())
    assert journal.load_checkpoints()["U01"]["state"] == run.state.value


def test_a_forced_save_is_always_fsynced(journal: Journal) -> None:
    traced = Traced(journal)
    persistence = RunPersistence(journal)
    run = _started()
    persistence.persist([run], 0.0)
    traced.take()
    persistence.persist([run], 1.0, force=True)
    assert not traced.unsynced(traced.take())


def test_history_is_not_fsynced_and_a_failed_write_leaves_the_journal_fsyncing(
    journal: Journal,
) -> None:
    traced = Traced(journal)
    row = ("R1", "U01", 0.0, "RUNNING", "expand", 37.0, 37.0, 20.0, 1e6, 0.03, 200.0, "", "")
    assert len(row) == len(TELEMETRY_COLUMNS)
    journal.append_telemetry([row])
    assert traced.unsynced(traced.take()) and _synchronous(journal) == FULL
    with pytest.raises(sqlite3.ProgrammingError):
        journal.append_telemetry([row[:-1]])  # one value short: refused by SQLite
    assert _synchronous(journal) == FULL
    assert len(journal.telemetry_of("R1")) == 1
