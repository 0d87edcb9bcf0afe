"""Console latency (SPEC §11, §14): 16 units at `--speed 60`, from a value in the daemon to the
overview's DOM in Chromium, and the console's CPU.

`shuttled simulate --units 16 --speed 60 --protocol demo.yaml` runs the daemon (every unit
running, so every value moves); a separate `shuttled console` process serves the overview, so
its CPU can be read from /proc apart from the daemon's. Debian's Chromium (Playwright) signs in
and a MutationObserver in the page records, for each pushed update, the wall time at which the
card changed minus the update's OPC UA ServerTimestamp (the wall time at which the daemon's
mirror wrote the value; its SourceTimestamp is the daemon clock's, 60 times faster here): the
whole path daemon → OPC UA subscription → console → server-sent event → DOM.

Prints one JSON object as its last line: `{"update_p50_ms", "update_p95_ms", "updates",
"console_cpu_pct"}` (cpu in percent of one core, over the measured window).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
CHROMIUM = "/usr/bin/chromium"
OBSERVE = """() => {
  window.__latency = [];
  const observer = new MutationObserver((changes) => {
    const now = Date.now();
    for (const change of changes) {
      const t = Number(change.target.dataset.t);
      if (t) window.__latency.push(now - t);
    }
  });
  document.querySelectorAll('[data-unit]').forEach((card) =>
    observer.observe(card, {attributes: true, attributeFilter: ['data-t']}));
}"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime + stime


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_line(process: subprocess.Popen[str], prefix: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise SystemExit(f"no {prefix!r} from {process.args[0]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--speed", default="60")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    scratch = Path(tempfile.mkdtemp(prefix="shuttled-console-latency-"))
    env = {**os.environ, "XDG_CONFIG_HOME": str(scratch / "config"), "COLUMNS": "300"}
    opcua_port = free_port()
    endpoint = f"opc.tcp://127.0.0.1:{opcua_port}/shuttled"
    simulate = subprocess.Popen(
        [str(BIN / "shuttled"), "simulate", "--units", str(args.units), "--speed", args.speed,
         "--data-dir", str(scratch), "--opcua-port", str(opcua_port),
         "--protocol", str(ROOT / "protocols/library/demo.yaml"), "--param", "max_density=1e7"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, env=env)
    console = None
    try:
        credentials = scratch / "sim-credentials"
        while not credentials.exists():
            if simulate.poll() is not None:
                raise SystemExit("shuttled simulate ended early")
            time.sleep(0.1)  # start-up: the daemon writes this file before it serves
        user, password = credentials.read_text().strip().split(":", 1)
        port = free_port()
        console = subprocess.Popen(
            [str(BIN / "shuttled"), "console", "--endpoint", endpoint,
             "--listen", f"127.0.0.1:{port}", "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        url = wait_line(console, "Operator console: ").split()[0]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(bypass_csp=True)
            page.goto(url)
            page.get_by_label("User name").fill(user)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("region", name=f"U{args.units:02d}")).to_be_visible()
            page.evaluate(OBSERVE)
            cpu_start, wall_start = cpu_seconds(console.pid), time.monotonic()
            page.wait_for_timeout(args.seconds * 1000)  # the measured window itself
            cpu = cpu_seconds(console.pid) - cpu_start
            wall = time.monotonic() - wall_start
            latencies = sorted(page.evaluate("window.__latency"))
            browser.close()
    finally:
        for process in (console, simulate):
            if process is not None:
                process.terminate()
                process.wait(20)
    if not latencies:
        raise SystemExit("no updates reached the page")
    p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
    result = {"update_p50_ms": round(statistics.median(latencies), 1),
              "update_p95_ms": round(p95, 1), "update_max_ms": round(latencies[-1], 1),
              "updates": len(latencies), "units": args.units, "speed": args.speed,
              "console_cpu_pct": round(100 * cpu / wall, 1)}
    print(f"{len(latencies)} updates in {wall:.0f} s: p50 {result['update_p50_ms']} ms, "
          f"p95 {result['update_p95_ms']} ms; console CPU {result['console_cpu_pct']} % of a core")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
