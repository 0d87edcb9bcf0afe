"""The operator rig (operator_rig.py) with the alarm model: a real AlarmBook on the daemon's
journal and audit trail, fed by the test instead of a control loop, behind real OPC UA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import operator_rig
from asyncua import Client, ua
from operator_rig import ACCOUNTS, INSTRUMENT, free_port, unit_config

from drivers.clock import VirtualClock
from shuttled.alarms import AlarmBook
from shuttled.config import AlarmsConfig, DaemonConfig, OperatorServerConfig
from shuttled.engine.operations import Operations
from shuttled.engine.persistence import RunPersistence
from shuttled.engine.unit_run import UnitRun
from shuttled.operator_server import OperatorServer
from shuttled.records.audit import AuditTrail
from shuttled.records.journal import Journal
from shuttled.records.users import User, hash_password, save_users

UNITS = ("U01", "U02")
RUNNING = {unit: ("RUNNING", f"{INSTRUMENT}-{unit}-0001") for unit in UNITS}


@dataclass
class AlarmDaemon:
    server: OperatorServer
    book: AlarmBook
    audit: AuditTrail
    journal: Journal
    endpoint: str
    data_dir: Path
    clock: VirtualClock

    async def sync(self, active: dict[str, dict[str, str]], units=RUNNING) -> None:
        """One tick's alarms, as the control loop would hand them over; then wait until the
        OPC UA side has sent the events (no sleeping for it)."""
        self.book.sync(self.clock.now(), active, units)
        await self.drain()

    async def drain(self) -> None:
        assert self.server.alarm_conditions is not None
        await self.server.alarm_conditions.drain()

    async def stop(self) -> None:
        await self.server.stop()
        self.book.close()
        self.audit.close()
        self.journal.close()


async def make_alarm_daemon(
    tmp_path: Path, max_shelve_s: float = 8 * 3600.0, settle_syncs: int = 0
) -> AlarmDaemon:
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    users_file = data_dir / "users.toml"
    if not users_file.exists():
        save_users(users_file, {
            name: User(name, role, hash_password(password))
            for name, (role, password) in ACCOUNTS.items()
        })
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/shuttled"
    config = DaemonConfig(
        INSTRUMENT, data_dir, [unit_config(u) for u in UNITS],
        operator=OperatorServerConfig(endpoint=endpoint, allow_insecure=True,
                                      users_file=users_file, trust_all_loopback_clients=True),
        alarms=AlarmsConfig(max_shelve_s=max_shelve_s),
    )
    journal = Journal(data_dir / "journal.sqlite3")
    clock = VirtualClock()
    audit = AuditTrail(journal.path)
    book = AlarmBook(journal.path, clock, max_shelve_s, audit, settle_syncs=settle_syncs)
    runs = {u.unit_id: UnitRun(u.unit_id) for u in config.units}
    operations = Operations(config, runs, journal, clock, RunPersistence(journal))
    server = OperatorServer(config, operations, journal, clock, audit=audit,
                            standard_nodes_cache=operator_rig.STANDARD_NODES_CACHE)
    server.alarm_book = book
    await server.start()
    return AlarmDaemon(server, book, audit, journal, endpoint, data_dir, clock)


async def condition_node(client: Client, unit: str, name: str):
    ns = await client.get_namespace_index(operator_rig.NAMESPACE_URI)
    return client.get_node(ua.NodeId(f"{INSTRUMENT}.{unit}.Conditions.{name}", ns))
