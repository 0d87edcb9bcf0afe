"""The crash-torture bench: `shuttle-sim` and `shuttled serve` as killable subprocesses, and an
operator's OPC UA session that watches the run.

Every wait is on something the processes say — the configuration printed on stdout, READY=1 on
the notify socket, data-change notifications — and bounded: a hang fails the test with what was
last seen instead of running into pytest's timeout. Each process writes its log to a file of its
own under the test's directory, which is where to look when a kill leaves something wrong.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from asyncua import Client, ua

BIN = Path(sys.executable).parent
NAMESPACE = "urn:cellshuttle:shuttled"
CONFIG_END = b"# end of configuration"
START_TIMEOUT_S = 90.0
# Operator-interface values the torture follows, by their browse path below the unit.
WATCHED = {
    "State": ("State",),
    "HoldReason": ("HoldReason",),
    "CurrentStepName": ("ProgramManager", "ActiveProgram", "CurrentStepName"),
    "EstimatedRemaining": ("ProgramManager", "ActiveProgram", "EstimatedRemaining"),
    "Volume": ("FunctionSet", "Volume", "CurrentValue"),
}


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Simulator:
    """`shuttle-sim --state FILE --print-config`: each start prints a new configuration (new
    pseudo-terminals, new ports) for the same data directory and the same physical state."""

    def __init__(self, tmp_path: Path, speed: float, units: int = 1) -> None:
        self.tmp_path = tmp_path
        self.speed = speed
        self.units = units
        self.data_dir = tmp_path / "data"
        self.state_file = tmp_path / "plant-state.json"
        self.config = tmp_path / "shuttled.toml"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Path:
        self.starts += 1
        log = self.tmp_path / f"shuttle-sim-{self.starts}.log"
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [
                    str(BIN / "shuttle-sim"), "--units", str(self.units),
                    "--speed", str(self.speed), "--state", str(self.state_file),
                    "--print-config", "--data-dir", str(self.data_dir),
                ],
                stdout=subprocess.PIPE,
                stderr=stderr,
            )  # fmt: skip
        assert self.process.stdout is not None
        text = _read_until(self.process, CONFIG_END, START_TIMEOUT_S, log)
        self.config.write_bytes(text)
        return self.config

    def kill(self) -> None:
        """The instrument loses power: no signal handler runs, nothing is saved on the way."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
            self._close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=30)
        self._close()

    def _close(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None


def _read_until(
    process: subprocess.Popen[bytes], marker: bytes, timeout: float, log: Path
) -> bytes:
    """Everything the process printed up to the line starting with `marker`, within `timeout`."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while not any(line.startswith(marker) for line in data.splitlines()):
        left = deadline - time.monotonic()
        readable, _, _ = select.select([fd], [], [], max(left, 0.0))
        chunk = os.read(fd, 65536) if readable else b""
        if not chunk:
            raise AssertionError(
                f"shuttle-sim printed no configuration (exit {process.poll()}):\n{_tail(log)}"
            )
        data += chunk
    return data


class Daemon:
    """`shuttled serve` as systemd runs it: `start()` returns once it has said READY=1."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.socket_path = tmp_path / "notify.sock"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.ready_s: list[float] = []  # wall time from exec to READY=1, per start

    @property
    def log(self) -> Path:
        return self.tmp_path / f"shuttled-{self.starts}.log"

    def start(self, config: Path) -> None:
        self.starts += 1
        self.socket_path.unlink(missing_ok=True)
        began = time.monotonic()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify, self.log.open("wb") as log:
            notify.bind(str(self.socket_path))
            self.process = subprocess.Popen(
                [str(BIN / "shuttled"), "serve", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=dict(os.environ, NOTIFY_SOCKET=str(self.socket_path)),
            )
            deadline = began + START_TIMEOUT_S
            while True:
                # Bounded slices only to notice a daemon that exited instead of getting ready.
                readable, _, _ = select.select([notify], [], [], 1.0)
                if readable and "READY=1" in notify.recv(4096).decode().splitlines():
                    break
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"shuttled serve did not get ready (exit {self.process.poll()}):\n"
                        f"{_tail(self.log)}"
                    )
        self.ready_s.append(time.monotonic() - began)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        """SIGTERM, as systemd stops the service: pumps stopped, journal flushed, exit 0."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(timeout=60) == 0, _tail(self.log)
        self.process = None


def operator_endpoint(config: Path) -> str:
    for line in config.read_text().splitlines():
        if line.startswith("endpoint") and "/shuttled" in line:
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError(f"no operator endpoint in {config}")


def signed_in_client(endpoint: str, credentials: Path) -> Client:
    """An OPC UA client that signs in as the account in `sim-credentials` (`user:password`)."""
    user, password = credentials.read_text().strip().split(":", 1)
    client = Client(endpoint, timeout=10)
    client.set_user(user)
    client.set_password(password)
    return client


class Operator:
    """An operator's OPC UA session on unit U01 that follows `WATCHED` by subscription."""

    def __init__(self, endpoint: str, credentials: Path) -> None:
        self.client = signed_in_client(endpoint, credentials)
        self.seen: dict[str, object] = {}
        self._changed = asyncio.Event()

    @classmethod
    async def open(cls, endpoint: str, credentials: Path) -> Operator:
        return await cls(endpoint, credentials).__aenter__()

    async def __aenter__(self) -> Operator:
        await self.client.connect()
        ns = await self.client.get_namespace_index(NAMESPACE)
        device_set = await self.client.nodes.objects.get_child(f"{ns}:DeviceSet")
        instrument = (await device_set.get_children())[0]
        self.unit = await instrument.get_child([f"{ns}:FunctionalUnitSet", f"{ns}:U01"])
        self.ns = ns
        names: dict[ua.NodeId, str] = {}
        nodes = []
        for name, path in WATCHED.items():
            node = await self.unit.get_child([f"{ns}:{p}" for p in path])
            names[node.nodeid] = name
            nodes.append(node)
        operator = self

        class Handler:
            def datachange_notification(self, node: object, value: object, _data: object) -> None:
                operator.seen[names[node.nodeid]] = value  # type: ignore[attr-defined]
                operator._changed.set()

        subscription = await self.client.create_subscription(20, Handler())
        await subscription.subscribe_data_change(nodes)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await asyncio.wait_for(self.client.disconnect(), 10)

    async def call(self, method: str, *args: str) -> list:
        node = await self.unit.get_child(f"{self.ns}:{method}")
        result = await self.unit.call_method(
            node, *[ua.Variant(a, ua.VariantType.String) for a in args]
        )
        return result if isinstance(result, list) else [result]

    async def wait_until(
        self, condition: Callable[[Mapping[str, object]], bool], what: str, timeout: float = 120.0
    ) -> None:
        """Until the values seen satisfy `condition`, woken by each data change; bounded."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition(self.seen):
            self._changed.clear()
            left = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(self._changed.wait(), max(left, 0.0))
            except TimeoutError:
                message = f"no {what} within {timeout:.0f} s; seen {self.seen}"
                raise AssertionError(message) from None
