"""The live feed: ONE OPC UA subscription per console, fanned out to every browser as
server-sent events.

Why one: sixteen units times a dozen variables is ~270 monitored items; a subscription per
browser would multiply the daemon's publishing work by the number of open pages, and polling
would add read requests per unit per browser. The console keeps the latest value of everything in
`snapshot`, coalesces changes for `FLUSH_S` and sends each browser only what changed (a new
browser first gets the whole snapshot). The subscription lives in the OPC UA session of a
signed-in person (the console holds no account of its own and stores no password); when that
person signs out or locks, the feed moves to another signed-in person's session.

A unit page's chart shows the run so far: the daemon's history of the unit's variables (OPC UA
HistoryRead, answered from the journal, one row a minute of process time and at every change),
read in the person's own session when the page opens, followed by the points this feed kept since
the newest history row (at most four a second, `HISTORY_POINTS` per unit), then the live stream.
Every point's time is the daemon clock's (the value's SourceTimestamp), so history and live
points join without a seam, in the service and in a scaled simulation alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from asyncua import ua

from shuttled.client.history import read_history
from shuttled.client.opcua import Connection, resolve_paths

if TYPE_CHECKING:
    from asyncua.common.subscription import Subscription

log = structlog.get_logger("shuttled.console")

UNIT_FIELDS: dict[str, tuple[str, ...]] = {
    "state": ("State",),
    "hold_reason": ("HoldReason",),
    "alarms": ("Alarms",),
    "temperature": ("FunctionSet", "Temperature", "CurrentValue"),
    "target": ("FunctionSet", "Temperature", "TargetValue"),
    "heater": ("FunctionSet", "Temperature", "ControllerOutput"),
    "density": ("FunctionSet", "CellDensity", "SensorValue"),
    "growth": ("FunctionSet", "CellDensity", "GrowthRate"),
    "volume": ("FunctionSet", "Volume", "CurrentValue"),
    "protocol": ("ProgramManager", "ActiveProgram", "ProgramTemplateId"),
    "step": ("ProgramManager", "ActiveProgram", "CurrentStepName"),
    "run_id": ("ProgramManager", "ActiveProgram", "DeviceProgramRunId"),
    "batch": ("ProgramManager", "ActiveProgram", "BatchId"),
    "cartridge": ("ProgramManager", "ActiveProgram", "CartridgeId"),
    "runtime": ("ProgramManager", "ActiveProgram", "CurrentRuntime"),
    "remaining": ("ProgramManager", "ActiveProgram", "EstimatedRemaining"),
}
TREND_FIELDS = ("temperature", "target", "heater", "density", "volume")
PUBLISH_MS = 100.0  # the daemon's mirror refreshes at most every 0.1 s of wall time
FLUSH_S = 0.05  # coalescing window before a change goes to the browsers
HISTORY_POINTS = 4000  # per unit; halved (every other point) when full
HISTORY_MIN_GAP_S = 0.25  # at most four trend points per second per unit
IDLE_HISTORY_S = 24 * 3600.0  # an idle unit's chart: the last day of the daemon's clock
QUEUE_SIZE = 64


def _clean(value: Any) -> Any:
    """JSON has no NaN: an unknown measurement is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _epoch_ms(stamp: datetime | None) -> float | None:
    if stamp is None:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp() * 1000.0


class _Handler:
    """asyncua's subscription callback: forwards to the feed (called on the event loop)."""

    def __init__(self, feed: LiveFeed) -> None:
        self.feed = feed

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        self.feed.changed(node.nodeid, value, data.monitored_item.Value)

    def status_change_notification(self, status: Any) -> None:
        log.warning("console subscription status changed", status=str(status))


class LiveFeed:
    """The snapshot, the trend history and the browsers' queues."""

    def __init__(self) -> None:
        self.snapshot: dict[str, dict[str, Any]] = {}
        self.alarm_list: list[dict[str, Any]] = []
        self.history: dict[str, list[list[float | None]]] = {}
        self._last_point: dict[str, float] = {}
        self._targets: dict[ua.NodeId, tuple[str, str]] = {}
        self._trend_nodes: dict[str, dict[str, ua.NodeId]] = {}  # unit -> trend field -> node
        self._dirty: dict[str, dict[str, Any]] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._queues: set[asyncio.Queue[str]] = set()
        self.host: Connection | None = None
        self._subscription: Subscription | None = None
        self._lock = asyncio.Lock()

    # --- the subscription -----

    async def attach(self, conn: Connection) -> None:
        """Subscribe in `conn`'s session unless the feed already has a host."""
        async with self._lock:
            if self.host is not None:
                return
            try:
                await self._subscribe(conn)
            except Exception as error:  # a failed subscription must not fail the sign-in
                log.warning("console feed could not subscribe", error=str(error))
                self.host, self._subscription = None, None

    async def detach(self, conn: Connection, others: list[Connection]) -> None:
        """`conn` is closing: move the subscription to another signed-in session, if any."""
        async with self._lock:
            if self.host is not conn:
                return
            if self._subscription is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._subscription.delete(), 2)
            self.host, self._subscription = None, None
            for other in others:
                try:
                    await self._subscribe(other)
                    return
                except Exception as error:
                    log.warning("console feed could not move", error=str(error))
                    self.host, self._subscription = None, None

    async def _subscribe(self, conn: Connection) -> None:
        targets: dict[ua.NodeId, tuple[str, str]] = {}
        for gone in set(self.snapshot) - set(conn.units):  # a daemon restarted with fewer units
            del self.snapshot[gone]
            self.history.pop(gone, None)
        for unit, node in conn.units.items():
            self.snapshot.setdefault(unit, {"unit": unit})
            ids = await resolve_paths(conn, node, list(UNIT_FIELDS.values()))
            for key, node_id in zip(UNIT_FIELDS, ids, strict=True):
                if node_id is not None:
                    targets[node_id] = (unit, key)
        (alarm_list,) = await resolve_paths(conn, conn.instrument, [("AlarmList",)])
        if alarm_list is not None:
            targets[alarm_list] = ("", "alarm_list")
        self._targets = targets
        self._trend_nodes = {}
        for node_id, (unit, key) in targets.items():
            if key in TREND_FIELDS:
                self._trend_nodes.setdefault(unit, {})[key] = node_id
        subscription = await conn.client.create_subscription(
            ua.CreateSubscriptionParameters(RequestedPublishingInterval=PUBLISH_MS,
                                            RequestedLifetimeCount=3000,
                                            RequestedMaxKeepAliveCount=50,
                                            MaxNotificationsPerPublish=0, Priority=0),
            _Handler(self))
        nodes = [conn.client.get_node(i) for i in targets]
        await subscription.subscribe_data_change(nodes, queuesize=1)
        self.host, self._subscription = conn, subscription
        log.info("console feed subscribed", user=conn.user, items=len(nodes))

    def changed(self, node_id: ua.NodeId, value: Any, data: ua.DataValue) -> None:
        target = self._targets.get(node_id)
        if target is None:
            return
        unit, key = target
        if key == "alarm_list":
            try:
                self.alarm_list = json.loads(value or "[]")
            except ValueError:
                self.alarm_list = []
            return
        if key == "alarms":
            try:
                value = [a.get("name", "?") for a in json.loads(value or "[]")]
            except (ValueError, AttributeError):
                value = []
        value = _clean(value)
        self.snapshot.setdefault(unit, {"unit": unit})[key] = value
        delta = self._dirty.setdefault(unit, {})
        delta[key] = value
        # "t": when the daemon wrote the value (wall time, what latency is measured from);
        # "pt": the daemon clock's time of the value (the trend's x, the same as its history's).
        for name, stamp in (("t", _epoch_ms(data.ServerTimestamp or data.SourceTimestamp)),
                            ("pt", _epoch_ms(data.SourceTimestamp or data.ServerTimestamp))):
            if stamp is not None:
                delta[name] = max(delta.get(name, 0.0), stamp)
                self.snapshot[unit][name] = max(self.snapshot[unit].get(name, 0.0), stamp)
        if key in TREND_FIELDS:
            self._trend(unit)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_S, self._flush)

    def _trend(self, unit: str) -> None:
        now = time.monotonic()
        values = self.snapshot[unit]
        if now - self._last_point.get(unit, -math.inf) < HISTORY_MIN_GAP_S or not values.get("pt"):
            return
        self._last_point[unit] = now
        points = self.history.setdefault(unit, [])
        points.append([round(values["pt"] / 1000.0, 3), *(values.get(k) for k in TREND_FIELDS)])
        if len(points) > HISTORY_POINTS:
            del points[1::2]

    # --- the browsers -----

    def _flush(self) -> None:
        self._flush_handle = None
        if not self._dirty:
            return
        message = f"data: {json.dumps({'units': self._dirty})}\n\n"
        self._dirty = {}
        for queue in list(self._queues):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # a stalled browser: give it the whole picture later
                with contextlib.suppress(asyncio.QueueEmpty):
                    while True:
                        queue.get_nowait()
                queue.put_nowait(self.full_message())

    def full_message(self) -> str:
        return f"data: {json.dumps({'units': self.snapshot, 'full': True})}\n\n"

    def listen(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
        queue.put_nowait(self.full_message())
        self._queues.add(queue)
        return queue

    def forget(self, queue: asyncio.Queue[str]) -> None:
        self._queues.discard(queue)

    async def unit_history(self, conn: Connection, unit: str) -> dict[str, Any]:
        """Columns for uPlot: x (epoch s of the daemon's clock) then one list per trend field,
        the run so far (an idle unit: the last `IDLE_HISTORY_S`)."""
        values = self.snapshot.get(unit, {})
        now_s = (values.get("pt") or time.time() * 1000.0) / 1000.0
        runtime = values.get("runtime") or 0.0
        since = now_s - (runtime + 60.0 if runtime > 0 else IDLE_HISTORY_S)
        ids = self._trend_nodes.get(unit) or {}
        past: dict[float, list[float | None]] = {}
        if ids:
            try:
                found = await read_history(conn, ids, datetime.fromtimestamp(since, UTC),
                                           datetime.fromtimestamp(now_s + 3600.0, UTC))
            except Exception as error:  # the live points still draw
                log.warning("console could not read history", unit=unit, error=str(error))
                found = {}
            for column, key in enumerate(TREND_FIELDS):
                for at, value in found.get(key, []):
                    past.setdefault(round(at, 3), [None] * len(TREND_FIELDS))[column] = value
        newest = max(past, default=-math.inf)
        points = [[at, *row] for at, row in sorted(past.items())]
        points += [p for p in self.history.get(unit, []) if p[0] > newest and p[0] >= since]
        columns = list(zip(*points, strict=True)) if points else [() for _ in range(6)]
        return {"fields": ["t", *TREND_FIELDS], "data": [list(c) for c in columns]}
