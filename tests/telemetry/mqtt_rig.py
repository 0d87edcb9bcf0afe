"""A real Mosquitto on a free port, a subscriber that sees what a historian sees, and the daemon.

A missing broker is a failure, never a skip (ARCHITECTURE.md): `scripts/setup` installs it.
Nothing here sleeps for a condition: the broker is up when it says it runs, the daemon's state is
read from its log lines and the subscriber's messages arrive on a queue.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
WAIT_S = 45.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LineReader:
    """Drains a pipe in a thread (a full pipe would block the child) into a queue of lines."""

    def __init__(self, stream) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.history: list[str] = []
        threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream) -> None:
        for line in stream:
            self.history.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = WAIT_S) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no matching line in {timeout} s") from None
            if line is None:
                raise AssertionError("the process ended:\n" + "".join(self.history[-30:]))
            if predicate(line):
                return line


class Broker:
    """Mosquitto with persistence, so a historian's persistent session outlives a restart."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {directory}/",
            "max_queued_messages 100000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to `mosquitto`, who cannot write here
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        assert Path(MOSQUITTO).exists(), "mosquitto is not installed: run scripts/setup"
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)], stderr=subprocess.PIPE, text=True
        )
        LineReader(self.process.stderr).wait_for(lambda line: " running" in line)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # saves its persistence file on the way out
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    server = Broker(tmp_path / "broker")
    server.start()
    yield server
    server.stop()


@dataclass
class Received:
    topic: str
    retain: bool
    payload: dict


@dataclass
class Subscriber:
    """Everything under `shuttle/#` at QoS 1, in arrival order."""

    port: int
    client_id: str = ""
    persistent: bool = False
    messages: queue.Queue[Received] = field(default_factory=queue.Queue)
    seen: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=not self.persistent,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self.subscribed.wait(WAIT_S), "subscriber could not subscribe"

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        client.subscribe("shuttle/#", qos=1)

    def _on_message(self, client, userdata, message) -> None:
        self.messages.put(Received(message.topic, message.retain, json.loads(message.payload)))

    def wait_for(
        self, predicate: Callable[[Received], bool], timeout: float = WAIT_S
    ) -> Received:
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self.messages.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(
                    f"no matching message in {timeout} s; last: {self.seen[-3:]}"
                ) from None
            self.seen.append(message)
            if predicate(message):
                return message

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def subscribe() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(port: int, **kwargs) -> Subscriber:
        made.append(Subscriber(port, **kwargs))
        return made[-1]

    yield make
    for subscriber in made:
        subscriber.close()


class Daemon:
    """`shuttled simulate` serving (no protocol unless given) with telemetry to the broker."""

    def __init__(self, port: int, data_dir: Path, *extra: str, speed: str = "20") -> None:
        self.process = subprocess.Popen(
            [str(BIN / "shuttled"), "simulate", "--units", "1", "--speed", speed,
             "--data-dir", str(data_dir), "--opcua-port", str(free_port()),
             "--mqtt", f"127.0.0.1:{port}", "--log-level", "info", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        self.log = LineReader(self.process.stderr)

    def wait_log(self, event: str, timeout: float = WAIT_S) -> dict:
        line = self.log.wait_for(lambda text: f'"event": "{event}"' in text, timeout)
        return json.loads(line)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@pytest.fixture
def daemons() -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(*args, **kwargs) -> Daemon:
        started.append(Daemon(*args, **kwargs))
        return started[-1]

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.kill()


def telemetry_of(messages: list[Received], unit: str = "U01") -> list[dict]:
    return [m.payload for m in messages if m.topic.endswith(f"/{unit}/telemetry")]
