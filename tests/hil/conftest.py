"""The hardware-in-the-loop bench without hardware: `socat` pairs of pseudo-terminals stand in for
two cross-wired USB-RS485 adapters, one end for `shuttle-sim`, the other for the daemon.

The service tests' rig (`tests/service/crash_rig.py`: the daemon as systemd runs it, an
operator's OPC UA session) is imported from there, not copied.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "service"))

SOCAT_READY = b"starting data transfer loop"
SOCAT_START_S = 10.0


def _socat() -> str:
    path = shutil.which("socat")
    if path is None:
        pytest.fail("socat is not installed: run scripts/setup (Debian package socat)")
    return path


@pytest.fixture
def serial_pair(tmp_path: Path) -> Iterator[Callable[[str], tuple[str, str]]]:
    """`serial_pair("pumps")` -> (shuttle-sim's end, the daemon's end): two linked
    pseudo-terminals, raw and without echo, as two adapters with A to A and B to B."""
    processes: list[subprocess.Popen[bytes]] = []

    def make(name: str) -> tuple[str, str]:
        sim_end, daemon_end = tmp_path / f"sim-{name}", tmp_path / f"pc-{name}"
        process = subprocess.Popen(
            [_socat(), "-d", "-d", f"pty,raw,echo=0,link={sim_end}",
             f"pty,raw,echo=0,link={daemon_end}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        processes.append(process)
        _wait_for_socat(process)
        return str(sim_end), str(daemon_end)

    yield make
    for process in processes:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


def _wait_for_socat(process: subprocess.Popen[bytes]) -> None:
    """Until socat says both pseudo-terminals are linked (its -d -d notice), within a bound."""
    assert process.stderr is not None
    fd = process.stderr.fileno()
    deadline = time.monotonic() + SOCAT_START_S
    said = b""
    while SOCAT_READY not in said:
        readable, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0.0))
        chunk = os.read(fd, 4096) if readable else b""
        if not chunk:
            raise AssertionError(f"socat did not link the pair (exit {process.poll()}): {said!r}")
        said += chunk
