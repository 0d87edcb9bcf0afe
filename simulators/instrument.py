"""A complete virtual Cell Shuttle: plant physics behind the same interfaces as the hardware.

The bioreactor controller is a real OPC UA server on loopback (or on a bench's interface),
encrypted and with a trust list of clients like a plant's; the pump modules and density probes
are firmware stubs behind real pseudo-terminals (or, on a bench, existing serial devices:
`simulators.serial_lines`). The daemon's drivers cannot tell it from an instrument, so every
test and demo runs the production code paths.

Physics advances only in `advance_to(now)`, called by the injected clock, so for a given seed and
sequence of commands the result is the same however fast the machine is. Scheduled faults
(`simulators.faults`) are applied there too, at their exact simulated times: the integration is
split at each fault's start and end.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivers.serial_line import PROBE_LINE, PUMP_LINE, SerialLine
from firmware_stubs.probe import DensityProbeFirmware, ModbusRtuBusFirmware
from firmware_stubs.pump import PumpBusFirmware, PumpFirmware
from simulators import fault_effects, plant, probe_model
from simulators.cartridges import installed
from simulators.faults import Fault, FaultSchedule
from simulators.opcua_bioreactor import (
    NAMESPACE_URI,
    ControllerArrays,
    SimulatedBioreactorServer,
)
from simulators.pty_bus import PtyBus, SerialBus, SerialTiming
from simulators.serial_lines import BenchPorts

PHYSICS_STEP_S = 1.0
UNITS_PER_PUMP_BUS = 8  # 3 pumps per unit: 24 addresses of the 32 a bus allows
UNITS_PER_PROBE_BUS = 16
TEMPERATURE_NOISE_K = 0.02  # Pt100 with a 16-bit ADC (assumption)
STIRRER_RPM = 60.0


@dataclass(frozen=True)
class PumpSpec:
    name: str
    into_vessel: bool
    ul_per_rev: float


# SPEC §1: media and vector feed the vessel, harvest empties it (wider tubing for 50 mL/min).
PUMP_SPECS = (
    PumpSpec("media", True, 80.0),
    PumpSpec("vector", True, 80.0),
    PumpSpec("harvest", False, 250.0),
)
# Media and vector pass an inline warmer on their way in (assumption); an addition of cold
# medium is what the cold_bolus fault models.
MEDIUM_TEMPERATURE_C = 37.0


@dataclass(frozen=True)
class PumpEndpoint:
    unit_id: str
    name: str
    port: str
    address: int
    ul_per_rev: float
    into_vessel: bool
    line: SerialLine = PUMP_LINE  # the settings the bus is served at (its timing, on a bench)


@dataclass(frozen=True)
class ProbeEndpoint:
    unit_id: str
    port: str
    device_id: int
    line: SerialLine = PROBE_LINE


@dataclass(frozen=True)
class InstrumentEndpoints:
    """Where each of the virtual instrument's devices can be reached (for the daemon's config),
    and the controller's certificate exchange: its certificate (DER) for the client's trust
    list, and the directory where a client's certificate must be copied to be admitted."""

    opcua_endpoint: str
    opcua_namespace: str
    unit_nodes: dict[str, str]
    pumps: list[PumpEndpoint]
    probes: list[ProbeEndpoint]
    opcua_certificate: str
    opcua_trusted_clients: str


def unit_id_of(index: int) -> str:
    return f"U{index + 1:02d}"


def buses_for(units: int, units_per_bus: int) -> int:
    """How many buses `units` units take, `units_per_bus` on each (UNITS_PER_PUMP_BUS...)."""
    return -(-units // units_per_bus)


class VirtualInstrument:
    def __init__(
        self,
        units: int,
        *,
        now: Callable[[], float],
        seed: int = 0,
        opcua_port: int = 0,
        parameters: plant.PlantParameters | None = None,
        initial: plant.InitialConditions | None = None,
        probe: probe_model.ProbeParameters | None = None,
        faults: list[Fault] | None = None,
        serial_timing: SerialTiming | None = None,  # None: replies as fast as the pty goes
        pki_dir: Path | None = None,  # the controller's certificates; None: a temporary one
        allow_insecure: bool = False,  # also offer SecurityPolicy None
        opcua_host: str = "127.0.0.1",  # the interface the controller listens on
        bench_ports: BenchPorts | None = None,  # existing serial devices for the buses
        cartridges: dict[str, str] | None = None,  # unit -> its cartridge; default CRT-<unit>
    ) -> None:
        if units < 1:
            raise ValueError("a virtual instrument needs at least one unit")
        self.unit_ids = [unit_id_of(i) for i in range(units)]
        self._now = now
        self._time = now()
        self.started_at = self._time  # fault times count from here
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.probe_parameters = probe or probe_model.ProbeParameters()
        self.probe_drift_per_day = probe_model.drift_rates(self.probe_parameters, units, seed)
        self.faults = FaultSchedule.of(faults or [])
        # Per unit, which sensor fault (stuck, nan, spike) each sensor suffers right now.
        self.sensor_faults: list[dict[str, str]] = [{} for _ in range(units)]
        self.ambient_before: dict[Fault, np.ndarray] = {}  # to restore after an ambient step
        params = parameters or plant.PlantParameters()
        self.parameters = params
        self.state = np.tile((initial or plant.InitialConditions()).as_row(), (units, 1))
        self.plant_params = np.tile(params.as_row(), (units, 1))
        self.heater_works = np.ones(units, dtype=np.bool_)
        self.arrays = ControllerArrays(
            measured_temperature=self.state[:, plant.SENSOR_TEMPERATURE].copy(),
            volume_ml=self.state[:, plant.VOLUME_ML].copy(),
            heater_pct=np.zeros(units),
            stirrer_rpm=np.full(units, STIRRER_RPM),
            available=[True] * units,
            cartridges=installed(self.unit_ids, cartridges),
        )
        self.cartridges_before: dict[Fault, str] = {}  # to put back when a timed swap ends
        if pki_dir is None:  # removed with the instrument object
            self._pki_scratch = tempfile.TemporaryDirectory(prefix="sim-controller-pki-")
            pki_dir = Path(self._pki_scratch.name)
        self.opcua = SimulatedBioreactorServer(
            self.unit_ids, self.arrays, opcua_port, pki_dir=pki_dir, allow_insecure=allow_insecure,
            host=opcua_host,
        )
        self._pump_routes: dict[tuple[int, int], tuple[int, PumpSpec]] = {}
        self.pump_firmware: dict[tuple[str, str], PumpFirmware] = {}
        self.pump_buses: list[tuple[SerialBus, PumpBusFirmware]] = []
        self.probe_buses: list[tuple[SerialBus, ModbusRtuBusFirmware]] = []
        self.probes: list[DensityProbeFirmware] = []
        self.serial_timing = serial_timing
        self.bench_ports = bench_ports or BenchPorts()
        self._check_bench_ports(units)
        try:
            self._build_serial_devices(units)
        except BaseException:  # a device that cannot be opened: release those already open
            for bus, _ in (*self.pump_buses, *self.probe_buses):
                bus.close()
            raise
        self._publish()

    def _build_serial_devices(self, units: int) -> None:
        for first in range(0, units, UNITS_PER_PUMP_BUS):
            bus_index = len(self.pump_buses)
            pumps: list[PumpFirmware] = []
            for unit in range(first, min(first + UNITS_PER_PUMP_BUS, units)):
                for k, spec in enumerate(PUMP_SPECS):
                    address = (unit - first) * len(PUMP_SPECS) + k + 1
                    pump = PumpFirmware(
                        address,
                        serial_number=f"SIM{unit + 1:02d}{spec.name[0].upper()}",
                        ul_per_rev=spec.ul_per_rev,
                    )
                    pumps.append(pump)
                    self.pump_firmware[(self.unit_ids[unit], spec.name)] = pump
                    self._pump_routes[(bus_index, address)] = (unit, spec)
            firmware = PumpBusFirmware(pumps)
            timing = self.serial_timing.pumps() if self.serial_timing else None

            def handler(data: bytes, fw: PumpBusFirmware = firmware) -> bytes:
                return fw.feed(data, self._now())

            bus = self.bench_ports.pump_bus(bus_index, handler) or PtyBus(handler, timing)
            self.pump_buses.append((bus, firmware))
        for first in range(0, units, UNITS_PER_PROBE_BUS):
            probes = [
                DensityProbeFirmware(unit - first + 1)
                for unit in range(first, min(first + UNITS_PER_PROBE_BUS, units))
            ]
            self.probes.extend(probes)
            firmware = ModbusRtuBusFirmware(probes)
            timing = self.serial_timing.probes() if self.serial_timing else None
            index = len(self.probe_buses)
            probe_bus = self.bench_ports.probe_bus(index, firmware.feed)
            self.probe_buses.append((probe_bus or PtyBus(firmware.feed, timing), firmware))

    def _check_bench_ports(self, units: int) -> None:
        """One device per bus, or none: a unit without a line would never answer."""
        for kind, ports, per_bus in (
            ("pump", self.bench_ports.pump_ports, UNITS_PER_PUMP_BUS),
            ("probe", self.bench_ports.probe_ports, UNITS_PER_PROBE_BUS),
        ):
            needed = buses_for(units, per_bus)
            if ports and len(ports) != needed:
                raise ValueError(f"{units} units need {needed} {kind} bus(es) of {per_bus} units "
                                 f"each: give {needed} {kind} port(s), not {len(ports)}")

    async def start(self) -> None:
        for bus, _ in (*self.pump_buses, *self.probe_buses):
            await bus.start()
        await self.opcua.start()

    async def stop(self) -> None:
        await self.opcua.stop()
        for bus, _ in (*self.pump_buses, *self.probe_buses):
            bus.close()

    def endpoints(self) -> InstrumentEndpoints:
        pumps = [
            PumpEndpoint(
                self.unit_ids[unit],
                spec.name,
                self.pump_buses[bus_index][0].port_path,
                address,
                spec.ul_per_rev,
                spec.into_vessel,
                self.bench_ports.pump_line,
            )
            for (bus_index, address), (unit, spec) in sorted(self._pump_routes.items())
        ]
        probes = [
            ProbeEndpoint(
                self.unit_ids[unit],
                self.probe_buses[unit // UNITS_PER_PROBE_BUS][0].port_path,
                unit % UNITS_PER_PROBE_BUS + 1,
                self.bench_ports.probe_line,
            )
            for unit in range(len(self.unit_ids))
        ]
        return InstrumentEndpoints(
            opcua_endpoint=self.opcua.endpoint,
            opcua_namespace=NAMESPACE_URI,
            unit_nodes={u: u for u in self.unit_ids},
            pumps=pumps,
            probes=probes,
            opcua_certificate=str(self.opcua.certificate),
            opcua_trusted_clients=str(self.opcua.trust_list.trusted_dir),
        )

    async def advance_to(self, now: float) -> None:
        """Integrate pumps and plant from the last call to `now` (the clock's listener).

        Faults due in the interval are applied at their own simulated times, in order.
        """
        if now <= self._time:
            return
        while (due := self.faults.next_time()) is not None and self.started_at + due <= now:
            self._integrate(self.started_at + due)
            for event in self.faults.pop_due(due):
                await fault_effects.apply(self, event)
        self._integrate(now)
        self._publish()

    async def inject(self, fault: Fault) -> None:
        """Start `fault` now (its `at_s` is ignored); it ends `duration_s` later, if it lasts."""
        at_s = self._time - self.started_at
        self.faults.add(dataclasses.replace(fault, at_s=at_s))
        for event in self.faults.pop_due(at_s):
            await fault_effects.apply(self, event)
        self._publish()

    def _integrate(self, until: float) -> None:
        dt = until - self._time
        if dt <= 0.0:
            return
        self._time = until
        units = len(self.unit_ids)
        inflow = np.zeros(units)
        outflow = np.zeros(units)
        for bus_index, (_, firmware) in enumerate(self.pump_buses):
            for address, moved_ul in firmware.advance(dt, until).items():
                unit, spec = self._pump_routes[(bus_index, address)]
                (inflow if spec.into_vessel else outflow)[unit] += moved_ul / 1000.0
        steps = max(1, round(dt / PHYSICS_STEP_S))
        plant.plant_step(
            self.state,
            self.plant_params,
            self.arrays.heater_pct / 100.0,
            inflow,
            np.full(units, MEDIUM_TEMPERATURE_C),
            outflow,
            self.heater_works,
            dt / steps,
            steps,
        )

    def _publish(self) -> None:
        """Refresh what the devices report, with seeded sensor noise and active sensor faults."""
        units = len(self.unit_ids)
        temperature_noise = self._rng.normal(0.0, TEMPERATURE_NOISE_K, units)
        densities = probe_model.readings(
            self.state[:, plant.DENSITY],
            self.probe_drift_per_day,
            self._time - self.started_at,
            self.probe_parameters,
            self._rng,
        )
        sensed = self.state[:, plant.SENSOR_TEMPERATURE]
        self.arrays.volume_ml[:] = self.state[:, plant.VOLUME_ML]
        for unit, probe in enumerate(self.probes):
            faults = self.sensor_faults[unit]
            temperature = fault_effects.sensor_value(
                faults.get("temperature"), float(sensed[unit] + temperature_noise[unit])
            )
            if temperature is not None:
                self.arrays.measured_temperature[unit] = temperature
            probe_fault = faults.get("probe")
            density = fault_effects.sensor_value(probe_fault, float(densities[unit]), density=True)
            if density is not None:
                status = fault_effects.probe_status(probe_fault)
                # A spike (a bubble on the electrodes) disturbs the density, not the probe's Pt1000.
                probe_temperature = math.nan if probe_fault == "nan" else float(sensed[unit])
                probe.set_measurement(density, probe_temperature, status)
