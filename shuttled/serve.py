"""`shuttled serve`: the service. Restore, regulate, and leave everything safe on the way out.

Start-up restores every unit's run from the journal (active runs come back held, `daemon
restarted`), then contacts every device, starts the operator OPC UA server and loads the control
kernels, all three at once, and only then tells systemd it is ready. SIGTERM or SIGINT stops
the control loop, turns every heater off and stops every pump, writes the last checkpoints and
exits 0, so a restart never finds an actuator left running by a daemon that is gone.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import structlog

from drivers.interfaces import DeviceError
from shuttled.clock import RealClock
from shuttled.config import DaemonConfig
from shuttled.control.loop import ControlLoop
from shuttled.devices import Devices
from shuttled.engine.checkpoint import CheckpointError, restore_run
from shuttled.engine.persistence import RunPersistence
from shuttled.engine.unit_run import UnitRun
from shuttled.journal import Journal
from shuttled.kernel_warm_up import warm_cached_kernels
from shuttled.operations import Operations
from shuttled.operator_server import OperatorServer
from shuttled.operator_server.standard_nodes import cache_file
from shuttled.report_history import TelemetryRecorder
from shuttled.sd_notify import notify
from shuttled.watchdog import ServiceHealth

if TYPE_CHECKING:
    from shuttled.telemetry import Telemetry

log = structlog.get_logger("shuttled.serve")


def restore_runs(journal: Journal, config: DaemonConfig, now: float) -> dict[str, UnitRun]:
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
            # Never guess a run's state: keep the unit out of use until someone looks.
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


async def serve(config: DaemonConfig) -> None:
    # Process time is wall time in the service, so elapsed phase time survives a restart.
    clock = RealClock(speed=config.clock_speed, start=time.time())
    config.data_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal(config.data_dir / "journal.sqlite3")
    devices = Devices(config)
    persistence = RunPersistence(journal)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    operator: OperatorServer | None = None
    telemetry: Telemetry | None = None
    watchdog: asyncio.Task[None] | None = None
    try:
        runs = restore_runs(journal, config, clock.now())
        persistence.persist(list(runs.values()), clock.now(), force=True)
        if config.mqtt is not None:  # connects in the background: a broker never delays READY
            from shuttled.telemetry import Telemetry

            telemetry = Telemetry(
                config.mqtt, config.instrument_id, journal.path, runs, clock.now, lambda t: t
            )
            telemetry.start()
        control = ControlLoop(config, devices, runs, clock, journal, persistence)
        operations = Operations(config, runs, journal, clock, persistence)
        log.info("protocols loaded", templates=sum(len(t) for t in operations.templates.values()))
        operator = OperatorServer(
            config, operations, journal, clock, standard_nodes_cache=cache_file(config.data_dir)
        )
        # SPEC §9: READY=1 only once every device was contacted and the operator interface
        # listens; and the kernels are loaded, so the first tick is on time. None needs another:
        # the devices mostly wait on the network, the server and the kernels work, so all three
        # start together.
        await together(devices.open(), operator.start(), asyncio.to_thread(warm_cached_kernels))
        operator.attach_loop(control)
        health = ServiceHealth(config.control_period_s, config.clock_speed)
        notify("READY=1", f"STATUS=serving {len(runs)} units")
        log.info("ready", instrument=config.instrument_id, units=len(runs))
        resume_garbage_collection()
        watchdog = asyncio.create_task(health.run(lambda: _status(runs, telemetry, health)))

        history = TelemetryRecorder(journal)  # what `shuttlectl report` plots

        def after_tick() -> None:
            history.on_tick(control)
            health.on_tick(control)
            operator.request_refresh()
            if telemetry is not None:
                telemetry.on_tick(control)

        health.begin(control)
        await control.run_until(stop.is_set, on_tick=after_tick)
        notify("STOPPING=1")
        log.info("tick lateness", **health.lateness_summary())
        if telemetry is not None:
            await telemetry.stop()  # offline first: a historian sees the stop, not a Last Will
            telemetry = None
        await operator.stop()  # no operator command may race the safe-state sequence
        operator = None
        log.info("stopping: putting every unit in its safe state")
        await put_everything_safe(devices)
        persistence.persist(list(runs.values()), clock.now(), force=True)
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if telemetry is not None:
            await telemetry.stop()
        if operator is not None:
            await operator.stop()
        await devices.close()
        journal.close()


def resume_garbage_collection() -> None:
    """Undo `run_serve`'s start-up pause of the cyclic collector (0.2 s of the start-up: imports
    and the address space allocate millions of objects and trigger it over and over). What
    start-up left is collected once, and what survives (modules, classes, the configuration) is
    frozen out of later collections: they would walk it on every full pass, in tick time."""
    if gc.isenabled():
        return
    gc.collect()
    gc.freeze()
    gc.enable()


def _status(runs: dict[str, UnitRun], telemetry: Telemetry | None, health: ServiceHealth) -> str:
    """systemd's one-line STATUS=: what `systemctl status shuttled` shows an administrator."""
    counts: dict[str, int] = {}
    for run in runs.values():
        counts[run.state.value] = counts.get(run.state.value, 0) + 1
    states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    text = f"{len(runs)} units: {states}"
    if telemetry is not None:
        queued = telemetry.outbox.pending()
        text += "; mqtt " + ("connected" if telemetry.connected else "offline")
        text += f" ({queued} queued)" if queued else ""
    summary = health.lateness_summary()
    if summary.get("ticks"):
        text += f"; tick lateness p99 {summary['p99_ms']:.1f} ms"
    return text
