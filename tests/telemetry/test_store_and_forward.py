"""Store and forward (SPEC §6): broker outages and daemon restarts lose nothing, and what waited
arrives in order, flagged historical, before live data resumes.

The historian has a persistent session on a broker with persistence, as a plant historian would,
so messages the daemon replays before the historian is back are kept for it by the broker.
"""

from __future__ import annotations

from pathlib import Path

from mqtt_rig import Subscriber, telemetry_of

UNAVAILABLE = "mqtt unavailable; queuing durably"


def assert_gap_free_with_one_historical_block(
    samples: list[dict], source_times_ordered: bool = True
) -> None:
    """Every seq once (a redelivered duplicate aside), in order; flags: live, historical, live."""
    unique: list[dict] = []
    for sample in samples:
        if unique and sample["seq"] <= unique[-1]["seq"]:
            assert sample["seq"] == unique[-1]["seq"], "a message arrived out of order"
            continue  # at-least-once: the same message again
        unique.append(sample)
    seqs = [s["seq"] for s in unique]
    assert seqs == list(range(1, len(seqs) + 1)), f"gap in {seqs}"
    flags = "".join("h" if s["historical"] else "l" for s in unique)
    assert flags.strip("l").count("l") == 0, f"live data inside the replay: {flags}"
    assert "h" in flags and flags.startswith("l") and flags.endswith("l"), flags
    times = [s["ts"] for s in unique]
    assert times == sorted(times) or not source_times_ordered


def wait_for_live_after_replay(historian: Subscriber) -> None:
    historian.wait_for(lambda m: m.topic.endswith("/telemetry") and m.payload["historical"])
    historian.wait_for(lambda m: m.topic.endswith("/telemetry") and not m.payload["historical"])


def test_broker_outage_mid_run_loses_nothing(broker, subscribe, daemons, tmp_path: Path) -> None:
    historian = subscribe(broker.port, client_id="historian", persistent=True)
    daemon = daemons(broker.port, tmp_path / "data")
    historian.wait_for(lambda m: m.topic.endswith("/telemetry") and m.payload["seq"] >= 3)

    broker.stop()
    for _ in range(3):  # three refused reconnects: about 2 s of queued ticks
        daemon.wait_log(UNAVAILABLE)
    broker.start()

    wait_for_live_after_replay(historian)
    online = [m for m in historian.seen if m.topic.endswith("/status")]
    assert online[-1].payload["online"] is True  # announced again on reconnect
    assert daemon.terminate() == 0
    historian.wait_for(lambda m: m.topic.endswith("/status") and not m.payload["online"])
    samples = telemetry_of(historian.seen)
    assert sum(s["historical"] for s in samples) >= 3
    assert_gap_free_with_one_historical_block(samples)


def test_daemon_restart_while_the_broker_is_down_loses_nothing(
    broker, subscribe, daemons, tmp_path: Path
) -> None:
    historian = subscribe(broker.port, client_id="historian", persistent=True)
    first = daemons(broker.port, tmp_path / "data")
    historian.wait_for(lambda m: m.topic.endswith("/telemetry") and m.payload["seq"] >= 2)

    broker.stop()
    for _ in range(2):
        first.wait_log(UNAVAILABLE)
    first.kill()  # as after a crash or power loss, with the queue still full

    second = daemons(broker.port, tmp_path / "data")
    for _ in range(3):
        second.wait_log(UNAVAILABLE)
    broker.start()

    wait_for_live_after_replay(historian)
    second.terminate()
    samples = telemetry_of(historian.seen)
    # seq goes on across the restart; simulated time (20x) starts again at the wall clock
    assert_gap_free_with_one_historical_block(samples, source_times_ordered=False)
    restarted = [
        m.payload for m in historian.seen
        if m.topic.endswith("/status") and m.payload["online"]
    ]
    assert len(restarted) >= 2
