"""`shuttled serve` as systemd runs it, with an [mqtt] section: READY, health-checked WATCHDOG,
STATUS, telemetry from the configuration file, and SIGTERM → STOPPING, offline, exit 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from mqtt_rig import BIN, LineReader

WATCHDOG_USEC = 400_000  # pings every 0.2 s while the control loop ticks


@pytest.fixture
def simulator_config(tmp_path: Path) -> Iterator[dict]:
    """shuttle-sim at 10x and the configuration it printed, as a dict to extend."""
    process = subprocess.Popen(
        [str(BIN / "shuttle-sim"), "--units", "2", "--speed", "10", "--print-config",
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("# end of configuration"):
            break
    yield tomllib.loads("".join(lines))
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)


def test_serve_with_mqtt_under_a_notify_socket(
    simulator_config: dict, broker, subscribe, tmp_path: Path
) -> None:
    simulator_config["clock_speed"] = 10.0  # ticks every 0.5 s of wall time
    simulator_config["mqtt"] = {"host": "127.0.0.1", "port": broker.port, "prefix": "shuttle"}
    config = tmp_path / "shuttled.toml"
    config.write_text(tomli_w.dumps(simulator_config))
    historian = subscribe(broker.port)

    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(60)
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC=str(WATCHDOG_USEC))
    process = subprocess.Popen(
        [str(BIN / "shuttled"), "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    log = LineReader(process.stderr)
    try:
        received: list[list[str]] = []

        def next_fields() -> list[str]:
            received.append(sock.recv(4096).decode().splitlines())
            return received[-1]

        while "READY=1" not in next_fields():
            pass
        # The first WATCHDOG=1 with a STATUS that counts the units and shows MQTT connected.
        while not ("WATCHDOG=1" in (fields := next_fields()) and "connected" in fields[-1]):
            pass
        assert fields[-1].startswith("STATUS=2 units: 2 IDLE; mqtt connected")

        status = historian.wait_for(lambda m: m.topic == "shuttle/CS-SIM/status")
        assert status.payload["online"] is True and status.payload["units"] == ["U01", "U02"]
        for unit in ("U01", "U02"):
            historian.wait_for(lambda m, u=unit: m.topic == f"shuttle/CS-SIM/{u}/telemetry")

        process.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in next_fields():
            pass
        assert process.wait(timeout=60) == 0
        offline = historian.wait_for(lambda m: m.topic == "shuttle/CS-SIM/status")
        assert offline.payload["online"] is False
        assert any('"tick lateness"' in line for line in log.history)
    finally:
        process.kill()
        sock.close()
