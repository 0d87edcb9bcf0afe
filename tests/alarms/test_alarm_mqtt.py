"""Alarm transitions on MQTT (SPEC §6, §13): each one queued durably on `<unit>/events` with
its lifecycle, in order, and the unit's current list on the retained `<unit>/alarms` — checked
at the outbox and the retained table, the publisher's inputs (tests/telemetry has the broker)."""

from __future__ import annotations

from pathlib import Path

from drivers.clock import VirtualClock
from shuttled.alarms import AlarmBook
from shuttled.config import MqttConfig
from shuttled.engine.unit_run import UnitRun
from shuttled.telemetry import Telemetry


async def test_every_transition_is_an_event_and_the_current_list_is_retained(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    journal = tmp_path / "journal.sqlite3"
    runs = {"U01": UnitRun("U01")}
    telemetry = Telemetry(MqttConfig("127.0.0.1", port=1), "CS-T", journal, runs, clock.now,
                          clock.to_epoch)  # never started: nothing connects
    book = AlarmBook(journal, clock)
    telemetry.attach_alarms(book)
    running = {"U01": ("RUNNING", "CS-T-U01-0001")}
    book.sync(0.0, {"U01": {"PUMP_MEDIA_ALARM": "STALL"}}, running)
    book.acknowledge("U01", "PUMP_MEDIA_ALARM", "bag clamp opened", "otto", "operator")
    book.shelve("U01", "PUMP_MEDIA_ALARM", 600.0, "maintenance", "sue", "supervisor")
    queued = [m for m in telemetry.outbox.peek(0, 100) if m.topic == "shuttle/CS-T/U01/events"]
    assert [(m.payload["type"], m.payload["transition"], m.payload["user"],
             m.payload["comment"], m.payload["severity"]) for m in queued] == [
        ("alarm", "raised", "system", "", 500),
        ("alarm", "acknowledged", "otto", "bag clamp opened", 500),
        ("alarm", "shelved", "sue", "maintenance", 500),
    ]
    assert queued[0].payload["run_id"] == "CS-T-U01-0001" and queued[0].payload["active"]
    retained = telemetry.publisher._retained["shuttle/CS-T/U01/alarms"]
    assert [(a["name"], a["state"], a["acked_by"], a["shelved"] is not None)
            for a in retained["alarms"]] == [("PUMP_MEDIA_ALARM", "ACTIVE_ACKED", "otto", True)]
    book.close()
    telemetry.outbox.close()
