#!/usr/bin/env python3
"""Remake docs/console-overview.png and docs/console-unit.png (the README shows them).

Serves `shuttled simulate --units 16 --speed 60 --console PORT` with a fault file (a bad
temperature sensor on U05, so an alarm shows), and does what an operator would in the console:
uploads protocols/library/demo.yaml, starts it on every unit with a batch id, lets the runs go
for `--seconds` of wall time, holds U03 with a reason, and photographs the overview and U01's
page in Debian's Chromium. Usage: .venv/bin/python scripts/console_screenshots.py
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FAULTS = "- {at: 20m, fault: sensor_nan, unit: U05, sensor: temperature, duration: 24h}\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=45.0,
                        help="wall time the runs go before the pictures (default 45)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    scratch = Path(tempfile.mkdtemp(prefix="shuttled-screenshots-"))
    (scratch / "faults.yaml").write_text(FAULTS)
    port = free_port()
    env = {**os.environ, "XDG_CONFIG_HOME": str(scratch / "config")}
    simulate = subprocess.Popen(
        [str(BIN / "shuttled"), "simulate", "--units", "16", "--speed", "60", "--data-dir",
         str(scratch), "--opcua-port", str(free_port()), "--faults", str(scratch / "faults.yaml"),
         "--console", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        credentials = scratch / "sim-credentials"
        while not credentials.exists():
            if simulate.poll() is not None:
                raise SystemExit(f"shuttled simulate ended early: {simulate.stderr.read()}")
            time.sleep(0.1)  # start-up
        user, password = credentials.read_text().strip().split(":", 1)
        base = f"http://127.0.0.1:{port}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            while True:
                try:
                    page.goto(base + "/")
                    break
                except Exception:  # the console listens once the daemon serves
                    if simulate.poll() is not None:
                        raise SystemExit("shuttled simulate ended early: "
                                         f"{simulate.stderr.read()}") from None
                    time.sleep(0.5)
            page.get_by_label("User name").fill(user)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("region", name="U16")).to_be_visible()
            page.goto(base + "/protocols")
            upload = page.get_by_role("form", name="Upload a protocol")
            upload.get_by_label("Protocol file").set_input_files(
                str(ROOT / "protocols/library/demo.yaml"))
            upload.get_by_role("button", name="Upload").click()
            expect(page.get_by_role("status")).to_contain_text("loaded on U01")
            for n in range(1, 17):
                page.goto(f"{base}/units/U{n:02d}/start")
                page.get_by_role("button", name="Choose").click()
                start = page.get_by_role("form", name="Start")
                start.get_by_label("Batch").fill(f"DIN-W1234-26-{n:06d}")
                start.get_by_label("Reason").fill("screenshot batch")
                start.get_by_role("button", name="Start").click()
                expect(page.get_by_role("status")).to_contain_text("Started")
            page.wait_for_timeout(args.seconds * 1000 / 2)
            page.goto(base + "/units/U03")
            commands = page.get_by_role("form", name="Commands")
            commands.get_by_label("Reason").fill("check the media bag")
            commands.get_by_role("button", name="Hold").click()
            page.wait_for_timeout(args.seconds * 1000 / 2)
            page.goto(base + "/")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(args.out / "console-overview.png"), full_page=True)
            page.goto(base + "/units/U01")
            page.wait_for_timeout(2500)
            page.screenshot(path=str(args.out / "console-unit.png"), full_page=True)
            browser.close()
    finally:
        simulate.terminate()
        simulate.wait(30)
    print(f"wrote {args.out / 'console-overview.png'} and {args.out / 'console-unit.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
