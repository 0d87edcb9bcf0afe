"""What an alarm storm costs the control tick (issue 17): hundreds of alarm transitions a minute.

16 units of the digital twin through the daemon as the composition root builds it — control
loop, alarm model (journal, fsynced; audit trail), OPC UA Alarms & Conditions with one client
subscribed to the Server object's events (in a process of its own, selecting the fields an
alarm list shows, as UaExpert's does), history — on a virtual clock at full speed. The storm
flips two extra alarms on every unit on every tick: 32 transitions per 5 s tick, 384 a minute of
process time (and far more a minute of wall time at full speed). The same run without the storm
is the comparison. Prints one JSON line: per-tick milliseconds (median and p99 of the tick with
its after-tick work, where the alarm model runs; and wall time per tick including the OPC UA
event delivery, which shares the event loop), the ratio storm / quiet, and the share of the
control period the worst stormy tick used.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("SHUTTLED_TEST_SCRYPT_N", "16384")  # a benchmark account, not a plant's

from asyncua import Client, ua

from drivers.clock import VirtualClock
from shuttled.composition import Daemon
from shuttled.records.users import User, hash_password, save_users
from shuttled.service.log_setup import configure_logging
from shuttled.simulation.instrument_config import config_for_instrument
from simulators.direct_transport import direct_transports
from simulators.instrument import VirtualInstrument

UNITS = 16
TICKS = 240  # 20 minutes of process time
STORM_ALARMS = 2  # per unit, flipped every tick


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


FIELDS = ("EventId", "EventType", "SourceName", "Time", "Message", "Severity", "ConditionName",
          "Retain", "ActiveState/Id", "AckedState/Id", "SuppressedState/Id", "Comment",
          "ClientUserId", "ShelvingState/CurrentState")  # fmt: skip


class _Events:
    def __init__(self) -> None:
        self.count = 0

    def event_notification(self, _event: Any) -> None:
        self.count += 1


def _alarm_list_filter() -> ua.EventFilter:
    """The select clause of an alarm list (plus ConditionId), no where clause."""
    clauses = []
    for path in FIELDS:
        operand = ua.SimpleAttributeOperand()
        operand.TypeDefinitionId = ua.NodeId(ua.ObjectIds.BaseEventType)
        operand.BrowsePath = [ua.QualifiedName(name, 0) for name in path.split("/")]
        operand.AttributeId = ua.AttributeIds.Value
        clauses.append(operand)
    condition_id = ua.SimpleAttributeOperand()
    condition_id.TypeDefinitionId = ua.NodeId(ua.ObjectIds.ConditionType)
    condition_id.AttributeId = ua.AttributeIds.NodeId
    clauses.append(condition_id)
    return ua.EventFilter(SelectClauses=clauses)


async def client(endpoint: str) -> None:
    """The A&C client's process: subscribe, then count events until stdin closes."""
    connection = Client(endpoint, timeout=10)
    connection.set_user("bench")
    connection.set_password("bench-pw-1")
    await connection.connect()
    events = _Events()
    subscription = await connection.create_subscription(100, events)
    await subscription.subscribe_events(connection.nodes.server, evfilter=_alarm_list_filter())
    print("subscribed", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print(events.count, flush=True)
    await connection.disconnect()


async def run(storm: bool) -> dict[str, float]:
    clock = VirtualClock()
    instrument = VirtualInstrument(UNITS, now=clock.now, seed=1)
    clock.add_advance_listener(instrument.advance_to)
    with tempfile.TemporaryDirectory(prefix="alarm-storm-") as scratch:
        users = Path(scratch) / "users.toml"
        save_users(users, {"bench": User("bench", "viewer", hash_password("bench-pw-1"))})
        port = _free_port()
        config = config_for_instrument(instrument.endpoints(), Path(scratch), port,
                                       users_file=users).to_daemon_config()  # fmt: skip
        daemon = Daemon(config, clock, direct_transports(instrument, clock.now),
                        restore_runs=False)  # fmt: skip
        await daemon.start()
        subscriber = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client", f"opc.tcp://127.0.0.1:{port}/shuttled",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert subscriber.stdout is not None and subscriber.stdin is not None
        await subscriber.stdout.readline()  # subscribed
        control = daemon.control
        original = control.tick
        started = [0.0]
        sync_ms: list[float] = []

        async def tick(now: float) -> None:
            started[0] = time.perf_counter()
            await original(now)
            if storm:
                for i, unit in enumerate(control.unit_ids):
                    for k in range(STORM_ALARMS):
                        name = f"STORM_{k}"
                        if (control.ticks + i + k) % 2:
                            control._raise_alarm(unit, name, "storm")
                        else:
                            control._clear_alarm(unit, name)

        control.tick = tick  # type: ignore[method-assign]
        wall = time.perf_counter()
        try:
            await daemon.run_until(
                lambda: control.ticks >= TICKS,
                [lambda _d: sync_ms.append((time.perf_counter() - started[0]) * 1000.0)],
            )
            assert daemon.operator is not None and daemon.operator.alarm_conditions is not None
            await daemon.operator.alarm_conditions.drain()
            wall = time.perf_counter() - wall
            transitions = daemon.alarms._seq
            subscriber.stdin.close()
            received = int((await subscriber.stdout.readline()) or 0)
            await subscriber.wait()
        finally:
            if subscriber.returncode is None:
                subscriber.kill()
            await daemon.stop()
            await instrument.stop()
    ordered = sorted(sync_ms[10:])  # past the kernels' first calls
    return {
        "tick_median_ms": statistics.median(ordered),
        "tick_p99_ms": ordered[int(len(ordered) * 0.99) - 1],
        "tick_max_ms": ordered[-1],
        "wall_per_tick_ms": wall / TICKS * 1000.0,
        "transitions": transitions,
        "events_received": received,
        "period_s": config.control_period_s,
    }


async def main() -> None:
    configure_logging("warning", json_output=True)  # as the service logs (to journald)
    quiet = await run(storm=False)
    stormy = await run(storm=True)
    minutes = TICKS * quiet["period_s"] / 60.0
    result = {
        "units": UNITS,
        "ticks": TICKS,
        "storm_transitions_per_process_minute": round(stormy["transitions"] / minutes),
        "storm_transitions_per_wall_minute": round(
            stormy["transitions"] / (stormy["wall_per_tick_ms"] * TICKS / 60000.0)),
        "quiet_tick_median_ms": round(quiet["tick_median_ms"], 2),
        "storm_tick_median_ms": round(stormy["tick_median_ms"], 2),
        "quiet_tick_p99_ms": round(quiet["tick_p99_ms"], 2),
        "storm_tick_p99_ms": round(stormy["tick_p99_ms"], 2),
        "storm_tick_max_ms": round(stormy["tick_max_ms"], 2),
        "quiet_wall_per_tick_ms": round(quiet["wall_per_tick_ms"], 2),
        "storm_wall_per_tick_ms": round(stormy["wall_per_tick_ms"], 2),
        "ratio_tick_median": round(stormy["tick_median_ms"] / quiet["tick_median_ms"], 2),
        "ratio_wall_per_tick": round(stormy["wall_per_tick_ms"] / quiet["wall_per_tick_ms"], 2),
        "storm_worst_tick_share_of_period_pct": round(
            stormy["tick_max_ms"] / (quiet["period_s"] * 1000.0) * 100.0, 3),
        "storm_events_received": stormy["events_received"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        asyncio.run(client(sys.argv[2]))
    else:
        asyncio.run(main())
