"""Read the history of several variables in one OPC UA HistoryRead, as any client would.

The console's unit page draws the run so far from the daemon's own history (SPEC §14), the same
way a plant historian or UaExpert's trend view reads it: standard HistoryRead (ReadRawModified),
all of a unit's trend variables in one request, continuation points followed until every node is
read. The values come back as plain (epoch seconds, number) pairs; NaN (unknown) becomes None,
because JSON, which the browser gets, has no NaN.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from asyncua import ua

from shuttled.client.opcua import Connection

MAX_ROUNDS = 100  # continuation rounds: 100 x 10 000 values is far beyond any run


def _point(value: ua.DataValue) -> tuple[float, float | None] | None:
    stamp = value.SourceTimestamp or value.ServerTimestamp
    if stamp is None:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    number = value.Value.Value if value.Value is not None else None
    if not isinstance(number, (int, float)) or not math.isfinite(number):
        number = None
    return stamp.timestamp(), number


async def read_history(conn: Connection, nodes: dict[str, ua.NodeId], start: datetime,
                       end: datetime) -> dict[str, list[tuple[float, float | None]]]:
    """Each named node's values between `start` and `end`, oldest first. A node whose history
    the server refuses (not historized, access denied) gets an empty list, not an error: the
    live values still draw."""
    details = ua.ReadRawModifiedDetails(IsReadModified=False, StartTime=start, EndTime=end,
                                        NumValuesPerNode=0, ReturnBounds=False)
    found: dict[str, list[tuple[float, float | None]]] = {name: [] for name in nodes}
    pending: dict[str, bytes | None] = dict.fromkeys(nodes)
    for _ in range(MAX_ROUNDS):
        if not pending:
            break
        names = list(pending)
        params = ua.HistoryReadParameters(
            HistoryReadDetails=details, TimestampsToReturn=ua.TimestampsToReturn.Source,
            ReleaseContinuationPoints=False,
            NodesToRead=[ua.HistoryReadValueId(NodeId=nodes[n], ContinuationPoint=pending[n])
                         for n in names],
        )
        results = await conn.client.uaclient.history_read(params)
        pending = {}
        for name, result in zip(names, results, strict=True):
            if not result.StatusCode.is_good() or result.HistoryData is None:
                continue
            for value in result.HistoryData.DataValues or []:
                point = _point(value)
                if point is not None:
                    found[name].append(point)
            if result.ContinuationPoint:
                pending[name] = result.ContinuationPoint
    return found
