"""The pure parts: payload shapes, quality, and the outbox's order, sequences and durability."""

from __future__ import annotations

import math
from pathlib import Path

from protocols.state_machine import RunState
from shuttled.control import safety
from shuttled.engine.unit_run import RunEvent
from shuttled.records.journal import Journal
from shuttled.telemetry.feed import quality_of
from shuttled.telemetry.outbox import Outbox
from shuttled.telemetry.payloads import iso_ts, number, run_event_payload


def test_timestamps_are_utc_with_milliseconds() -> None:
    assert iso_ts(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_ts(1_800_000_000.1234) == "2027-01-15T08:00:00.123Z"


def test_missing_values_are_null_not_nan() -> None:
    assert number(math.nan) is None and number(math.inf) is None and number(1.5) == 1.5


def test_quality_bad_stale_good() -> None:
    assert quality_of(0, math.nan, {}) == "bad"
    assert quality_of(safety.FLAG_BAD, 37.0, {}) == "bad"
    assert quality_of(safety.FLAG_STALE, 37.0, {}) == "stale"
    assert quality_of(0, 37.0, {"PROBE_LOST": "timeout"}) == "stale"
    assert quality_of(0, 37.0, {}) == "good"


def test_an_operator_action_carries_user_action_and_reason() -> None:
    event = RunEvent(0.0, "state", RunState.HOLDING, "hold: bag change", "alice")
    payload = run_event_payload(event, "CS-1-U01-0001", 0.0)
    assert payload["user"] == "alice"
    assert payload["action"] == "hold" and payload["reason"] == "bag change"
    start = RunEvent(0.0, "state", RunState.RUNNING, "start demo@1.0.0#abc: batch 7", "bob")
    assert run_event_payload(start, None, 0.0)["action"] == "start"
    automatic = RunEvent(0.0, "phase", RunState.RUNNING, "phase expansion at 37.0 °C")
    assert "action" not in run_event_payload(automatic, None, 0.0)


def test_outbox_keeps_order_and_sequences_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path)  # the same file as the journal, tables of its own
    outbox = Outbox(path)
    outbox.enqueue([("t/a", {"seq": 1}), ("t/b", {"seq": 1})], {"U01": 1, "U02": 1}, 0.0)
    outbox.enqueue([("t/a", {"seq": 2})], {"U01": 2}, 1.0)
    first = outbox.peek(0, 2)
    assert [(m.topic, m.payload) for m in first] == [("t/a", {"seq": 1}), ("t/b", {"seq": 1})]
    outbox.acknowledge(first[-1].id)
    outbox.close()
    journal.close()

    reopened = Outbox(path)
    assert reopened.sequences() == {"U01": 2, "U02": 1}
    assert [m.payload for m in reopened.peek(0, 10)] == [{"seq": 2}]
    assert reopened.pending() == 1 and reopened.last_id() == 3
    reopened.close()
