"""The instrument's devices as the daemon sees them: one driver per controller and per bus.

Drivers are shared where the hardware is shared (one OPC UA session per controller, one serial
port per bus) and indexed by unit, so the control loop can do one batched request per device and
never one per unit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from drivers.bioreactor_opcua import OpcUaBioreactor, OpcUaSecurity
from drivers.bioreactor_security import ControllerNotTrusted, ControllerRefusedUs
from drivers.interfaces import DeviceError, DeviceRefused
from drivers.probe_modbus import ModbusDensityProbe, ProbeBus
from drivers.pump_serial import PumpBus, SerialPump
from drivers.serial_line import SerialLine, modbus_deviation
from drivers.transports import Transports
from shuttled.config import BioreactorConfig, DaemonConfig

log = structlog.get_logger("shuttled.devices")

WATCHDOG_PERIODS = 3  # control periods without a frame before a running pump stops by itself
MAX_WATCHDOG_MS = 600_000  # SPEC §7 firmware range


def watchdog_ms(control_period_s: float) -> int:
    """How long a pump may hear nothing from us before it stops by itself (SPEC §7 WDOG): long
    enough that one missed tick (a retry, a slow bus) never trips it, short enough that a dead
    daemon stops a pump within seconds."""
    return int(min(MAX_WATCHDOG_MS, max(1000.0, WATCHDOG_PERIODS * control_period_s * 1000.0)))


def controller_pki_dir(data_dir: Path) -> Path:
    """The controller link's certificates: own/ (the daemon's client certificate), trusted/ (the
    controllers it talks to), rejected/ (unknown controllers, for an administrator to check)."""
    return data_dir / "pki" / "controllers"


def controller_security(
    config: BioreactorConfig, data_dir: Path, instrument_id: str
) -> OpcUaSecurity:
    """The session security the configuration names, with the trust list under `data_dir`."""
    return OpcUaSecurity(
        config.security_policy,
        config.security_mode,
        *(
            str(path) if path is not None else None
            for path in (config.certificate, config.private_key, config.server_certificate)
        ),
        pki_dir=str(controller_pki_dir(data_dir)),
        application_uri=f"urn:cellshuttle:shuttled:{instrument_id}:controller-link",
    )


def opcua_bioreactor(
    config: BioreactorConfig,
    nodes: dict[str, str],
    timeout: float,
    data_dir: Path,
    instrument_id: str,
) -> OpcUaBioreactor:
    """The real driver, with the session security and credentials the configuration names."""
    password = None
    if config.password_file is not None:
        lines = config.password_file.read_text(encoding="utf-8").splitlines()
        password = lines[0] if lines else ""
    return OpcUaBioreactor(
        config.endpoint,
        config.namespace_uri,
        nodes,
        timeout_s=timeout,
        username=config.username,
        password=password,
        security=controller_security(config, data_dir, instrument_id),
    )


def _warn_if_insecure(bioreactor: OpcUaBioreactor) -> None:
    """At every start, so that an unencrypted temperature loop is never forgotten."""
    security = getattr(bioreactor, "security", None)  # in-process transports have none
    if isinstance(security, OpcUaSecurity) and security.insecure:
        log.warning('bioreactor controller link is NOT encrypted (security_policy = "None"): '
                    "anyone on its network can read and write the heaters",
                    endpoint=bioreactor.endpoint)


def _log_unreachable(bioreactor: OpcUaBioreactor, error: DeviceError) -> None:
    """One line an administrator can act on: which certificate to copy where."""
    if isinstance(error, ControllerNotTrusted):
        log.error("bioreactor controller certificate not trusted: connection refused",
                  endpoint=bioreactor.endpoint, certificate=str(error.copied_to),
                  trust_it_by_copying_to=str(error.trusted_dir))
    elif isinstance(error, ControllerRefusedUs):
        log.error("bioreactor controller refused the daemon's certificate",
                  endpoint=bioreactor.endpoint, add_to_controller=str(error.certificate))
    else:
        log.warning("bioreactor controller unreachable", endpoint=bioreactor.endpoint,
                    error=str(error))


@dataclass
class UnitDevices:
    bioreactor: OpcUaBioreactor
    pumps: dict[str, SerialPump]
    probe: ModbusDensityProbe
    probe_bus: ProbeBus


class Devices:
    def __init__(self, config: DaemonConfig, transports: Transports | None = None) -> None:
        make = transports or Transports()
        timeout = config.device_timeout_s
        self.control_period_s = config.control_period_s
        self.bioreactors: dict[tuple[str, str], OpcUaBioreactor] = {}
        nodes_by_controller: dict[tuple[str, str], dict[str, str]] = {}
        controllers: dict[tuple[str, str], BioreactorConfig] = {}
        for unit in config.units:
            key = (unit.bioreactor.endpoint, unit.bioreactor.namespace_uri)
            nodes_by_controller.setdefault(key, {})[unit.unit_id] = unit.bioreactor.node
            controllers.setdefault(key, unit.bioreactor)
        for key, nodes in nodes_by_controller.items():
            if make.bioreactor is None:
                self.bioreactors[key] = opcua_bioreactor(
                    controllers[key], nodes, timeout, config.data_dir, config.instrument_id
                )
            else:
                self.bioreactors[key] = make.bioreactor(key[0], key[1], nodes, timeout)

        self.pump_buses: dict[str, PumpBus] = {}
        self.probe_buses: dict[str, ProbeBus] = {}
        self.units: dict[str, UnitDevices] = {}
        # The cartridge each unit's controller reports installed (SPEC §12), None while unknown:
        # read once at open (a Start may come before the first tick), then every tick by the
        # control loop's cartridge check.
        self.cartridges: dict[str, str | None] = {unit.unit_id: None for unit in config.units}
        for unit in config.units:
            pumps = {}
            for name, pump in unit.pumps.items():
                if pump.port not in self.pump_buses:
                    self.pump_buses[pump.port] = make.pump_bus(pump.port, timeout, pump.line)
                bus = self.pump_buses[pump.port]
                pumps[name] = SerialPump(bus, pump.address)
            if unit.probe.port not in self.probe_buses:
                self.probe_buses[unit.probe.port] = make.probe_bus(
                    unit.probe.port, timeout, unit.probe.line
                )
                self._warn_if_not_rtu_framing(unit.probe.port, unit.probe.line)
            probe_bus = self.probe_buses[unit.probe.port]
            bioreactor = self.bioreactors[(unit.bioreactor.endpoint, unit.bioreactor.namespace_uri)]
            self.units[unit.unit_id] = UnitDevices(
                bioreactor, pumps, ModbusDensityProbe(probe_bus, unit.probe.device_id), probe_bus
            )

    @staticmethod
    def _warn_if_not_rtu_framing(port: str, line: SerialLine) -> None:
        """Once per bus and start: a probe bus at 8N1 is allowed (many devices ship so), but it
        is not what Modbus RTU specifies, and a misread device label is the usual reason."""
        deviation = modbus_deviation(line)
        if deviation is not None:
            log.warning("probe bus framing is not Modbus RTU's", port=port, line=str(line),
                        reason=deviation)

    def use_clock(self, now: Callable[[], float]) -> None:
        """Reconnect backoff in process time, so a loss costs the same process time whatever
        the clock's speed (real time would let `--speed max` race past device_loss_hold_s)."""
        for bioreactor in self.bioreactors.values():
            if isinstance(bioreactor, OpcUaBioreactor):
                bioreactor.use_clock(now)

    async def open(self) -> None:
        """Contact every device once; one that does not answer is logged, not fatal."""
        for bioreactor in self.bioreactors.values():
            _warn_if_insecure(bioreactor)
            await self._read_cartridges_of(bioreactor, connect_first=True)
        for bus in (*self.pump_buses.values(), *self.probe_buses.values()):
            try:
                await bus.open()
            except (DeviceError, OSError) as error:
                log.warning("serial bus unavailable", port=bus.port, error=str(error))
        await self.arm_pump_watchdogs()

    async def read_cartridges(self) -> None:
        """Read every controller's installed cartridges now, connecting afresh if needed: a
        Start that checks its CartridgeId right after a first contact that failed (a loaded
        machine at start-up) must not be refused for want of a reading the next try gives."""
        for bioreactor in self.bioreactors.values():
            await self._read_cartridges_of(bioreactor, connect_first=False)

    async def _read_cartridges_of(self, bioreactor: OpcUaBioreactor, connect_first: bool) -> None:
        """Contact one controller (afresh, or only if the session is gone) and note which
        cartridges it reports; one that does not answer is logged, not fatal."""
        try:
            if connect_first:
                await bioreactor.connect()
            try:
                readings = await bioreactor.read_units()
            except DeviceError:
                if connect_first:
                    raise
                await bioreactor.connect()
                readings = await bioreactor.read_units()
        except DeviceError as error:
            _log_unreachable(bioreactor, error)
        else:
            self.cartridges.update({u: r.cartridge for u, r in readings.items()})

    def installed_cartridge(self, unit: str) -> str | None:
        """The id of the cartridge in `unit` as last read from its controller; None: unknown."""
        return self.cartridges.get(unit)

    async def arm_pump_watchdogs(self) -> None:
        """Arm every pump's WDOG (SPEC §7) so that a pump stops by itself if the daemon dies.

        The control loop re-arms a pump that was lost or power-cycled; one that does not answer
        now is left to it.
        """
        ms = watchdog_ms(self.control_period_s)
        silent: set[int] = set()  # a bus that timed out once is not asked again (start-up time)
        for unit_id, unit in self.units.items():
            for name, pump in unit.pumps.items():
                if id(pump.bus) in silent:
                    continue
                try:
                    await pump.set_watchdog(ms)
                except DeviceError as error:
                    if not isinstance(error, DeviceRefused):
                        silent.add(id(pump.bus))
                    log.warning(
                        "pump watchdog not armed", unit=unit_id, pump=name, error=str(error)
                    )

    async def close(self) -> None:
        for bioreactor in self.bioreactors.values():
            await bioreactor.close()
        for bus in (*self.pump_buses.values(), *self.probe_buses.values()):
            await bus.close()
