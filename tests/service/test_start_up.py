"""Fast start-up (issue 8, point 4) without changing what READY=1 means: the standard address
space cache is made by the first start, used by the next, and a corrupt one is rebuilt."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from shuttled.operator_server.standard_nodes import FILE_NAME, read_cache

BIN = Path(sys.executable).parent


def _start_until_ready(config: Path, tmp_path: Path) -> None:
    """One `shuttled serve` until READY=1, a check that the operator server then listens, and a
    clean SIGTERM."""
    path = tmp_path / "notify.sock"
    path.unlink(missing_ok=True)
    env = dict(os.environ, NOTIFY_SOCKET=str(path))
    env.pop("CACHE_DIRECTORY", None)  # the cache goes to <data_dir>/cache
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notifications:
        notifications.bind(str(path))
        notifications.settimeout(90)
        process = subprocess.Popen(
            [str(BIN / "shuttled"), "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )
        try:
            while "READY=1" not in notifications.recv(4096).decode().splitlines():
                pass
            endpoint = urlparse(tomllib.loads(config.read_text())["opcua"]["endpoint"])
            with socket.create_connection((endpoint.hostname, endpoint.port), timeout=5):
                pass  # READY=1 still means the operator interface listens
            process.send_signal(signal.SIGTERM)
            _, errors = process.communicate(timeout=60)
            assert process.returncode == 0, errors
        finally:
            process.kill()


def test_the_cache_is_made_once_reused_and_rebuilt_when_corrupt(
    start_simulator: Callable[[int, float], Path], tmp_path: Path
) -> None:
    config = start_simulator(2, 10)
    cache = tmp_path / "data" / "cache" / FILE_NAME
    assert not cache.exists()
    _start_until_ready(config, tmp_path)
    made = cache.stat()
    assert len(read_cache(cache)) > 5000

    _start_until_ready(config, tmp_path)
    assert (cache.stat().st_ino, cache.stat().st_mtime_ns) == (made.st_ino, made.st_mtime_ns)

    with cache.open("r+b") as file:  # a disk error in the middle of the file
        file.seek(made.st_size // 2)
        file.write(b"\0" * 4096)
    _start_until_ready(config, tmp_path)
    assert cache.stat().st_ino != made.st_ino  # replaced, not patched
    assert len(read_cache(cache)) > 5000
