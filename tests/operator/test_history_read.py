"""OPC UA HistoryRead of a unit's process values, answered from the journal's telemetry.

The rows are written into the journal as the control loop's recorder writes them (its choice of
rows is tested in tests/report/test_history.py); here a real asyncua client reads them back over
loopback TCP: every value, at the daemon clock's UTC, unknown values as NaN, time ranges,
continuation points, newest-first reads, and the console's one-request reader.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asyncua import ua
from operator_rig import ACCOUNTS, connect, make_daemon, unit_node

from shuttled.client.history import read_history
from shuttled.client.opcua import open_connection
from shuttled.operator_server.history import JournalHistory

ROWS = 25


def _rows(unit: str, count: int, offset: float) -> list[tuple]:
    """Telemetry rows in TELEMETRY_COLUMNS order, one a minute; every 5th temperature unknown."""
    return [
        ("run-1", unit, 60.0 * i, "RUNNING", "expansion",
         None if i % 5 == 4 else 36.0 + offset + i / 100, 37.0, 40.0 + i, 1e5 * (i + 1), 0.02,
         100.0 + i, "[]", "{}")
        for i in range(count)
    ]


def _same(value: float, expected: float | None) -> bool:
    return math.isnan(value) if expected is None else value == expected


async def test_a_units_history_is_the_journals_telemetry_at_the_daemons_time(tmp_path: Path):
    daemon = await make_daemon(tmp_path)
    daemon.server.journal.append_telemetry(_rows("U01", ROWS, 0.0) + _rows("U02", 3, 5.0))
    storage = daemon.server.server.iserver.history_manager.storage
    assert isinstance(storage, JournalHistory)
    client = await connect(daemon.endpoint, "vera")  # a viewer reads history like values
    try:
        unit, ns = await unit_node(client)
        temperature = await unit.get_child([f"{ns}:FunctionSet", f"{ns}:Temperature",
                                            f"{ns}:CurrentValue"])
        assert (await temperature.read_attribute(ua.AttributeIds.Historizing)).Value.Value
        level = (await temperature.read_attribute(ua.AttributeIds.UserAccessLevel)).Value.Value
        assert level & ua.AccessLevel.HistoryRead.mask
        assert not level & ua.AccessLevel.CurrentWrite.mask

        values = await temperature.read_raw_history()  # everything
        expected = _rows("U01", ROWS, 0.0)
        assert len(values) == ROWS
        for value, row in zip(values, expected, strict=True):
            assert value.SourceTimestamp == datetime.fromtimestamp(
                daemon.clock.to_epoch(row[2]), UTC)
            assert _same(value.Value.Value, row[5])

        start = datetime.fromtimestamp(daemon.clock.to_epoch(120.0), UTC)
        end = datetime.fromtimestamp(daemon.clock.to_epoch(300.0), UTC)
        window = await temperature.read_raw_history(start, end)
        assert [v.SourceTimestamp for v in window] == [
            datetime.fromtimestamp(daemon.clock.to_epoch(60.0 * i), UTC) for i in range(2, 6)
        ]  # both ends included

        storage.max_values = 7  # continuation points, followed by asyncua's client
        again = await temperature.read_raw_history()
        assert [v.SourceTimestamp for v in again] == [v.SourceTimestamp for v in values]

        newest = await temperature.read_raw_history(None, None, numvalues=3)
        assert [v.SourceTimestamp for v in newest] == [v.SourceTimestamp for v in values][::-1][:3]

        state = await unit.get_child([f"{ns}:State"])  # not historized: nothing, not an error
        assert await state.read_raw_history() == []
    finally:
        await client.disconnect()
        await daemon.server.stop()


async def test_the_consoles_reader_gets_every_trend_field_in_one_request(tmp_path: Path):
    daemon = await make_daemon(tmp_path)
    daemon.server.journal.append_telemetry(_rows("U01", ROWS, 0.0))
    daemon.server.server.iserver.history_manager.storage.max_values = 10
    conn = await open_connection(daemon.endpoint, "otto", ACCOUNTS["otto"][1], tmp_path / "pki")
    try:
        paths = {"temperature": ("Temperature", "CurrentValue"),
                 "heater": ("Temperature", "ControllerOutput"),
                 "volume": ("Volume", "CurrentValue")}
        ns = conn.ns
        nodes = {}
        for key, (group, name) in paths.items():
            node = await conn.units["U01"].get_child([f"{ns}:FunctionSet", f"{ns}:{group}",
                                                      f"{ns}:{name}"])
            nodes[key] = node.nodeid
        start = datetime.fromtimestamp(daemon.clock.to_epoch(0.0), UTC)
        end = datetime.fromtimestamp(daemon.clock.to_epoch(1e6), UTC)
        found = await read_history(conn, nodes, start, end)
        rows = _rows("U01", ROWS, 0.0)
        assert [value for _, value in found["temperature"]] == [r[5] for r in rows]  # NaN: None
        assert [value for _, value in found["heater"]] == [r[7] for r in rows]
        assert [at for at, _ in found["volume"]] == pytest.approx(
            [daemon.clock.to_epoch(r[2]) for r in rows], abs=1e-6)  # DateTime: microseconds
    finally:
        await conn.close()
        await daemon.server.stop()
