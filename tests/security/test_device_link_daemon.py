"""The daemon's side of the encrypted device link: its client certificate under the data
directory, the trust list of controllers, and what it tells an administrator — `shuttled serve`
against `shuttle-sim`, both real processes talking OPC UA over loopback."""

from __future__ import annotations

import json
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from asyncua import ua

from drivers.clock import VirtualClock
from shuttled.devices import Devices
from shuttled.simulation.instrument_config import config_for_instrument, trust_each_other
from simulators.instrument import VirtualInstrument

BIN = Path(sys.executable).parent
WAIT_S = 60.0


async def test_the_daemon_makes_its_certificate_and_opens_an_encrypted_session(
    tmp_path: Path,
) -> None:
    instrument = VirtualInstrument(2, now=VirtualClock().now, seed=1, pki_dir=tmp_path / "sim")
    await instrument.start()
    try:
        endpoints = instrument.endpoints()
        config = config_for_instrument(endpoints, tmp_path / "data", 0, None).to_daemon_config()
        trust_each_other(endpoints, config)
        devices = Devices(config)
        await devices.open()
        try:
            [bioreactor] = devices.bioreactors.values()
            assert bioreactor._client is not None
            session = bioreactor._client.security_policy
            assert session.URI.endswith("#Basic256Sha256")
            assert session.Mode == ua.MessageSecurityMode.SignAndEncrypt
            assert (await bioreactor.read_units())["U02"].good
        finally:
            await devices.close()
    finally:
        await instrument.stop()
    own = tmp_path / "data" / "pki" / "controllers" / "own" / "cert.der"
    assert own.read_bytes() in [p.read_bytes() for p in (tmp_path / "sim" / "trusted").iterdir()]
    trusted = list((tmp_path / "data" / "pki" / "controllers" / "trusted").iterdir())
    assert [p.read_bytes() for p in trusted] == [(tmp_path / "sim/own/cert.der").read_bytes()]


class Process:
    """A console script whose stderr (JSON log lines) is read by a thread into a queue, so a
    test waits for a line with a bounded timeout instead of sleeping."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.lines.put(line)

    def wait_for(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        while True:
            try:
                line = self.lines.get(timeout=WAIT_S)
            except queue.Empty:
                pytest.fail("no such log line; last lines:\n" + "".join(self.seen[-15:]))
            self.seen.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if match(record):
                return record

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Callable[..., tuple[Path, Path]]]:
    """Starts `shuttle-sim --print-config` (extra arguments as given); yields the config file and
    the daemon's data directory."""
    started: list[subprocess.Popen[str]] = []

    def start(*extra: str) -> tuple[Path, Path]:
        data_dir = tmp_path / "data"
        process = subprocess.Popen(
            [str(BIN / "shuttle-sim"), "--units", "1", "--speed", "10", "--print-config",
             "--data-dir", str(data_dir), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        started.append(process)
        assert process.stdout is not None
        lines = []
        for line in process.stdout:  # blocks until the configuration is printed
            lines.append(line)
            if line.startswith("# end of configuration"):
                break
        config = tmp_path / "shuttled.toml"
        config.write_text("".join(lines))
        return config, data_dir

    yield start
    for process in started:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def _serve(config: Path) -> Process:
    return Process([str(BIN / "shuttled"), "serve", "--config", str(config)])


def test_an_unknown_controller_is_named_at_start_and_admitted_by_the_administrators_copy(
    bench: Callable[..., tuple[Path, Path]],
) -> None:
    config, data_dir = bench()
    pki = data_dir / "pki" / "controllers"
    assert 'security_policy = "Basic256Sha256"' in config.read_text()
    for path in (pki / "trusted").iterdir():
        path.unlink()  # a controller the daemon has never been told about
    daemon = _serve(config)
    try:
        refused = daemon.wait_for(lambda r: r["event"].startswith("bioreactor controller cert"))
        assert refused["event"].endswith("certificate not trusted: connection refused")
        assert refused["level"] == "error"
        [rejected] = (pki / "rejected").iterdir()
        assert refused["certificate"] == str(rejected)
        assert refused["trust_it_by_copying_to"] == str(pki / "trusted")
        alarm = daemon.wait_for(lambda r: r["event"] == "alarm raised")
        assert alarm["alarm"] == "BIOREACTOR_LOST"
        assert f"copy it to {pki / 'trusted'}/ to trust it" in alarm["message"]

        shutil.copy(rejected, pki / "trusted")  # the administrator, after checking it
        back = daemon.wait_for(lambda r: r["event"] == "device back")
        assert back["device"] == "bioreactor"
    finally:
        daemon.stop()
    assert daemon.popen.returncode == 0


def test_security_policy_none_is_warned_about_at_every_start(
    bench: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    config, _ = bench("--allow-insecure")
    settings = tomllib.loads(config.read_text())
    settings["bioreactors"]["sim"]["security_policy"] = "None"
    config.write_text(tomli_w.dumps(settings))
    for _ in range(2):
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify_path = tmp_path / "notify.sock"
        notify_path.unlink(missing_ok=True)
        notify.bind(str(notify_path))
        notify.settimeout(WAIT_S)
        daemon = Process([str(BIN / "shuttled"), "serve", "--config", str(config)],
                         env={"NOTIFY_SOCKET": str(notify_path), "PATH": "/usr/bin:/bin"})
        try:
            warning = daemon.wait_for(lambda r: "NOT encrypted" in r["event"])
            assert warning["level"] == "warning"
            assert warning["endpoint"] == settings["bioreactors"]["sim"]["endpoint"]
            while "READY=1" not in notify.recv(4096).decode().splitlines():
                pass
        finally:
            daemon.stop()
            notify.close()
        assert daemon.popen.returncode == 0
