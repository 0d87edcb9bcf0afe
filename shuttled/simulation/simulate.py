"""`shuttled simulate`: the daemon's real stack against an in-process virtual instrument.

Only `shuttled/simulation/` imports `simulators/`. This module wires the virtual instrument's
endpoints into an ordinary daemon configuration and hands it to the composition root with a
virtual or scaled clock, so everything above the last hop — drivers, control loop, engine,
journal, operator interface, telemetry — is exactly what runs on hardware.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import structlog
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from drivers.clock import make_clock
from protocols.loader import load_protocol_file
from protocols.model import Protocol
from protocols.state_machine import RunState
from shuttled.composition import Daemon
from shuttled.config import MqttConfig
from shuttled.engine.operations import OperationRefused, Operations
from shuttled.engine.unit_run import UnitRun
from shuttled.operator_server import OperatorServerError
from shuttled.operator_server.standard_nodes import user_cache_file
from shuttled.records.audit import AuditTrail
from shuttled.records.users import create_simulation_account
from shuttled.reports.summary import RunSummary, summarise
from shuttled.simulation.auto_confirm import AutoConfirm
from shuttled.simulation.instrument_config import config_for_instrument, trust_each_other
from simulators.cartridges import parse_assignments
from simulators.faults import Fault, load_fault_file
from simulators.instrument import VirtualInstrument, unit_id_of
from simulators.opcua_bioreactor import free_loopback_port

log = structlog.get_logger("shuttled.simulate")


CARTRIDGE_READ_ATTEMPTS = 5


class SimulationRefused(Exception):
    """The simulation cannot start as asked (the message says why, for the operator)."""


@dataclass
class SimulateOptions:
    units: int = 2
    speed: float | None = None  # None: as fast as possible
    protocols: list[Path] = field(default_factory=list)
    unit: str | None = None
    seed: int = 0
    data_dir: Path | None = None
    parameters: dict[str, float] = field(default_factory=dict)
    max_hours: float = 24.0 * 60
    faults: Path | None = None  # SPEC §1 fault file, applied by the instrument in simulated time
    cartridges: list[str] = field(default_factory=list)  # --cartridge UNIT=ID (SPEC §12)
    opcua_port: int | None = None  # the operator server's; None: 4840 when serving, else any free
    users_file: Path | None = None  # None: a `sim` supervisor with a random password (SPEC §1)
    mqtt: MqttConfig | None = None  # --mqtt HOST[:PORT]: telemetry as the service sends it
    report_dir: Path | None = None  # --report DIR: an HTML report per run (reports/html.py)
    gmp: bool = False  # --gmp: only approved protocols start (so none from --protocol)
    # Operator steps (SPEC §12): with --protocol the simulation answers them itself, signed by
    # its own accounts and marked `auto`, with these values (--confirm NAME=VALUE) or made-up
    # ones; False (--no-auto-confirm) leaves them to people, as served without --protocol.
    auto_confirm: bool = True
    confirm_values: dict[str, str] = field(default_factory=dict)
    # Called with the process time after every control tick: how soak tests and benchmarks
    # watch a run (memory, progress) without touching what it does.
    tick_observers: list[Callable[[float], None]] = field(default_factory=list)
    # Awaited once the operator interface serves, with its endpoint and the sim-credentials
    # file (None with --users): how `--console` starts the web console beside the simulation
    # without the simulation knowing the console (the command line wires it).
    on_serving: list[Callable[[str, Path | None], Awaitable[None]]] = field(default_factory=list)
    # Awaited before the daemon stops: the console signs its people out first, so a normal end
    # of the simulation is not reported as a lost connection to the instrument.
    on_stopping: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def _assign_protocols(options: SimulateOptions, unit_ids: list[str]) -> dict[str, Protocol]:
    """One protocol for every unit (or `--unit`); several protocols are dealt round-robin."""
    protocols = [load_protocol_file(path) for path in options.protocols]
    if options.unit is not None:
        if options.unit not in unit_ids:
            raise SimulationRefused(
                f"unit {options.unit} does not exist (units: {', '.join(unit_ids)})"
            )
        targets = [options.unit]
    else:
        targets = unit_ids
    return (
        {unit: protocols[i % len(protocols)] for i, unit in enumerate(targets)} if protocols else {}
    )


def _load_faults(options: SimulateOptions) -> list[Fault]:
    """The fault file's faults; FaultFileInvalid (located errors) before anything starts."""
    if options.faults is None:
        return []
    return load_fault_file(options.faults, [unit_id_of(i) for i in range(options.units)])


def _cartridges(options: SimulateOptions) -> dict[str, str]:
    """`--cartridge UNIT=ID` as {unit: id}; SimulationRefused names a bad assignment."""
    try:
        return parse_assignments(options.cartridges,
                                 [unit_id_of(i) for i in range(options.units)])
    except ValueError as error:
        raise SimulationRefused(str(error)) from None


def simulate_batch(seed: int, unit: str, instrument: VirtualInstrument) -> tuple[str, str]:
    """The batch and cartridge an unattended simulated run is bound to: a batch id made up from
    the seed (`SIM-1-U01`, the same for the same seed) and the cartridge installed in the unit,
    so a simulated run goes through the chain-of-identity checks of a real one."""
    return f"SIM-{seed}-{unit}", instrument.arrays.cartridges[instrument.unit_ids.index(unit)]


def _run_has_ended(run: UnitRun) -> bool:
    # In this version every hold is released only by an operator, so HELD has ended the run.
    return run.state in (RunState.COMPLETE, RunState.STOPPED, RunState.ABORTED, RunState.HELD)


def _start_protocol(
    operations: Operations,
    unit: str,
    protocol: Protocol,
    parameters: dict[str, float],
    audit: AuditTrail | None = None,
    batch: tuple[str, str] | None = None,
) -> None:
    """Load and start as an operator would, through the same checks as over OPC UA, and audit
    both as the method calls they stand for, so a simulated run's report shows who started it.
    `batch`: (batch id, cartridge id) the run is bound to (made up by `simulate_batch`)."""
    reason = "started by shuttled simulate"
    batch_id, cartridge_id = batch if batch is not None else (None, None)
    bound = {"batch": batch_id, "cartridge": cartridge_id} if batch is not None else {}
    loaded = operations.load_protocol(unit, protocol.text, user="sim")
    if audit is not None:
        audit.append(user="sim", role="supervisor", unit=unit, method="LoadProtocol",
                     arguments={"protocol": loaded.template_id}, reason="",
                     result="Good" if loaded.template_id else "BadInvalidArgument",
                     detail=loaded.template_id or "; ".join(loaded.errors))
    if not loaded.template_id:
        raise SimulationRefused(
            f"{protocol.identity} cannot run on {unit}: " + "; ".join(loaded.errors)
        )
    try:
        run_id = operations.start(unit, loaded.template_id, parameters, reason=reason, user="sim",
                                  batch_id=batch_id, cartridge_id=cartridge_id)
    except OperationRefused as refused:
        if audit is not None:
            audit.append(user="sim", role="supervisor", unit=unit, method="Start",
                         arguments={"template_id": loaded.template_id, "parameters": parameters,
                                    **bound},
                         reason=reason, detail=refused.message,
                         result="BadInvalidState" if refused.kind == refused.STATE
                         else "BadInvalidArgument")
        raise SimulationRefused(f"{unit}: {refused.message}") from None
    if audit is not None:
        audit.append(user="sim", role="supervisor", unit=unit, method="Start",
                     arguments={"template_id": loaded.template_id, "parameters": parameters,
                                "protocol": protocol.identity, **bound},
                     reason=reason, result="Good", detail=run_id)


async def simulate(options: SimulateOptions, console: Console) -> list[RunSummary]:
    """Run the protocols to their end and return one summary per run."""
    wall_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="shuttled-sim-") as scratch:
        data_dir = options.data_dir or Path(scratch)
        clock = make_clock(options.speed)
        instrument = VirtualInstrument(
            options.units, now=clock.now, seed=options.seed, faults=_load_faults(options),
            pki_dir=data_dir / "simulated-controller-pki",  # reused with the same --data-dir
            cartridges=_cartridges(options),
        )
        assignments = _assign_protocols(options, instrument.unit_ids)
        await instrument.start()
        clock.add_advance_listener(instrument.advance_to)
        daemon: Daemon | None = None
        try:
            users_file = options.users_file
            credentials = None
            if users_file is None:
                users_file, credentials = create_simulation_account(data_dir)
            port = _operator_port(options, console)
            endpoints = instrument.endpoints()
            config = config_for_instrument(
                endpoints, data_dir, port, users_file=users_file
            ).to_daemon_config()
            trust_each_other(endpoints, config)  # the device link is encrypted, as on a plant
            daemon = Daemon(
                replace(config, mqtt=options.mqtt, gmp=options.gmp),
                clock,
                restore_runs=False,
                standard_nodes_cache=user_cache_file(),
            )
            try:
                await daemon.start()
            except OperatorServerError as error:
                raise SimulationRefused(str(error)) from None
            operator = daemon.operator
            assert operator is not None  # a simulation's configuration always has one
            for _attempt in range(CARTRIDGE_READ_ATTEMPTS):  # a loaded machine's first contact
                if all(daemon.devices.installed_cartridge(u) for u in assignments):
                    break
                await daemon.devices.read_cartridges()
            for unit, protocol in assignments.items():
                _start_protocol(
                    daemon.operations, unit, protocol, options.parameters, operator.audit,
                    simulate_batch(options.seed, unit, instrument),
                )
            active = [daemon.runs[u] for u in assignments]
            deadline = clock.now() + options.max_hours * 3600.0
            stop = _stop_on_signals()

            def finished() -> bool:
                if stop.is_set():
                    return True
                if not active:  # no protocol: serve until SIGINT/SIGTERM
                    return False
                return all(_run_has_ended(r) for r in active) or clock.now() >= deadline

            if not active:
                _print_serving(console, len(daemon.runs), data_dir, operator.endpoint, credentials)
            for serving in options.on_serving:
                await serving(operator.endpoint, credentials)
            with _progress(console, active) as update:

                def observe(_: Daemon) -> None:
                    now = clock.now()
                    update(now)
                    for tick_observer in options.tick_observers:
                        tick_observer(now)

                answer = _auto_confirm(options, daemon, list(assignments), console)
                await daemon.run_until(finished, [*answer, observe])
            for run in active:
                if run.run_id is not None:
                    daemon.journal.record_final_state(run.run_id, run.state.value)
            if options.report_dir is not None:
                _write_reports(options.report_dir, daemon.journal.path, active, console)
            wall = time.monotonic() - wall_start
            return [summarise(run, daemon.control, clock.now(), wall) for run in active]
        finally:
            for stopping in options.on_stopping:
                await stopping()
            if daemon is not None:
                await daemon.stop()
            await instrument.stop()


def _auto_confirm(
    options: SimulateOptions, daemon: Daemon, units: list[str], console: Console
) -> list[Callable[[Daemon], None]]:
    """The observer answering operator steps, or none: then say how people answer them."""
    if options.auto_confirm:
        return [AutoConfirm(daemon.operations, units, options.confirm_values, options.seed)]
    if units and daemon.operator is not None:
        console.print(f"Operator steps wait for people: shuttlectl --endpoint "
                      f"{daemon.operator.endpoint} confirm UNIT --value NAME=VALUE, then verify "
                      "UNIT as a second user where asked.", soft_wrap=True)
    return []


def _write_reports(
    directory: Path, journal_path: Path, runs: list[UnitRun], console: Console
) -> None:
    """One HTML report per run, written before a temporary data directory disappears."""
    from shuttled.reports.html import write_report

    for run in runs:
        if run.run_id is not None:
            path = write_report(journal_path, run.run_id, directory / f"{run.run_id}.html")
            console.print(f"Report: {path}", soft_wrap=True)


OPERATOR_PORT = 4840  # SPEC §5's default: what UaExpert users try first


def _operator_port(options: SimulateOptions, console: Console) -> int:
    """--opcua-port, else 4840 when serving for shuttlectl (if free), else any free port."""
    if options.opcua_port:
        return options.opcua_port
    if options.protocols:
        return free_loopback_port()
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", OPERATOR_PORT))
        except OSError:
            port = free_loopback_port()
            console.print(f"Port {OPERATOR_PORT} is in use; the operator interface uses {port}.",
                          soft_wrap=True)
            return port
    return OPERATOR_PORT


def _print_serving(
    console: Console, units: int, data_dir: Path, endpoint: str, credentials: Path | None
) -> None:
    """What a newcomer needs to try shuttlectl; the first line is what scripts wait for."""
    console.print(
        f"Virtual instrument with {units} units is running (journal in {data_dir}); "
        "Ctrl-C stops it.",
        soft_wrap=True,
    )
    console.print(f"Operator interface: {endpoint}", soft_wrap=True)
    if credentials is not None:
        console.print(f"Sign in as sim (supervisor): password in {credentials}", soft_wrap=True)
        console.print(
            f"Try: shuttlectl --endpoint {endpoint} --password-file {credentials} status",
            soft_wrap=True,
        )
    console.file.flush()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


class _progress:
    """One progress line per unit: state, phase and simulated time (refreshed a few times/s)."""

    def __init__(self, console: Console, runs: list[UnitRun]) -> None:
        self.runs = runs
        self.progress = Progress(
            TextColumn("{task.fields[unit]}"),
            TextColumn("{task.fields[state]:<9}"),
            TextColumn("{task.fields[phase]:<14}"),
            BarColumn(),
            TextColumn("{task.fields[hours]:>7.2f} h simulated"),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        )
        self.tasks = {}
        self._last_wall = 0.0

    def __enter__(self):
        self.progress.start()
        for run in self.runs:
            total = _planned_seconds(run.protocol) if run.protocol else 1.0
            self.tasks[run.unit_id] = self.progress.add_task(
                "", total=total, unit=run.unit_id, state=run.state.value, phase="", hours=0.0
            )
        return self.update

    def update(self, now: float) -> None:
        wall = time.monotonic()
        if wall - self._last_wall < 0.1:
            return
        self._last_wall = wall
        for run in self.runs:
            elapsed = run.run_time_s(now)
            self.progress.update(
                self.tasks[run.unit_id],
                completed=elapsed,
                state=run.state.value,
                phase=run.phase.name if run.phase else "",
                hours=elapsed / 3600.0,
            )

    def __exit__(self, *exc: object) -> None:
        self._last_wall = 0.0
        for run in self.runs:
            self.progress.update(self.tasks[run.unit_id], state=run.state.value)
        self.progress.stop()


def _planned_seconds(protocol: Protocol) -> float:
    """An upper bound for the bar: each phase's duration, or its timeout for an `until`."""
    return sum((p.duration_s or p.timeout_s or 600.0) for p in protocol.phases) or 1.0
