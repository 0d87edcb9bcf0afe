"""One virtual instrument for the console's browser tests, and one Chromium.

`shuttled simulate --units 16 --speed 60 --faults F --users U --console PORT` runs once for the
whole package (the console is served on the simulation's loop, as an operator would start it),
plus a standalone `shuttled console --idle-lock-s 2` against the same daemon for the idle-lock
test. Chromium is Debian's (`/usr/bin/chromium`): Playwright's own browser downloads are not
reachable from CI, and a packaged browser is what an instrument PC has.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shuttled.records.users import User, hash_password, save_users

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PASSWORD = {"sim": "supervisor-pw-1", "olga": "operator-pw-01", "otto": "operator-pw-02",
            "quinn": "qa-password-01", "vic": "viewer-pw-001"}
ROLES = {"sim": ("supervisor", "Sam Supervisor"), "olga": ("operator", "Olga Operator"),
         "otto": ("operator", "Otto Operator"), "quinn": ("qa", "Quinn QA"),
         "vic": ("viewer", "Vic Viewer")}
# U05's temperature sensor reads NaN from 1 simulated minute on (1 s of wall time at 60x).
FAULTS = "- {at: 1m, fault: sensor_nan, unit: U05, sensor: temperature, duration: 24h}\n"
START_TIMEOUT_S = 90.0


@dataclass
class Instrument:
    endpoint: str
    console: str  # the console served by `simulate --console`
    locking_console: str  # `shuttled console --idle-lock-s 2` against the same daemon
    data_dir: Path


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], prefix: str, process: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise AssertionError(f"no {prefix!r} line; output:\n{''.join(seen)}")


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def instrument(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instrument]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("Debian's chromium is not installed: run scripts/setup, which installs it")
    data_dir = tmp_path_factory.mktemp("console-sim")
    users = data_dir / "users.toml"
    save_users(users, {name: User(name, role, hash_password(PASSWORD[name]), full)
                       for name, (role, full) in ROLES.items()})
    faults = data_dir / "faults.yaml"
    faults.write_text(FAULTS)
    env = {**os.environ, "XDG_CONFIG_HOME": str(data_dir / "config"), "COLUMNS": "300"}
    port, locking_port = _free_port(), _free_port()
    simulate = subprocess.Popen(
        [str(BIN / "shuttled"), "simulate", "--units", "16", "--speed", "60",
         "--data-dir", str(data_dir), "--opcua-port", str(_free_port()), "--users", str(users),
         "--faults", str(faults), "--console", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    locking = None
    try:
        lines = _lines(simulate)
        endpoint = _wait_for(lines, "Operator interface: ", simulate)
        console = _wait_for(lines, "Operator console: ", simulate).split()[0]
        locking = subprocess.Popen(
            [str(BIN / "shuttled"), "console", "--endpoint", endpoint,
             "--listen", f"127.0.0.1:{locking_port}", "--idle-lock-s", "2",
             "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        locking_url = _wait_for(_lines(locking), "Operator console: ", locking).split()[0]
        yield Instrument(endpoint, console.rstrip("/"), locking_url.rstrip("/"), data_dir)
    finally:
        if locking is not None:
            _stop(locking)
        _stop(simulate)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("Debian's chromium is not installed: run scripts/setup, which installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


def sign_in(browser, base: str, user: str, password: str | None = None):
    """A new browser context (its own cookies) signed in as `user`; returns its page."""
    from playwright.sync_api import expect

    # bypass_csp: Playwright evaluates its waiting functions as strings, which the console's
    # Content-Security-Policy (no eval) rightly refuses; the pages themselves need no eval.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{base}/")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORD[user] if password is None else password)
    page.get_by_role("button", name="Sign in").click()
    if password is None:
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    return page
