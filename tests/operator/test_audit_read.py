"""Reading the audit trail over OPC UA: Read pages through all of it in order, ReadLatest gives a
unit's newest records (a console's unit page) without paging through the rest, both refuse bad
arguments with a clear status, and every read is itself recorded, outside the unit's records."""

from __future__ import annotations

import json
from pathlib import Path

from asyncua import ua
from operator_rig import INSTRUMENT, connect, make_daemon

RECORDS = 1300  # more than two of the daemon's 500-record pages


async def _trail(client):
    ns = await client.get_namespace_index("urn:cellshuttle:shuttled")
    return await client.nodes.objects.get_child(
        [f"{ns}:DeviceSet", f"{ns}:{INSTRUMENT}", f"{ns}:AuditTrail"]), ns


async def test_read_pages_the_trail_and_read_latest_gives_a_units_newest(tmp_path: Path):
    daemon = await make_daemon(tmp_path)
    audit = daemon.server.audit
    for i in range(RECORDS):
        audit.append(user="otto", role="operator", unit=("U01", "U02", "")[i % 3],
                     method="Hold", arguments={"i": i}, reason=f"r{i}", result="Good", detail="")
    client = await connect(daemon.endpoint, "vera")
    try:
        trail, ns = await _trail(client)
        seen, first = [], 1
        while True:
            page, following = await trail.call_method(
                f"{ns}:Read", ua.Variant(first, ua.VariantType.UInt32))
            seen += [r["seq"] for r in json.loads(page)]
            if not following:
                break
            first = following
        assert seen == list(range(1, len(seen) + 1)) and len(seen) >= RECORDS

        latest = json.loads(await trail.call_method(
            f"{ns}:ReadLatest", "U01", ua.Variant(5, ua.VariantType.UInt32)))
        expected = [r for r in audit.records(unit="U01")][::-1][:5]
        assert [r["seq"] for r in latest] == [r.seq for r in expected]
        assert all(r["unit"] == "U01" for r in latest)
        last = audit.records()[-1]  # the read itself is recorded, not as the unit's action
        assert (last.method, last.unit, last.arguments) == (
            "AuditRead", "", {"unit": "U01", "latest": 5})

        assert json.loads(await trail.call_method(
            f"{ns}:ReadLatest", "U99", ua.Variant(5, ua.VariantType.UInt32))) == []
        for bad in (("U01", ua.Variant(0, ua.VariantType.UInt32)),
                    ("U01", ua.Variant(501, ua.VariantType.UInt32)), ("U01",),
                    (ua.Variant(5, ua.VariantType.UInt32), "U01")):
            try:
                await trail.call_method(f"{ns}:ReadLatest", *bad)
            except ua.UaStatusCodeError as error:
                assert error.code == ua.StatusCodes.BadInvalidArgument
            else:
                raise AssertionError(f"ReadLatest{bad} was not refused")
    finally:
        await client.disconnect()
        await daemon.server.stop()
