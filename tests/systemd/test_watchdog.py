"""WATCHDOG=1 is sent only while the control loop ticks; a stall withholds it (SPEC §9)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from shuttled.service.watchdog import ServiceHealth, watchdog_interval_s


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> socket.socket:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    return sock


async def _next(sock: socket.socket) -> list[str]:
    data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), 10)
    return data.decode().splitlines()


async def test_pings_while_healthy_and_withholds_them_in_a_stall(notify_socket) -> None:
    assert watchdog_interval_s() == 0.05
    health = ServiceHealth(control_period_s=0.1, clock_speed=1.0)  # a stall after 2 s
    task = asyncio.create_task(health.run(lambda: "2 units: 2 IDLE"))
    try:
        assert await _next(notify_socket) == ["WATCHDOG=1", "STATUS=2 units: 2 IDLE"]
        health._last_tick -= 60.0  # the control loop last ticked a minute ago
        while (fields := await _next(notify_socket)) == ["WATCHDOG=1", "STATUS=2 units: 2 IDLE"]:
            pass  # a ping already on its way
        assert fields[0].startswith("STATUS=control loop stalled for 6")
        assert "WATCHDOG=1" not in fields
    finally:
        task.cancel()


def test_another_process_watchdog_is_not_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval_s() is None
    monkeypatch.delenv("WATCHDOG_PID")
    assert watchdog_interval_s() == 15.0
