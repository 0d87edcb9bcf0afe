"""In-process transports to the virtual instrument's devices, for the digital twin.

`shuttlectl analyze` must run the same engine, control loop and drivers as the daemon, but for
days of process time in seconds, where a socket or pseudo-terminal round trip per request would
dominate. These transports replace only the last hop: pump requests are still encoded, checked
by the firmware stub and parsed by the serial driver; probe reads still go through the register
map and the Modbus driver's decoding; heater writes are still range-checked. Only the bytes do
not travel through the kernel.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping

from drivers.bioreactor_opcua import BioreactorReading, Health
from drivers.interfaces import DeviceRefused, DeviceTimeout
from drivers.probe_modbus import ProbeBus
from drivers.pump_serial import NoReply, PumpBus, build_request, interpret_reply, parse_reply
from drivers.transports import Transports
from firmware_stubs.probe import DensityProbeFirmware
from firmware_stubs.pump import PumpBusFirmware
from simulators.instrument import VirtualInstrument
from simulators.opcua_bioreactor import ControllerArrays, check_heater_output


class DirectBioreactor:
    """The bioreactor driver's interface, served straight from the controller's arrays."""

    def __init__(self, endpoint: str, arrays: ControllerArrays, units: Mapping[str, int]) -> None:
        self.endpoint = endpoint
        self.arrays = arrays
        self._units = dict(units)
        self.health = Health.CONNECTED

    @property
    def unit_ids(self) -> list[str]:
        return list(self._units)

    async def connect(self) -> None:
        self.health = Health.CONNECTED

    async def close(self) -> None:
        self.health = Health.LOST

    async def read_units(self) -> dict[str, BioreactorReading]:
        readings = {}
        for unit, i in self._units.items():
            if self.arrays.available[i]:
                readings[unit] = BioreactorReading(
                    float(self.arrays.measured_temperature[i]),
                    float(self.arrays.volume_ml[i]),
                    self.arrays.cartridges[i] if i < len(self.arrays.cartridges) else None,
                )
            else:
                readings[unit] = BioreactorReading(math.nan, math.nan)
        # The same truth the OPC UA driver reports: connected, but some unit cannot be measured.
        all_measured = all(self.arrays.available[i] for i in self._units.values())
        self.health = Health.CONNECTED if all_measured else Health.DEGRADED
        return readings

    async def write_heaters(self, outputs_pct: Mapping[str, float]) -> dict[str, bool]:
        accepted = {}
        for unit, value in outputs_pct.items():
            ok = unit in self._units and check_heater_output(float(value)) is None
            if ok:
                self.arrays.heater_pct[self._units[unit]] = float(value)
            accepted[unit] = ok
        return accepted


class DirectPumpBus(PumpBus):
    """A pump bus whose frames are handed to the firmware stub instead of a serial port."""

    def __init__(self, port: str, firmware: PumpBusFirmware, now: Callable[[], float]) -> None:
        super().__init__(port)
        self._firmware = firmware
        self._now = now

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def attempt(self, address: int, command: str, *args: object) -> list[str]:
        seq = self.next_seq()
        # Answered at once: nothing waits on a line, so the tick runs without a pass of the event
        # loop (shuttled/loop/eager.py); the order of requests is the driver's, as on a real bus.
        reply = self._firmware.feed(build_request(address, seq, command, args), self._now())
        for line in reply.split(b"\n"):
            parsed = parse_reply(line.strip())
            if parsed is not None and parsed[:2] == (address, seq):
                return interpret_reply(address, command, parsed[2])
        self.timeouts += 1
        raise NoReply("no reply")


class DirectProbeBus(ProbeBus):
    """A Modbus line whose reads are answered from the probes' register maps."""

    def __init__(self, port: str, probes: list[DensityProbeFirmware]) -> None:
        # No pymodbus client: nothing goes over a line.
        self.port = port
        self.timeout_s = 0.0
        self.lock = asyncio.Lock()
        self.timeouts = 0
        self._probes = {p.device_id: p for p in probes}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def read_holding_registers(self, device_id: int, address: int, count: int) -> list[int]:
        probe = self._probes.get(device_id)
        if probe is None:
            self.timeouts += 1
            raise DeviceTimeout(f"probe {device_id} @{address}: no reply")
        registers = probe.read_registers(address, count)
        if registers is None:
            raise DeviceRefused("2", f"Modbus exception 2 reading {address}")
        return registers


def direct_transports(instrument: VirtualInstrument, now: Callable[[], float]) -> Transports:
    """Transports that reach this instrument's devices in-process, keyed like its endpoints."""
    pump_firmware = {bus.port_path: firmware for bus, firmware in instrument.pump_buses}
    probe_firmware = {bus.port_path: list(fw.probes.values()) for bus, fw in instrument.probe_buses}
    units = {unit: i for i, unit in enumerate(instrument.unit_ids)}

    def bioreactor(endpoint: str, _ns: str, nodes: dict[str, str], _timeout: float):
        return DirectBioreactor(endpoint, instrument.arrays, {u: units[u] for u in nodes})

    return Transports(
        bioreactor=bioreactor,
        pump_bus=lambda port, _timeout: DirectPumpBus(port, pump_firmware[port], now),
        probe_bus=lambda port, _timeout: DirectProbeBus(port, probe_firmware[port]),
    )
