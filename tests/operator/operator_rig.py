"""An operator server in-process over a run engine without devices, and clients that sign in.

The engine, journal, audit trail and OPC UA server are the real ones; only the instrument is
absent (no control loop), which is all the method, role and security tests need. Every client
talks real OPC UA over loopback.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from drivers.clock import VirtualClock
from shuttled.composition import GmpRecords
from shuttled.config import (
    BioreactorConfig,
    DaemonConfig,
    OperatorServerConfig,
    ProbeConfig,
    PumpConfig,
    UnitConfig,
)
from shuttled.engine.operations import Operations
from shuttled.engine.persistence import RunPersistence
from shuttled.engine.unit_run import UnitRun
from shuttled.operator_server import OperatorServer
from shuttled.operator_server.address_space import NAMESPACE_URI
from shuttled.operator_server.pki import ensure_certificate
from shuttled.records.audit import AuditTrail
from shuttled.records.journal import Journal
from shuttled.records.users import User, hash_password, save_users

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "protocols" / "library" / "demo.yaml"
INSTRUMENT = "CS-TEST"
# The standard address space cache every daemon of the session starts from, as `serve` does
# (set by conftest.py); None: built in memory.
STANDARD_NODES_CACHE: Path | None = None

# name: (role, password). "admin" is a viewer: the name must give nothing special.
ACCOUNTS = {
    "vera": ("viewer", "vera-pw-1"),
    "otto": ("operator", "otto-pw-2"),
    "sue": ("supervisor", "sue-pw-3"),
    "admin": ("viewer", "admin-pw-4"),
    "quinn": ("qa", "quinn-pw-5"),
    "quincy": ("qa", "quincy-pw-6"),
}
FULL_NAMES = {"otto": "Otto Operator", "sue": "Sue Supervisor", "quinn": "Quinn Adams",
              "quincy": "Quincy Brown"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unit_config(unit_id: str) -> UnitConfig:
    pumps = {
        name: PumpConfig(name, "/dev/null", i + 1, 200.0, name != "harvest")
        for i, name in enumerate(("media", "vector", "harvest"))
    }
    return UnitConfig(
        unit_id,
        BioreactorConfig("opc.tcp://127.0.0.1:1/none", "urn:none", unit_id),
        pumps,
        ProbeConfig("/dev/null", 1),
    )


@dataclass
class Daemon:
    server: OperatorServer
    endpoint: str
    data_dir: Path
    runs: dict[str, UnitRun]
    clock: VirtualClock
    # What each unit's controller would report installed (SPEC §12); change it to swap one.
    cartridges: dict[str, str | None] = field(default_factory=dict)
    journaled: dict[str, int] = field(default_factory=dict)  # events journaled per run

    async def tick(self) -> None:
        """Settle transient states (HOLDING -> HELD, ...) as a control tick would."""
        from shuttled.engine.actions import UnitSnapshot

        for run in self.runs.values():
            run.step(UnitSnapshot(self.clock.now(), 37.0, 100.0, 5e5, 0.02, {}))
            self._journal_events(run)
        await self.server.refresh()

    def _journal_events(self, run: UnitRun) -> None:
        """As the control loop does after each tick: the run's new events into the journal."""
        if run.run_id is None:
            return
        start = self.journaled.get(run.run_id, 0)
        if len(run.events) > start:
            self.server.journal.append_events(run.run_id, run.unit_id, run.events[start:])
        self.journaled[run.run_id] = len(run.events)


async def make_daemon(
    tmp_path: Path, allow_insecure: bool = True, allow_anonymous_read: bool = False,
    trust_all_loopback_clients: bool = True, gmp: bool = False, **limits: float,
) -> Daemon:
    """`limits`: OperatorServerConfig's limit fields (max_sessions=2, ...) for tests of them."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    users_file = data_dir / "users.toml"
    save_users(users_file, {
        name: User(name, role, hash_password(password), FULL_NAMES.get(name, ""))
        for name, (role, password) in ACCOUNTS.items()
    })
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/shuttled"
    config = DaemonConfig(
        INSTRUMENT, data_dir, [unit_config("U01"), unit_config("U02")],
        operator=OperatorServerConfig(
            endpoint=endpoint, allow_insecure=allow_insecure,
            allow_anonymous_read=allow_anonymous_read, users_file=users_file,
            trust_all_loopback_clients=trust_all_loopback_clients, **limits,
        ),
        gmp=gmp,
    )
    journal = Journal(data_dir / "journal.sqlite3")
    clock = VirtualClock()
    runs = {u.unit_id: UnitRun(u.unit_id) for u in config.units}
    audit = AuditTrail(journal.path)
    records = GmpRecords(journal.path, audit, gmp)
    operations = Operations(config, runs, journal, clock, RunPersistence(journal),
                            records.approvals)
    server = OperatorServer(
        config, operations, journal, clock, audit=audit,
        standard_nodes_cache=STANDARD_NODES_CACHE, approvals=records.approvals,
        locks=records.locks,
    )
    await server.start()
    cartridges: dict[str, str | None] = {u: f"CRT-{u}" for u in runs}
    operations.installed_cartridge = cartridges.get  # no devices: the rig says what is in
    return Daemon(server, endpoint, data_dir, runs, clock, cartridges=cartridges)


async def connect(
    endpoint: str, user: str | None, password: str | None = None, secure: bool = False,
    pki: Path | None = None,
) -> Client:
    client = Client(endpoint, timeout=10)
    if user is not None:
        client.set_user(user)
        client.set_password(password if password is not None else ACCOUNTS[user][1])
    if secure:
        assert pki is not None
        uri = "urn:cellshuttle:test-client"
        client.application_uri = uri
        own = ensure_certificate(pki, uri, "test client", server=False)
        await client.set_security(
            SecurityPolicyBasic256Sha256, str(own.certificate), str(own.private_key),
            mode=ua.MessageSecurityMode.SignAndEncrypt,
        )
    await client.connect()
    return client


async def unit_node(client: Client, unit: str = "U01"):
    ns = await client.get_namespace_index(NAMESPACE_URI)
    return await client.nodes.objects.get_child(
        [f"{ns}:DeviceSet", f"{ns}:{INSTRUMENT}", f"{ns}:FunctionalUnitSet", f"{ns}:{unit}"]
    ), ns
