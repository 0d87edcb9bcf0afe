"""`shuttled serve` against `shuttle-sim`, as systemd runs it: notify socket, restore, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from protocols import load_protocol_file
from shuttled.engine.checkpoint import checkpoint_of
from shuttled.engine.unit_run import UnitRun
from shuttled.records.journal import Journal

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def simulator(start_simulator: Callable[[int, float], Path]) -> Path:
    config = start_simulator(2, 10)
    return config


def _notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(90)
    return sock


def _serve(config: Path, notify_path: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_path))
    return subprocess.Popen(
        [str(BIN / "shuttled"), "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _checkpoints(data_dir: Path) -> dict[str, dict]:
    with sqlite3.connect(data_dir / "journal.sqlite3") as db:
        return {u: json.loads(d) for u, d in db.execute("SELECT unit, data FROM checkpoints")}


def test_serve_notifies_systemd_and_stops_cleanly_on_sigterm(
    simulator: Path, tmp_path: Path
) -> None:
    notifications = _notify_socket(tmp_path)
    process = _serve(simulator, tmp_path / "notify.sock")
    try:
        ready = notifications.recv(4096).decode()
        assert "READY=1" in ready.splitlines()
        process.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in notifications.recv(4096).decode().splitlines():
            pass  # STATUS= and WATCHDOG=1 may come first
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        notifications.close()
    states = {u: c["state"] for u, c in _checkpoints(tmp_path / "data").items()}
    assert states == {"U01": "IDLE", "U02": "IDLE"}


def test_a_run_that_was_active_comes_back_held_with_daemon_restarted(
    simulator: Path, tmp_path: Path
) -> None:
    # The journal of a daemon that died while U01 was running the demo (as after kill -9).
    data_dir = tmp_path / "data"
    journal = Journal(data_dir / "journal.sqlite3")
    run = UnitRun("U01")
    run.start(
        load_protocol_file(ROOT / "protocols/library/demo.yaml"),
        {},
        "CS-SIM-U01-0001",
        0.0,
        reason="test",
    )
    journal.save_checkpoints({"U01": checkpoint_of(run)}, 0.0)
    journal.close()

    notifications = _notify_socket(tmp_path)
    process = _serve(simulator, tmp_path / "notify.sock")
    try:
        assert "READY=1" in notifications.recv(4096).decode()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        notifications.close()
    restored = _checkpoints(data_dir)["U01"]
    assert restored["state"] in ("HOLDING", "HELD")
    assert restored["hold_reason"] == "daemon restarted"
    assert restored["run_id"] == "CS-SIM-U01-0001"
    assert _checkpoints(data_dir)["U02"]["state"] == "IDLE"
