"""Real-time load (SPEC §11): `shuttled serve` with 16 units at real speed for 60 s.

What an instrument PC pays for the daemon in steady state, and how punctual its control ticks
are. The virtual instrument (`shuttle-sim`, real time) runs in its own process and is not
counted. CPU is the daemon's user + system time from /proc over the measured window, after
READY=1 (start-up is `cold_start`'s business); tick lateness (tick start minus its scheduled
time) is measured inside the daemon and logged as `tick lateness` when it stops.

Prints one JSON object as its last line: `{"cpu_pct": ..., "tick_lateness_p99_ms": ...}` with
cpu_pct in percent of one core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cold_start import start_simulator

BIN = Path(sys.executable).parent
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime + stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="shuttled-realtime-"))
    simulator, text = start_simulator(scratch / "data", args.units)
    try:
        config = scratch / "shuttled.toml"
        config.write_text(text)
        notify_path = scratch / "notify.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(notify_path))
            sock.settimeout(120)
            daemon = subprocess.Popen(
                [str(BIN / "shuttled"), "serve", "--config", str(config), "--log-level", "info"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                env=dict(os.environ, NOTIFY_SOCKET=str(notify_path)),
            )
            while "READY=1" not in sock.recv(4096).decode().splitlines():
                pass
            cpu_start, wall_start = cpu_seconds(daemon.pid), time.monotonic()
            time.sleep(args.seconds)  # the measured window itself, not a wait for a condition
            cpu = cpu_seconds(daemon.pid) - cpu_start
            wall = time.monotonic() - wall_start
            daemon.send_signal(signal.SIGTERM)
            _, stderr = daemon.communicate(timeout=60)
        lateness = next(
            json.loads(line) for line in stderr.splitlines() if '"event": "tick lateness"' in line
        )
    finally:
        simulator.send_signal(signal.SIGINT)
        simulator.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "cpu_pct": round(100.0 * cpu / wall, 2),
        "tick_lateness_p99_ms": lateness.get("p99_ms"),
        "tick_lateness_p50_ms": lateness.get("p50_ms"),
        "tick_lateness_max_ms": lateness.get("max_ms"),
        "ticks": lateness.get("ticks"),
        "units": args.units,
        "seconds": round(wall, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
