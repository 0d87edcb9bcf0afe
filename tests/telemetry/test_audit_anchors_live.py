"""Audit anchoring in the running daemon (SPEC §12): `shuttled simulate` with a real Mosquitto,
audited calls over real OPC UA, then what someone with sqlite3 and an editor does to the data
directory — and `shuttlectl audit verify`, online and offline, naming each of it.

It lives with the MQTT tests because it needs their broker and daemon rig: the anchor leaving the
machine on the `events` topic is half of what makes it worth having.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import subprocess
from pathlib import Path

from asyncua import Client
from mqtt_rig import BIN, free_port

from shuttled.records.audit_anchors import ANCHORS_FILE, INTERVAL, Anchor
from shuttled.records.instrument_key import load_public_key

INSTRUMENT = "CS-SIM"


async def _audited_calls(endpoint: str, credentials: Path, calls: int) -> None:
    """`calls` AuditTrail.Verify calls in one session: each is an audit record of its own."""
    user, password = credentials.read_text().strip().split(":", 1)
    client = Client(endpoint, timeout=20)
    client.set_user(user)
    client.set_password(password)
    async with client:
        ns = await client.get_namespace_index("urn:cellshuttle:shuttled")
        trail = await client.nodes.objects.get_child(
            [f"{ns}:DeviceSet", f"{ns}:{INSTRUMENT}", f"{ns}:AuditTrail"])
        for _ in range(calls):
            answer = json.loads(await trail.call_method(f"{ns}:Verify"))
            assert answer["ok"], answer


def _sql(journal: Path, *statements: str) -> None:
    db = sqlite3.connect(journal, timeout=10)
    for statement in ("DROP TRIGGER IF EXISTS audit_no_update",
                      "DROP TRIGGER IF EXISTS audit_no_delete", *statements):
        db.execute(statement)
    db.commit()
    db.close()


def test_the_daemon_anchors_publishes_and_verify_names_every_tampering(
    broker, subscribe, daemons, tmp_path: Path
) -> None:
    historian = subscribe(broker.port)
    data = tmp_path / "data"
    port = free_port()
    daemon = daemons(broker.port, data, "--opcua-port", str(port))
    daemon.wait_log("operator server listening")
    endpoint = f"opc.tcp://127.0.0.1:{port}/shuttled"
    credentials = data / "sim-credentials"
    journal = data / "journal.sqlite3"
    environment = dict(os.environ, HOME=str(tmp_path / "home"))

    def verify(*args: str, online: bool = True) -> subprocess.CompletedProcess[str]:
        where = (["--endpoint", endpoint, "--password-file", str(credentials)] if online
                 else [])
        offline = [] if online else ["--journal", str(journal)]
        return subprocess.run(
            [str(BIN / "shuttlectl"), *where, "--pki-dir", str(tmp_path / "pki"), "audit",
             "verify", *offline, *args], capture_output=True, text=True, timeout=60,
            env=environment)

    def both_name(headline: str) -> None:
        for online in (False, True):  # offline first: the online call itself adds a record
            result = verify(online=online)
            assert result.returncode == 1, (online, result.stdout)
            assert headline in result.stderr and result.stderr.count("\n") == 1, result.stderr

    asyncio.run(_audited_calls(endpoint, credentials, INTERVAL + 20))

    # The anchor at record 100: in the file, on MQTT, signed by the instrument key
    published = historian.wait_for(lambda m: m.topic == f"shuttle/{INSTRUMENT}/events"
                                   and m.payload.get("type") == "audit_anchor")
    (line,) = (data / ANCHORS_FILE).read_text().splitlines()
    anchor = Anchor.from_json(json.loads(line))
    assert anchor.count == INTERVAL and anchor.verifies_with(load_public_key(data))
    fields = {k: published.payload[k] for k in ("count", "hash", "utc", "key", "previous",
                                                 "signature")}
    assert Anchor.from_json(fields) == anchor  # the copy that left the machine checks out
    assert len(base64.b64decode(anchor.signature)) == 64
    for online in (True, False):
        result = verify(online=online)
        assert result.returncode == 0, result.stderr
        assert f"anchored at record {INTERVAL}" in result.stdout

    # 1. The anchors file edited (to hide a cut below): named, then put back
    path = data / ANCHORS_FILE
    original = path.read_bytes()
    path.write_text(json.dumps({**json.loads(line), "count": 90}) + "\n")
    both_name("anchors invalid: audit-anchors line 1 (record 90")
    path.write_bytes(original)

    # 2. Triggers dropped, the last records deleted: the chain is valid, the anchor is not met
    _sql(journal, "DELETE FROM audit WHERE seq > 90")
    both_name("truncated: the trail has 9")

    # 3. The table dropped: named as missing, offline and by the running daemon
    _sql(journal, "DROP TABLE audit")
    both_name("missing: the journal has no audit table: it was dropped (the anchors say")
    result = verify()  # the daemon started a new table; history stays broken
    assert result.returncode == 1 and "truncated" in result.stderr
    assert daemon.terminate() == 0
    records = [json.loads(r[0]) for r in sqlite3.connect(journal).execute(
        "SELECT content FROM audit ORDER BY seq")]
    assert records[0]["method"] == "AuditTrailCheck"
    assert "dropped while the daemon ran" in records[0]["detail"]
    # a clean stop anchors the head: nothing after the last anchor can be cut unnoticed
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["count"] == len(records)
