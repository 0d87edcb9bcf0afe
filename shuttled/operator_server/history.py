"""OPC UA HistoryRead of each unit's process values, answered from the journal.

A trend of the run so far is what an operator looks at first and what a plant historian or
UaExpert's trend view asks every server for: HistoryRead on the variable, not a private method.
The journal already keeps the run report's telemetry (`shuttled/reports/history.py`: one row per
unit every minute of process time and at every state, phase, alarm or transfer change), so the
history is that table, durable across restarts and the same numbers the run report and the batch
record plot. Nothing is kept in memory and nothing is written twice.

Timestamps are the daemon clock's UTC (`Clock.to_epoch`), like the live values' SourceTimestamp
and MQTT telemetry: in the service that is wall time; in a scaled simulation a run of 14 days
spans 14 days of timestamps. Queries run in a worker thread on their own connection, so a year
of history read by a historian never stalls the control tick.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog
from asyncua import Server, ua
from asyncua.server.history import HistoryStorageInterface

log = structlog.get_logger("shuttled.operator")

# The unit variable (AddressSpaceBuilder's key) -> the journal's telemetry column.
HISTORIZED: dict[str, str] = {
    "Temperature.CurrentValue": "temperature",
    "Temperature.TargetValue": "target",
    "Temperature.ControllerOutput": "heater",
    "CellDensity.SensorValue": "density",
    "CellDensity.GrowthRate": "growth_rate",
    "Volume.CurrentValue": "volume_ml",
}
MAX_VALUES_PER_READ = 10_000  # beyond it a continuation point, as OPC UA Part 11 expects
_LEVEL = ua.AccessLevel.CurrentRead.mask | ua.AccessLevel.HistoryRead.mask


def _utc(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _unset(stamp: datetime | None) -> bool:
    """OPC UA's "no time given" is DateTime's minimum (1601-01-01)."""
    return stamp is None or _utc(stamp) <= _utc(ua.get_win_epoch())


class JournalHistory(HistoryStorageInterface):
    """asyncua's history storage, read-only, backed by the journal's telemetry table."""

    def __init__(self, journal: Path, to_epoch: Callable[[float], float]) -> None:
        super().__init__(MAX_VALUES_PER_READ)
        self.max_values = MAX_VALUES_PER_READ
        self.journal = journal
        self.offset = to_epoch(0.0)  # to_epoch is process time plus a fixed offset
        self.columns: dict[ua.NodeId, tuple[str, str]] = {}  # node -> (unit, column)

    def add(self, node: ua.NodeId, unit: str, column: str) -> None:
        self.columns[node] = (unit, column)

    async def init(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def new_historized_node(self, node_id: ua.NodeId, period: object,
                                  count: int = 0) -> None:
        pass  # the control loop's recorder writes the rows; nothing to subscribe to

    async def save_node_value(self, node_id: ua.NodeId, datavalue: ua.DataValue) -> None:
        pass

    async def read_node_history(
        self, node_id: ua.NodeId, start: datetime | None, end: datetime | None, nb_values: int
    ) -> tuple[list[ua.DataValue], datetime | None]:
        target = self.columns.get(node_id)
        if target is None:
            return [], None
        unit, column = target
        # Part 11: no start but a number of values: the newest first; start after end:
        # backwards. Neither start nor end nor a number (asyncua's "everything"): all, oldest first.
        backwards = (nb_values > 0 if _unset(start)
                     else not _unset(end) and _utc(start) > _utc(end))  # type: ignore[arg-type]
        low, high = (end, start) if backwards else (start, end)
        # DateTime keeps microseconds: a continuation point made from a row's time must find
        # that row again, so the bounds are widened by 0.1 ms.
        low_s = -math.inf if _unset(low) else _utc(low).timestamp() - self.offset - 1e-4  # type: ignore[union-attr]
        high_s = math.inf if _unset(high) else _utc(high).timestamp() - self.offset + 1e-4  # type: ignore[union-attr]
        limit = min(nb_values or self.max_values, self.max_values)
        rows = await asyncio.to_thread(self._rows, unit, column, low_s, high_s, backwards,
                                       limit + 1)
        more = len(rows) > limit
        values = [self._value(at, value) for at, value in rows[:limit]]
        return values, (self._stamp(rows[limit][0]) if more else None)

    def _rows(self, unit: str, column: str, low: float, high: float, backwards: bool,
              limit: int) -> list[tuple[float, float | None]]:
        order = "DESC" if backwards else "ASC"
        try:
            db = sqlite3.connect(self.journal, timeout=10.0)
        except sqlite3.Error as error:
            log.warning("history read: journal unavailable", error=str(error))
            return []
        try:
            return db.execute(
                f"SELECT at, {column} FROM telemetry WHERE unit = ? AND at >= ? AND at <= ?"
                f" ORDER BY at {order} LIMIT ?",
                (unit, max(low, -1e300), min(high, 1e300), limit),
            ).fetchall()
        except sqlite3.Error as error:  # a journal from before the telemetry table
            log.warning("history read failed", unit=unit, error=str(error))
            return []
        finally:
            db.close()

    def _stamp(self, at: float) -> datetime:
        return datetime.fromtimestamp(at + self.offset, UTC)

    def _value(self, at: float, value: float | None) -> ua.DataValue:
        stamp = self._stamp(at)
        number = math.nan if value is None else float(value)  # unknown, as the live value says
        return ua.DataValue(ua.Variant(number, ua.VariantType.Double),
                            SourceTimestamp=stamp, ServerTimestamp=stamp)


async def historize(server: Server, storage: JournalHistory,
                    units: dict[str, dict[str, ua.NodeId]]) -> None:
    """Mark each unit's process values Historizing with HistoryRead access and serve their
    history from `storage`. `units`: unit id -> its variables by AddressSpaceBuilder key."""
    server.iserver.history_manager.set_storage(storage)
    for unit, variables in units.items():
        for key, column in HISTORIZED.items():
            node_id = variables.get(key)
            if node_id is None:
                continue
            storage.add(node_id, unit, column)
            node = server.get_node(node_id)
            await node.write_attribute(ua.AttributeIds.Historizing,
                                       ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
            for attribute in (ua.AttributeIds.AccessLevel, ua.AttributeIds.UserAccessLevel):
                await node.write_attribute(attribute,
                                           ua.DataValue(ua.Variant(_LEVEL, ua.VariantType.Byte)))
