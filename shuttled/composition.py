"""The composition root: the one place where the daemon's parts are built and wired together.

`shuttled serve`, `shuttled simulate` and `shuttlectl analyze` all run this daemon. They differ
only in what they hand it — a configuration (which devices, whether there is an operator
interface or a broker), a clock (wall time, scaled, or virtual) and the transports to the devices
(real drivers, or in-process ones to the digital twin) — and in how long they let it run. A part
added to the daemon (alarms, signatures, a console endpoint) is built and wired here, once, and
every way of running the daemon has it.

Order matters and is kept in one place: runs are restored and checkpointed before anything can
act on them; devices, the operator server and the control kernels start together; on the way
out no operator command may race the safe-state sequence, and every heater is off and every pump
stopped before the last checkpoints are written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from drivers.clock import Clock
from drivers.interfaces import DeviceError
from drivers.transports import Transports
from shuttled.alarms import AlarmBook
from shuttled.config import DaemonConfig
from shuttled.control.kernel_warm_up import warm_cached_kernels
from shuttled.devices import Devices
from shuttled.engine.checkpoint import CheckpointError, restore_run
from shuttled.engine.operations import Operations
from shuttled.engine.persistence import RunPersistence
from shuttled.engine.protocol_approval import ProtocolApprovals
from shuttled.engine.unit_run import UnitRun
from shuttled.loop.control_loop import ControlLoop
from shuttled.records.account_locks import AccountLocks
from shuttled.records.audit import AuditTrail
from shuttled.records.journal import Journal
from shuttled.records.protocol_library import ProtocolLibrary
from shuttled.records.signatures import SignatureBook
from shuttled.reports.history import TelemetryRecorder

if TYPE_CHECKING:
    from shuttled.operator_server import OperatorServer
    from shuttled.telemetry import Telemetry

log = structlog.get_logger("shuttled.daemon")

TickObserver = Callable[["Daemon"], None]


class Daemon:
    """Every part of one running daemon, built from a configuration, a clock and transports.

    `restore_runs`: bring each unit's run back from the journal (the service: an active run comes
    back held, `daemon restarted`). A simulation or an analysis starts a new process on every
    unit, so it keeps only the journal's run numbering. `standard_nodes_cache`: where the operator
    server keeps its cache of OPC UA's standard address space (default: the data directory's).
    """

    def __init__(
        self,
        config: DaemonConfig,
        clock: Clock,
        transports: Transports | None = None,
        *,
        restore_runs: bool = True,
        standard_nodes_cache: Path | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(config.data_dir / "journal.sqlite3")
        self.devices = Devices(config, transports)
        self.persistence = RunPersistence(self.journal)
        self.runs = (
            runs_from_journal(self.journal, config, clock.now())
            if restore_runs
            else {unit.unit_id: UnitRun(unit.unit_id) for unit in config.units}
        )
        self.control = ControlLoop(
            config, self.devices, self.runs, clock, self.journal, self.persistence
        )
        # The audit trail exists where operators can act (the operator interface); start()
        # attaches its signed anchors (attach_audit_anchors). So do the signatures, the
        # protocol library with its lifecycle and the account lockout (SPEC §12).
        self.audit: AuditTrail | None = None
        self.gmp_records: GmpRecords | None = None
        if config.operator is not None:
            self.audit = AuditTrail(self.journal.path)
            self.gmp_records = GmpRecords(self.journal.path, self.audit, config.gmp)
        self.operations = Operations(
            config, self.runs, self.journal, clock, self.persistence,
            self.gmp_records.approvals if self.gmp_records is not None else None,
        )
        self.operations.installed_cartridge = self.devices.installed_cartridge  # SPEC §12
        self.history = TelemetryRecorder(self.journal)  # what run reports plot
        self.operator: OperatorServer | None = None
        if config.operator is not None:
            from shuttled.operator_server import OperatorServer
            from shuttled.operator_server.standard_nodes import cache_file

            assert self.gmp_records is not None
            self.operator = OperatorServer(
                config,
                self.operations,
                self.journal,
                clock,
                audit=self.audit,
                standard_nodes_cache=standard_nodes_cache or cache_file(config.data_dir),
                approvals=self.gmp_records.approvals,
                locks=self.gmp_records.locks,
            )
        self.telemetry: Telemetry | None = None
        if config.mqtt is not None:  # aiomqtt is imported only when a broker is configured
            from shuttled.telemetry import Telemetry

            self.telemetry = Telemetry(
                config.mqtt,
                config.instrument_id,
                self.journal.path,
                self.runs,
                clock.now,
                clock.to_epoch,
            )
        # The alarm model (SPEC §13): fed by the control loop after every tick, shown over OPC UA
        # (Alarms & Conditions) and MQTT; its transitions are audited where operators can act.
        self.alarms = AlarmBook(self.journal.path, clock, config.alarms.max_shelve_s, self.audit)
        if self.operator is not None:
            self.operator.alarm_book = self.alarms
        if self.telemetry is not None:
            self.telemetry.attach_alarms(self.alarms)
        self._started = False

    async def start(self) -> None:
        """Checkpoint the runs as they start, then contact every device, open the operator
        interface and load the control kernels, all at once: the devices mostly wait on the
        network, the server and the kernels work, so none needs to wait for another.

        Telemetry connects in the background: a broker never delays the daemon. Raises
        OperatorServerError when the operator interface cannot listen, or its audit trail
        cannot be anchored (the instrument key is unusable).
        """
        if self.audit is not None:
            attach_audit_anchors(self.audit, self.config.data_dir, self.telemetry)
        self.persistence.persist(list(self.runs.values()), self.clock.now(), force=True)
        if self.telemetry is not None:
            self.telemetry.start()
        steps: list[Coroutine[Any, Any, object]] = [
            self.devices.open(),
            asyncio.to_thread(warm_cached_kernels),
        ]
        if self.operator is not None:
            steps.append(self.operator.start())
        await together(*steps)
        if self.operator is not None:
            self.operator.attach_loop(self.control)
        self._started = True

    async def run_until(
        self, finished: Callable[[], bool], observers: list[TickObserver] | None = None
    ) -> None:
        """Regulate, tick by tick of the clock, until `finished()`; after every tick the mirrors
        (history, operator interface, telemetry) and then the caller's observers see it."""
        watchers = list(observers or [])

        def after_tick() -> None:
            self.alarms.sync(self.clock.now(), self.control.alarms, {
                unit: (run.state.value, run.run_id) for unit, run in self.runs.items()
            })
            self.history.on_tick(self.control)
            if self.operator is not None:
                self.operator.request_refresh()
            if self.telemetry is not None:
                self.telemetry.on_tick(self.control)
            for observe in watchers:
                observe(self)

        await self.control.run_until(finished, on_tick=after_tick)

    async def stop(self) -> None:
        """Leave everything safe: mirrors off first (a historian sees the stop, not a Last Will;
        no operator command races the safe state), then heaters off and pumps stopped, then the
        last checkpoints. Then every connection and the journal are closed, also after a failure
        half-way through start(): call it from a `finally`."""
        try:
            if self.audit is not None:
                self.audit.anchor_now()  # while MQTT can still carry it off the machine
            if self.telemetry is not None:
                telemetry, self.telemetry = self.telemetry, None
                if self.audit is not None and self.audit.anchors is not None:
                    self.audit.anchors.unsubscribe(telemetry.publish_anchor)
                await telemetry.stop()
            if self.operator is not None:
                operator, self.operator = self.operator, None
                await operator.stop()
            if self.audit is not None:
                self.audit.anchor_now()  # calls that came meanwhile: a clean stop leaves none
            if self._started:
                log.info("stopping: putting every unit in its safe state")
                await put_everything_safe(self.devices)
                self.persistence.persist(list(self.runs.values()), self.clock.now(), force=True)
        finally:
            await self.devices.close()
            if self.gmp_records is not None:
                self.gmp_records.close()
            if self.audit is not None:
                self.audit.close()
            self.alarms.close()
            self.journal.close()


class GmpRecords:
    """The records behind signatures (SPEC §12), each on its own connection to the journal."""

    def __init__(self, journal_path: Path, audit: AuditTrail, gmp: bool) -> None:
        self.library = ProtocolLibrary(journal_path)
        self.signatures = SignatureBook(journal_path, audit)
        self.locks = AccountLocks(journal_path)
        self.approvals = ProtocolApprovals(self.library, self.signatures, gmp)

    def close(self) -> None:
        for part in (self.library, self.signatures, self.locks):
            part.close()


def runs_from_journal(journal: Journal, config: DaemonConfig, now: float) -> dict[str, UnitRun]:
    """Each configured unit's run as the journal last checkpointed it; a run that cannot be
    restored keeps its unit out of use (held, with the reason) rather than guessing its state."""
    checkpoints = journal.load_checkpoints()
    runs: dict[str, UnitRun] = {}
    for unit in config.units:
        data = checkpoints.pop(unit.unit_id, None)
        if data is None:
            runs[unit.unit_id] = UnitRun(unit.unit_id)
            continue
        try:
            runs[unit.unit_id] = restore_run(data, now)
        except (CheckpointError, KeyError, TypeError, ValueError) as error:
            log.error("cannot restore run", unit=unit.unit_id, error=str(error))
            run = UnitRun(unit.unit_id)
            run.hold_reason = f"journal could not be restored: {error}"
            runs[unit.unit_id] = run
        else:
            run = runs[unit.unit_id]
            log.info("run restored", unit=unit.unit_id, run_id=run.run_id, state=run.state.value)
    for unit in checkpoints:
        log.warning("journal has a run for a unit that is no longer configured", unit=unit)
    return runs


def attach_audit_anchors(audit: AuditTrail, data_dir: Path, telemetry: Telemetry | None) -> None:
    """Sign the audit trail's head with the instrument key every INTERVAL records into
    `<data-dir>/audit-anchors`, published over MQTT when there is a broker (SPEC §12). An
    unusable instrument key (a symlink, another kind of key) stops the start with its reason:
    the operator interface does not open with an audit trail that cannot be anchored."""
    from shuttled.operator_server import OperatorServerError
    from shuttled.records.audit import utc_now
    from shuttled.records.audit_anchors import ANCHORS_FILE, AnchorLog
    from shuttled.records.instrument_key import InstrumentKeyError, load_or_create

    try:
        key = load_or_create(data_dir)
    except InstrumentKeyError as error:
        raise OperatorServerError(str(error)) from None
    anchors = AnchorLog(data_dir / ANCHORS_FILE, key, utc_now)
    if telemetry is not None:
        anchors.subscribe(telemetry.publish_anchor)
    audit.attach_anchors(anchors)


async def put_everything_safe(devices: Devices) -> None:
    """Heaters off and pumps stopped, device by device: one failure must not stop the rest."""
    for bioreactor in devices.bioreactors.values():
        try:
            await bioreactor.write_heaters(dict.fromkeys(bioreactor.unit_ids, 0.0))
        except DeviceError as error:
            log.error("could not turn heaters off", endpoint=bioreactor.endpoint, error=str(error))
    for unit, unit_devices in devices.units.items():
        for name, pump in unit_devices.pumps.items():
            try:
                await pump.stop()
            except DeviceError as error:
                log.error("could not stop pump", unit=unit, pump=name, error=str(error))


async def together(*steps: Coroutine[Any, Any, object]) -> None:
    """Run the start-up steps concurrently; the first failure cancels the rest and is raised as
    itself (not in an ExceptionGroup: the CLI reports an OperatorServerError by its message)."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
