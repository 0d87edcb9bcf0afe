"""Cold start (SPEC §11): `shuttled serve` from exec to READY=1 against a running `shuttle-sim`.

What an operator waits for after `systemctl restart shuttled`: Python start-up, imports, the
journal, contacting every device, the operator OPC UA server listening. Caches are warm (one
unmeasured start first fills numba's cache, the OPC UA standard address space cache under
<data_dir>/cache and the OS page cache), as on an instrument PC that has run before. READY=1 is
read from a notify socket this script binds, exactly as systemd does.

Prints one JSON object as its last line: `{"ready_s": <median of the measured starts>, ...}`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
GOAL_S = 1.5
TIMEOUT_S = 60.0


def start_simulator(data_dir: Path, units: int) -> tuple[subprocess.Popen[str], str]:
    """shuttle-sim in real time with the configuration it prints for the daemon."""
    process = subprocess.Popen(
        [str(BIN / "shuttle-sim"), "--units", str(units), "--speed", "1", "--print-config",
         "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("# end of configuration"):
            break
    return process, "".join(lines)


def time_to_ready(config: Path, scratch: Path) -> float:
    """Seconds from exec of `shuttled serve` to its READY=1 datagram; then a clean SIGTERM.

    A daemon that exits before READY=1 stops the benchmark at once with its last words (stderr
    goes to a file, read only then: a pipe nobody reads could fill and stall the daemon).
    """
    path = scratch / "notify.sock"
    path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, (
        scratch / "serve.stderr"
    ).open("w+") as stderr:
        sock.bind(str(path))
        sock.settimeout(0.5)
        env = dict(os.environ, NOTIFY_SOCKET=str(path))
        env.pop("CACHE_DIRECTORY", None)  # the address space cache stays in the scratch data_dir
        start = time.perf_counter()
        process = subprocess.Popen(
            [str(BIN / "shuttled"), "serve", "--config", str(config), "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=stderr, env=env,
        )
        try:
            while True:
                try:
                    fields = sock.recv(4096).decode().splitlines()
                except TimeoutError:
                    if process.poll() is not None or time.perf_counter() - start > TIMEOUT_S:
                        stderr.seek(0)
                        raise SystemExit(
                            f"no READY=1 (exit status {process.poll()}):\n"
                            + stderr.read()[-3000:]
                        ) from None
                    continue
                if "READY=1" in fields:
                    ready = time.perf_counter() - start
                    break
            process.send_signal(signal.SIGTERM)
            if process.wait(timeout=TIMEOUT_S) != 0:
                stderr.seek(0)
                raise SystemExit(
                    f"shuttled serve exited {process.returncode} after SIGTERM:\n"
                    + stderr.read()[-3000:]
                )
        finally:
            process.kill()
    return ready


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--runs", type=int, default=5, help="measured starts (after one warm-up)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="shuttled-cold-start-"))
    simulator, text = start_simulator(scratch / "data", args.units)
    try:
        config = scratch / "shuttled.toml"
        config.write_text(text)
        time_to_ready(config, scratch)  # warm-up: numba and address space caches, page cache, pki
        samples = [time_to_ready(config, scratch) for _ in range(args.runs)]
    finally:
        simulator.send_signal(signal.SIGINT)
        simulator.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "ready_s": round(statistics.median(samples), 3),
        "ready_min_s": round(min(samples), 3),
        "ready_max_s": round(max(samples), 3),
        "units": args.units,
        "goal_s": GOAL_S,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
