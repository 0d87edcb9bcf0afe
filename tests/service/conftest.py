"""A running `shuttle-sim` and the daemon configuration it printed, for hardware-in-the-loop."""

from __future__ import annotations

import os
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
    # Its log goes to a file: a pipe nobody reads would fill and stop the simulator mid-test.
    log = (tmp_path / "shuttle-sim.log").open("w")
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
        stderr=log,
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
        log.close()


@pytest.fixture
def start_simulator(tmp_path: Path) -> Iterator[Callable[[int, float], Path]]:
    with ExitStack() as stack:
        yield lambda units, speed: stack.enter_context(running_simulator(tmp_path, units, speed))



# Crash torture (test_crash_torture.py): CI-sized by default, longer with an option or, when this
# conftest is not loaded at start-up (`pytest tests` only loads it while collecting), a variable.
TORTURE_OPTIONS = {  # option: (environment variable, default, help)
    "torture_kills": ("SHUTTLE_TORTURE_KILLS", 15, "kill -9 of the daemon"),
    "torture_power_cuts": ("SHUTTLE_TORTURE_POWER_CUTS", 5, "power cuts of daemon and simulator"),
    "torture_seed": ("SHUTTLE_TORTURE_SEED", 14, "seed of the kill moments"),
}
TORTURE_S_PER_KILL = 10  # pytest-timeout's budget per kill (measured: 3 s, 10 s per power cut)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crash torture", "tests/service/test_crash_torture.py")
    for name, (variable, default, text) in TORTURE_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        group.addoption(flag, type=int, help=f"{text} (default {default}, or ${variable})")


def torture_option(config: pytest.Config, name: str) -> int:
    variable, default, _ = TORTURE_OPTIONS[name]
    value = config.getoption(name, default=None)
    text = os.environ.get(variable, str(default)) if value is None else str(value)
    if not text.isdigit() or (name != "torture_seed" and int(text) < 1):
        raise pytest.UsageError(f"{variable} / --{name.replace('_', '-')}: a whole number "
                                f"(at least 1 kill), not {text!r}")
    return int(text)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A longer torture gets a longer timeout than the suite's 300 s."""
    for item in items:
        for name in ("torture_kills", "torture_power_cuts"):
            if name in getattr(item, "fixturenames", ()):
                seconds = 120 + TORTURE_S_PER_KILL * torture_option(config, name)
                item.add_marker(pytest.mark.timeout(seconds))


@pytest.fixture
def torture_kills(request: pytest.FixtureRequest) -> int:
    return torture_option(request.config, "torture_kills")


@pytest.fixture
def torture_power_cuts(request: pytest.FixtureRequest) -> int:
    return torture_option(request.config, "torture_power_cuts")


@pytest.fixture
def torture_seed(request: pytest.FixtureRequest) -> int:
    return torture_option(request.config, "torture_seed")
