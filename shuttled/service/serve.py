"""`shuttled serve`: the service. Restore, regulate, and leave everything safe on the way out.

The daemon itself is built by the composition root (`shuttled/composition.py`); what is the
service's own is the wall clock, systemd (READY=1 once every device was contacted, the operator
interface listens and the kernels are loaded; WATCHDOG=1 only while the control loop ticks;
STOPPING=1), and the signals: SIGTERM or SIGINT stops the control loop and the daemon leaves
every heater off and every pump stopped before it exits 0, so a restart never finds an actuator
left running by a daemon that is gone.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from typing import TYPE_CHECKING

import structlog

from drivers.clock import RealClock
from shuttled.composition import Daemon
from shuttled.config import DaemonConfig
from shuttled.engine.unit_run import UnitRun
from shuttled.service.sd_notify import notify
from shuttled.service.watchdog import ServiceHealth

if TYPE_CHECKING:
    from shuttled.telemetry import Telemetry

log = structlog.get_logger("shuttled.serve")


async def serve(config: DaemonConfig) -> None:
    # Process time is wall time in the service, so elapsed phase time survives a restart.
    now = time.time()
    daemon = Daemon(config, RealClock(speed=config.clock_speed, start=now, epoch=now))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    watchdog: asyncio.Task[None] | None = None
    runs = daemon.runs
    try:
        templates = sum(len(t) for t in daemon.operations.templates.values())
        log.info("protocols loaded", templates=templates)
        await daemon.start()
        health = ServiceHealth(config.control_period_s, config.clock_speed)
        notify("READY=1", f"STATUS=serving {len(runs)} units")
        log.info("ready", instrument=config.instrument_id, units=len(runs))
        resume_garbage_collection()
        watchdog = asyncio.create_task(
            health.run(lambda: _status(runs, daemon.telemetry, health))
        )
        health.begin(daemon.control)
        await daemon.run_until(stop.is_set, [lambda d: health.on_tick(d.control)])
        notify("STOPPING=1")
        log.info("tick lateness", **health.lateness_summary())
    finally:
        if watchdog is not None:
            watchdog.cancel()
        await daemon.stop()


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
