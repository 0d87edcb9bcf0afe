"""kill -9 in the middle of a transfer and of a long phase: the run comes back held and, after
Restart, completes with the protocol's volume transferred exactly once (SPEC §4, issue 5)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from asyncua import ua
from crash_rig import operator_endpoint, signed_in_client

BIN = Path(sys.executable).parent
NAMESPACE = "urn:cellshuttle:shuttled"
SPEED = 60.0  # process seconds per wall second, shared by shuttle-sim and the daemon

PROTOCOL = """\
shuttle_protocol: 1
name: crash-test
version: 1.0.0
phases:
  - name: feed
    temperature: 37.0
    steps:
      - transfer: {pump: media, volume_ml: 30, rate_ml_min: 2}
  - name: rest
    temperature: 37.0
    duration: 20m
"""


@pytest.fixture
def simulator(start_simulator: Callable[[int, float], Path]) -> tuple[Path, Path]:
    config = start_simulator(1, SPEED)
    return config, config.parent / "data"


class Daemon:
    """`shuttled serve` as systemd runs it; `start()` returns once it has said READY=1."""

    def __init__(self, config: Path, tmp_path: Path) -> None:
        self.config = config
        self.socket_path = tmp_path / "notify.sock"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.socket_path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(self.socket_path))
            notify.settimeout(90)
            env = dict(os.environ, NOTIFY_SOCKET=str(self.socket_path))
            self.process = subprocess.Popen(
                [str(BIN / "shuttled"), "serve", "--config", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            while "READY=1" not in notify.recv(4096).decode().splitlines():
                pass

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)


class Operator:
    """An OPC UA session as an operator's console would open it."""

    def __init__(self, endpoint: str, credentials: Path) -> None:
        self.client = signed_in_client(endpoint, credentials)

    async def __aenter__(self) -> Operator:
        await self.client.connect()
        ns = await self.client.get_namespace_index(NAMESPACE)
        device_set = await self.client.nodes.objects.get_child(f"{ns}:DeviceSet")
        instrument = (await device_set.get_children())[0]
        self.unit = await instrument.get_child([f"{ns}:FunctionalUnitSet", f"{ns}:U01"])
        self.ns = ns
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.disconnect()

    async def node(self, *path: str):
        return await self.unit.get_child([f"{self.ns}:{p}" for p in path])

    async def call(self, method: str, *args: str) -> list:
        node = await self.node(method)
        result = await self.unit.call_method(
            node, *[ua.Variant(a, ua.VariantType.String) for a in args]
        )
        return result if isinstance(result, list) else [result]

    async def wait_for(self, path: tuple[str, ...], condition: Callable[[object], bool]) -> object:
        """Wait on data-change notifications, never on a timer."""
        queue: asyncio.Queue[object] = asyncio.Queue()

        class Handler:
            def datachange_notification(self, _node: object, value: object, _data: object) -> None:
                queue.put_nowait(value)

        subscription = await self.client.create_subscription(50, Handler())
        await subscription.subscribe_data_change(await self.node(*path))
        try:
            while True:
                value = await asyncio.wait_for(queue.get(), 120)
                if condition(value):
                    return value
        finally:
            await subscription.delete()


async def _held_then_restarted(operator: Operator) -> None:
    state = await (await operator.node("State")).read_value()
    reason = await (await operator.node("HoldReason")).read_value()
    assert (state, reason) in (("HELD", "daemon restarted"), ("HOLDING", "daemon restarted"))
    await operator.wait_for(("State",), lambda v: v == "HELD")
    await operator.call("Restart", "checked after the power cut")


async def test_a_killed_daemon_resumes_without_repeating_a_transfer(
    simulator: tuple[Path, Path], tmp_path: Path
) -> None:
    config, data_dir = simulator
    endpoint, credentials = operator_endpoint(config), data_dir / "sim-credentials"
    daemon = Daemon(config, tmp_path)
    try:
        daemon.start()
        async with Operator(endpoint, credentials) as operator:
            template, errors = await operator.call("LoadProtocol", PROTOCOL)
            assert template and not errors
            await operator.call("Start", template, "{}", "crash test")
            # Kill while the 30 mL transfer is under way.
            await operator.wait_for(
                ("FunctionSet", "Volume", "CurrentValue"),
                lambda v: v is not None and 108.0 < v < 120.0,
            )
        daemon.kill()

        daemon.start()
        async with Operator(endpoint, credentials) as operator:
            await _held_then_restarted(operator)
            await operator.wait_for(
                ("ProgramManager", "ActiveProgram", "CurrentStepName"),
                lambda v: isinstance(v, str) and "rest" in v,
            )
        daemon.kill()  # and again during the long phase

        daemon.start()
        async with Operator(endpoint, credentials) as operator:
            await _held_then_restarted(operator)
            await operator.wait_for(("State",), lambda v: v == "COMPLETE")
            volume = await (
                await operator.node("FunctionSet", "Volume", "CurrentValue")
            ).read_value()
        # 100 mL at the start plus the protocol's 30 mL, once.
        assert volume == pytest.approx(130.0, abs=0.05)
    finally:
        daemon.stop()
