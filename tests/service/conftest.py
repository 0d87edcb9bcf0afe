"""A running `shuttle-sim` and the daemon configuration it printed, for hardware-in-the-loop."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@contextmanager
def running_simulator(tmp_path: Path, units: int, speed: float) -> Iterator[Path]:
    """Yields the configuration file; the simulator keeps serving until the block ends."""
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        [
            str(BIN / "shuttle-sim"),
            "--units",
            str(units),
            "--speed",
            str(speed),
            "--print-config",
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:  # blocks until the simulator has printed its configuration
        lines.append(line)
        if line.startswith("# end of configuration"):
            break
    config = tmp_path / "shuttled.toml"
    config.write_text("".join(lines))
    try:
        yield config
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


@pytest.fixture
def start_simulator(tmp_path: Path) -> Iterator[Callable[[int, float], Path]]:
    with ExitStack() as stack:
        yield lambda units, speed: stack.enter_context(running_simulator(tmp_path, units, speed))
