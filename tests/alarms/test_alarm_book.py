"""The alarm model alone (SPEC §13): ISA-18.2 states, acknowledgement, shelving with its
maximum and its expiry on the daemon's clock, suppression by design, the journal across a
restart, and the audit trail — no sockets, a virtual clock, nothing sleeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.clock import VirtualClock
from shuttled.alarms import AlarmBook, AlarmRefused
from shuttled.alarms.model import ACTIVE_ACKED, ACTIVE_UNACKED, NORMAL, RTN_UNACKED, severity_of
from shuttled.records.alarm_journal import alarm_events_of_run
from shuttled.records.audit import AuditTrail
from shuttled.service.config_file import ConfigError, load_config

RUNNING = {"U01": ("RUNNING", "R-1"), "U02": ("RUNNING", "R-2")}
IDLE = {"U01": ("IDLE", None), "U02": ("IDLE", None)}


def _book(tmp_path: Path, clock: VirtualClock, **kw) -> tuple[AlarmBook, AuditTrail]:
    audit = AuditTrail(tmp_path / "journal.sqlite3")
    return AlarmBook(tmp_path / "journal.sqlite3", clock, audit=audit, **kw), audit


def _kinds(changes) -> list[tuple[str, str, str]]:
    return [(c.kind, c.alarm.name, c.alarm.state) for c in changes]


def test_severities_follow_what_the_condition_does_to_the_unit() -> None:
    assert severity_of("OVER_TEMPERATURE") == severity_of("BIOREACTOR_LOST") == 800
    assert severity_of("PUMP_MEDIA_ALARM") == severity_of("PROBE_LOST") == 500
    assert severity_of("SOMETHING_ELSE") == 200


def test_isa_18_2_states_with_acknowledgement_and_return_to_normal(tmp_path: Path) -> None:
    clock = VirtualClock()
    book, audit = _book(tmp_path, clock)
    changes = book.sync(0.0, {"U01": {"OVER_TEMPERATURE": "trip"}, "U02": {}}, RUNNING)
    assert _kinds(changes) == [("raised", "OVER_TEMPERATURE", ACTIVE_UNACKED)]
    book.acknowledge("U01", "OVER_TEMPERATURE", "heater checked", "otto", "operator")
    assert book.find("U01", "OVER_TEMPERATURE").state == ACTIVE_ACKED
    with pytest.raises(AlarmRefused) as refused:
        book.acknowledge("U01", "OVER_TEMPERATURE", "again", "otto", "operator")
    assert refused.value.kind == AlarmRefused.ALREADY_ACKED
    changes = book.sync(5.0, {"U01": {}, "U02": {}}, RUNNING)
    assert _kinds(changes) == [("cleared", "OVER_TEMPERATURE", NORMAL)]
    assert book.current() == []
    # cleared before anyone saw it: returned to normal, unacknowledged, until acknowledged
    book.sync(10.0, {"U01": {"BIOREACTOR_LOST": "timeout"}, "U02": {}}, RUNNING)
    book.sync(15.0, {"U01": {}, "U02": {}}, RUNNING)
    assert [a.state for a in book.current()] == [RTN_UNACKED]
    book.acknowledge("U01", "BIOREACTOR_LOST", "seen", "sue", "supervisor")
    assert book.current() == []
    with pytest.raises(AlarmRefused) as unknown:
        book.acknowledge("U01", "NO_SUCH_ALARM", "x", "otto", "operator")
    assert unknown.value.kind == AlarmRefused.UNKNOWN
    methods = [r.method for r in audit.records(unit="U01")]
    assert methods == ["AlarmRaised", "Acknowledge", "AlarmCleared", "AlarmRaised",
                       "AlarmCleared", "Acknowledge"]
    acked = audit.records(unit="U01")[1]
    assert (acked.user, acked.role, acked.reason) == ("otto", "operator", "heater checked")
    lifecycle = alarm_events_of_run(tmp_path / "journal.sqlite3", "R-1")
    assert [e["kind"] for e in lifecycle] == ["raised", "acknowledged", "cleared", "raised",
                                              "cleared", "acknowledged"]
    book.close()
    audit.close()


async def test_a_shelve_is_bounded_and_its_expiry_unacknowledges_an_active_alarm(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    book, audit = _book(tmp_path, clock, max_shelve_s=3600.0)
    book.sync(0.0, {"U01": {"PUMP_MEDIA_ALARM": "STALL"}}, RUNNING)
    book.acknowledge("U01", "PUMP_MEDIA_ALARM", "known", "otto", "operator")
    with pytest.raises(AlarmRefused) as too_long:
        book.shelve("U01", "PUMP_MEDIA_ALARM", 3601.0, "nuisance", "sue", "supervisor")
    assert too_long.value.kind == AlarmRefused.SHELVING_TIME
    book.shelve("U01", "PUMP_MEDIA_ALARM", 1800.0, "nuisance", "sue", "supervisor")
    assert book.current() == [] and len(book.current(everything=True)) == 1
    await clock.sleep_until(1799.0)
    assert book.sync(clock.now(), {"U01": {"PUMP_MEDIA_ALARM": "STALL"}}, RUNNING) == []
    await clock.sleep_until(1800.0)
    changes = book.sync(clock.now(), {"U01": {"PUMP_MEDIA_ALARM": "STALL"}}, RUNNING)
    assert _kinds(changes) == [("shelve_expired", "PUMP_MEDIA_ALARM", ACTIVE_UNACKED)]
    assert [a.name for a in book.current()] == ["PUMP_MEDIA_ALARM"]
    # one-shot: ends when the alarm clears
    book.shelve("U01", "PUMP_MEDIA_ALARM", None, "until it clears", "sue", "supervisor")
    changes = book.sync(clock.now() + 5, {"U01": {}}, RUNNING)
    assert [c.kind for c in changes] == ["cleared", "unshelved"]
    with pytest.raises(AlarmRefused) as not_shelved:
        book.unshelve("U01", "PUMP_MEDIA_ALARM", "", "sue", "supervisor")
    assert not_shelved.value.kind == AlarmRefused.NOT_SHELVED
    book.close()
    audit.close()


def test_alarms_of_devices_an_idle_unit_does_not_use_are_suppressed_by_design(
    tmp_path: Path,
) -> None:
    book, audit = _book(tmp_path, VirtualClock())
    changes = book.sync(0.0, {"U01": {"PROBE_LOST": "no answer", "BIOREACTOR_LOST": "x"}}, IDLE)
    suppressed = {c.alarm.name: c.alarm.suppressed for c in changes}
    assert suppressed == {"PROBE_LOST": True, "BIOREACTOR_LOST": False}
    assert [a.name for a in book.current()] == ["BIOREACTOR_LOST"]
    # the unit starts a run: the probe matters again and must be seen
    changes = book.sync(5.0, {"U01": {"PROBE_LOST": "no answer", "BIOREACTOR_LOST": "x"}},
                        {"U01": ("RUNNING", "R-1")})
    assert _kinds(changes) == [("unsuppressed", "PROBE_LOST", ACTIVE_UNACKED)]
    # idle again and cleared while suppressed: nothing left for anyone to acknowledge
    book.sync(10.0, {"U01": {"PROBE_LOST": "no answer", "BIOREACTOR_LOST": "x"}}, IDLE)
    book.sync(15.0, {"U01": {"BIOREACTOR_LOST": "x"}}, IDLE)
    assert [a.name for a in book.current(everything=True)] == ["BIOREACTOR_LOST"]
    book.close()
    audit.close()


def test_a_restart_neither_loses_nor_repeats_an_alarm(tmp_path: Path) -> None:
    clock = VirtualClock()
    book, audit = _book(tmp_path, clock)
    book.sync(0.0, {"U01": {"OVER_TEMPERATURE": "trip", "PUMP_MEDIA_ALARM": "STALL"}}, RUNNING)
    book.acknowledge("U01", "PUMP_MEDIA_ALARM", "known", "otto", "operator")
    book.sync(5.0, {"U01": {"PUMP_MEDIA_ALARM": "STALL"}}, RUNNING)  # trip cleared, unacked
    book.close()
    records = len(audit.records())
    audit.close()

    book, audit = _book(tmp_path, clock, settle_syncs=3)
    states = {a.name: a.state for a in book.current()}
    assert states == {"OVER_TEMPERATURE": RTN_UNACKED, "PUMP_MEDIA_ALARM": ACTIVE_ACKED}
    # the loop has not surveyed the pump yet: no clear, no raise again
    assert book.sync(10.0, {"U01": {}}, RUNNING) == []
    assert book.sync(15.0, {"U01": {"PUMP_MEDIA_ALARM": "STALL"}}, RUNNING) == []
    for t in (20.0, 25.0):
        assert book.sync(t, {"U01": {"PUMP_MEDIA_ALARM": "STALL"}}, RUNNING) == []
    assert book.find("U01", "PUMP_MEDIA_ALARM").occurrence == 1
    assert len(audit.records()) == records
    book.close()
    audit.close()


def test_max_shelve_s_is_read_from_the_alarms_table_with_a_located_error(tmp_path: Path) -> None:
    example = (Path(__file__).resolve().parents[2] / "systemd" / "shuttled.toml.example")
    text = example.read_text()
    assert load_config(example).alarms.max_shelve_s == 28800.0
    good = tmp_path / "good.toml"
    good.write_text(text.replace("max_shelve_s = 28800.0", "max_shelve_s = 7200"))
    assert load_config(good).alarms.max_shelve_s == 7200.0
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("max_shelve_s = 28800.0", "max_shelve_s = -1"))
    with pytest.raises(ConfigError, match=r"alarms\.max_shelve_s: Input should be greater"):
        load_config(bad)
