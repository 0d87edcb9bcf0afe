"""The operator port under abuse while `shuttled serve` regulates 16 units (issue 14, item 5).

Bounded, loopback only, counted and timed: thousands of connections opened and dropped, random
bytes, truncated and oversized chunks, a valid Hello followed by garbage. Meanwhile the daemon
regulates 16 units running the demo against `shuttle-sim`. It must keep its tick (the lateness it
logs at SIGTERM), answer a legitimate client within a second and `shuttlectl status` at all, and
keep its memory bounded. The numbers are printed (`pytest -s`) for the closing note.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlparse

from asyncua import Node, ua
from crash_rig import operator_endpoint, signed_in_client

from shuttled.operator_server.address_space import NAMESPACE_URI

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
UNITS = 16
CONTROL_PERIOD_S = 1.0  # shorter than the service's 5 s: more ticks measured under the abuse
SEED = 14
DROPPED_CONNECTIONS = 3000
EACH_MALFORMED_KIND = 150
AT_ONCE = 25  # connections in flight together
RATE_PER_S = 180.0  # new connections per second: 3,600 of them spread over 20 s of ticks


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS")


def _hello() -> bytes:
    from asyncua.ua import ua_binary

    body = ua_binary.struct_to_binary(ua.Hello(
        ProtocolVersion=0, ReceiveBufferSize=65535, SendBufferSize=65535, MaxMessageSize=0,
        MaxChunkCount=0, EndpointUrl="opc.tcp://127.0.0.1/shuttled",
    ))  # fmt: skip
    return b"HELF" + struct.pack("<I", len(body) + 8) + body


def _attacks(rng: random.Random) -> list[tuple[str, bytes]]:
    """What each abusive connection sends before it goes away (empty: just connect and drop)."""
    attacks: list[tuple[str, bytes]] = [("dropped", b"")] * DROPPED_CONNECTIONS
    for _ in range(EACH_MALFORMED_KIND):
        attacks.append(("random bytes", rng.randbytes(rng.randint(1, 8192))))
        attacks.append(("truncated chunk", b"HELF" + struct.pack("<I", 1000) + rng.randbytes(20)))
        claim = struct.pack("<I", 0x7FFFFFFF)  # a 2 GiB chunk, announced
        attacks.append(("oversized chunk", b"MSGF" + claim + rng.randbytes(65536)))
        attacks.append(("hello then garbage", _hello() + rng.randbytes(rng.randint(8, 4096))))
    rng.shuffle(attacks)
    return attacks


async def _abuse(host: str, port: int, attacks: list[tuple[str, bytes]]) -> Counter[str]:
    """Send every attack, at most AT_ONCE in flight and RATE_PER_S started per second; count
    how each connection ended."""
    outcome: Counter[str] = Counter()
    gate = asyncio.Semaphore(AT_ONCE)
    loop = asyncio.get_running_loop()
    begin = loop.time()

    async def one(index: int, kind: str, payload: bytes) -> None:
        # Pacing, not waiting for a condition: the attacker's own send schedule.
        await asyncio.sleep(max(0.0, begin + index / RATE_PER_S - loop.time()))
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            except (OSError, TimeoutError):
                outcome[f"{kind}: connect failed"] += 1
                return
            try:
                if payload:
                    writer.write(payload)
                    await writer.drain()
                    # The server closes bad frames at once; truncated ones wait for us to go.
                    closed = await asyncio.wait_for(reader.read(65536), 0.5) == b""
                    outcome[f"{kind}: {'closed by the daemon' if closed else 'answered'}"] += 1
                else:
                    outcome[kind] += 1
            except TimeoutError:
                outcome[f"{kind}: left open, dropped by us"] += 1
            except OSError:
                outcome[f"{kind}: reset by the daemon"] += 1
            finally:
                writer.close()

    await asyncio.gather(*(one(i, kind, payload) for i, (kind, payload) in enumerate(attacks)))
    return outcome


@contextlib.asynccontextmanager
async def _signed_in(endpoint: str, credentials: Path) -> AsyncIterator[tuple[Node, int]]:
    """An OPC UA session as the `sim` supervisor; yields the instrument node and namespace."""
    client = signed_in_client(endpoint, credentials)
    await client.connect()
    try:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        device_set = await client.nodes.objects.get_child(f"{ns}:DeviceSet")
        yield (await device_set.get_children())[0], ns
    finally:
        await client.disconnect()


async def _status_round_trip(endpoint: str, credentials: Path) -> float:
    """A legitimate client: sign in, read every unit's State; seconds it took."""
    started = time.perf_counter()
    async with _signed_in(endpoint, credentials) as (instrument, ns):
        units = await (await instrument.get_child(f"{ns}:FunctionalUnitSet")).get_children()
        states = [await (await u.get_child(f"{ns}:State")).read_value() for u in units]
        assert len(states) == UNITS
    return time.perf_counter() - started


async def _start_demo_everywhere(endpoint: str, credentials: Path) -> None:
    text = (ROOT / "protocols" / "library" / "demo.yaml").read_text()
    async with _signed_in(endpoint, credentials) as (instrument, ns):
        for unit in await (await instrument.get_child(f"{ns}:FunctionalUnitSet")).get_children():
            load = await unit.get_child(f"{ns}:LoadProtocol")
            template, errors = await unit.call_method(load, ua.Variant(text, ua.VariantType.String))
            assert template and not errors, errors
            start = await unit.get_child(f"{ns}:Start")
            await unit.call_method(start, *(ua.Variant(v, ua.VariantType.String)
                                            for v in (template, "{}", "abuse test")))  # fmt: skip


def _tick_lateness(log_file: Path) -> dict:
    for line in reversed(log_file.read_text().splitlines()):
        if line.startswith("{") and json.loads(line).get("event") == "tick lateness":
            return json.loads(line)
    raise AssertionError("the daemon logged no tick lateness:\n" + log_file.read_text()[-3000:])


def test_the_daemon_keeps_regulating_while_its_operator_port_is_abused(
    start_simulator: Callable[[int, float], Path], tmp_path: Path
) -> None:
    config = start_simulator(UNITS, 1.0)
    config.write_text(config.read_text().replace(
        "control_period_s = 5.0", f"control_period_s = {CONTROL_PERIOD_S}"))  # fmt: skip
    endpoint, credentials = operator_endpoint(config), tmp_path / "data" / "sim-credentials"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(90)
    log_file = tmp_path / "serve.log"
    with log_file.open("w") as log:
        daemon = subprocess.Popen(
            [str(BIN / "shuttled"), "serve", "--config", str(config)], stdout=subprocess.DEVNULL,
            stderr=log, env=dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock")),
        )  # fmt: skip
    try:
        while "READY=1" not in notify.recv(4096).decode().splitlines():
            pass
        asyncio.run(_start_demo_everywhere(endpoint, credentials))
        rss_before = _rss_mib(daemon.pid)
        quiet_s = asyncio.run(_status_round_trip(endpoint, credentials))
        url = urlparse(endpoint)
        assert url.hostname is not None and url.port is not None
        host, port = url.hostname, url.port
        attacks = _attacks(random.Random(SEED))
        sent = len(attacks)

        async def abuse_and_ask() -> tuple[Counter[str], list[float], float]:
            started = time.perf_counter()
            flooding = asyncio.create_task(_abuse(host, port, attacks))
            answers = []
            while not flooding.done():  # a legitimate client, again and again, during the flood
                answers.append(await _status_round_trip(endpoint, credentials))
            return await flooding, answers, time.perf_counter() - started

        outcome, answers, flood_s = asyncio.run(abuse_and_ask())
        ctl_started = time.perf_counter()
        ctl = subprocess.run(
            [str(BIN / "shuttlectl"), "--endpoint", endpoint, "--password-file", str(credentials),
             "status", "--json"], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        ctl_s = time.perf_counter() - ctl_started
        rss_after = _rss_mib(daemon.pid)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    finally:
        daemon.kill()
        notify.close()
    lateness = _tick_lateness(log_file)
    print(json.dumps({
        "connections": sent, "flood_s": round(flood_s, 1), "outcome": dict(outcome),
        "status_quiet_s": round(quiet_s, 3), "status_under_abuse_max_s": round(max(answers), 3),
        "status_answers_during_flood": len(answers), "shuttlectl_status_s": round(ctl_s, 2),
        "rss_mib_before": round(rss_before, 1), "rss_mib_after": round(rss_after, 1),
        "tick_lateness": {k: lateness[k] for k in ("ticks", "p50_ms", "p99_ms", "max_ms")},
    }))  # fmt: skip
    assert ctl.returncode == 0, ctl.stderr
    assert len(json.loads(ctl.stdout)) == UNITS
    assert answers and max(answers) < 1.0  # a legitimate client within a second, all along
    assert sum(outcome.values()) == sent
    assert not any("answered" in kind for kind in outcome)  # no garbage got a reply
    assert rss_after - rss_before < 40.0  # bounded: nothing buffered per abusive connection
    # The tick kept its period: no tick later than half a period, and most far less.
    assert lateness["ticks"] >= flood_s / CONTROL_PERIOD_S * 0.8
    assert lateness["max_ms"] < CONTROL_PERIOD_S * 1000.0 / 2
    assert lateness["p99_ms"] < 100.0
