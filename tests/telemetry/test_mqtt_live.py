"""SPEC §6 against a real Mosquitto: status and Last Will, retained state, telemetry, events."""

from __future__ import annotations

from pathlib import Path

from mqtt_rig import ROOT, telemetry_of

DEMO = ROOT / "protocols" / "library" / "demo.yaml"
TELEMETRY_KEYS = {
    "ts", "seq", "temperature", "temperature_target", "heater", "density", "growth_rate",
    "volume_ml", "quality", "historical", "batch",
}


def test_status_state_telemetry_events_and_last_will_after_kill(
    broker, subscribe, daemons, tmp_path: Path
) -> None:
    historian = subscribe(broker.port)
    daemon = daemons(broker.port, tmp_path / "data", "--protocol", str(DEMO), speed="100")

    online = historian.wait_for(lambda m: m.topic == "shuttle/CS-SIM/status")
    assert online.payload["online"] is True
    assert online.payload["units"] == ["U01"]
    assert {"ts", "version"} <= set(online.payload)

    start = historian.wait_for(
        lambda m: m.topic == "shuttle/CS-SIM/U01/events" and m.payload.get("action") == "start"
    )
    assert start.payload["user"] == "sim"
    assert start.payload["reason"] == "started by shuttled simulate"
    assert start.payload["run_id"] == "CS-SIM-U01-0001"
    assert start.payload["historical"] is False

    running = historian.wait_for(
        lambda m: m.topic == "shuttle/CS-SIM/U01/state" and m.payload["state"] == "RUNNING"
    )
    assert running.payload["protocol"].startswith("demo@1.0.0#")
    assert running.payload["phase"] and running.payload["run_id"] == "CS-SIM-U01-0001"
    assert running.payload["hold_reason"] == ""

    historian.wait_for(lambda m: m.topic.endswith("/telemetry") and m.payload["seq"] >= 5)
    samples = telemetry_of(historian.seen)
    assert [s["seq"] for s in samples] == list(range(1, len(samples) + 1))
    for sample in samples:
        assert set(sample) == TELEMETRY_KEYS
        assert sample["quality"] in ("good", "stale", "bad")
        assert sample["historical"] is False
        assert sample["ts"].endswith("Z") and len(sample["ts"]) == len("2026-01-01T00:00:00.000Z")
    assert samples[-1]["temperature_target"] == 37.0
    assert 4.0 < samples[-1]["temperature"] < 42.0

    daemon.kill()  # SIGKILL: no goodbye; the broker itself must announce the loss
    will = historian.wait_for(lambda m: m.topic == "shuttle/CS-SIM/status")
    assert will.payload["online"] is False

    late = subscribe(broker.port)  # what a historian connecting now finds retained
    status = late.wait_for(lambda m: m.topic == "shuttle/CS-SIM/status")
    assert status.retain and status.payload["online"] is False
    state = late.wait_for(lambda m: m.topic == "shuttle/CS-SIM/U01/state")
    assert state.retain and state.payload["state"] == "RUNNING"


def test_a_clean_stop_publishes_offline_itself(broker, subscribe, daemons, tmp_path) -> None:
    historian = subscribe(broker.port)
    daemon = daemons(broker.port, tmp_path / "data")
    historian.wait_for(lambda m: m.topic.endswith("/status") and m.payload["online"])
    historian.wait_for(lambda m: m.topic.endswith("/telemetry"))
    assert daemon.terminate() == 0
    offline = historian.wait_for(lambda m: m.topic.endswith("/status"))
    assert offline.payload["online"] is False
    assert any('"event": "mqtt: offline published"' in line for line in daemon.log.history)
