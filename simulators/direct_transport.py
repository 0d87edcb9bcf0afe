"""In-process transports to the virtual instrument's devices, for the digital twin.

`shuttlectl analyze` must run the same engine, control loop and drivers as the daemon, but for
days of process time in seconds, where a socket or pseudo-terminal round trip per request would
dominate. These transports replace only the last hop: pump requests are still encoded, checked
by the firmware stub and parsed by the serial driver; probe reads still go through the register
map and the Modbus driver's decoding; heater writes are still range-checked. Only the bytes do
not travel through the kernel. Nothing here ever waits (`answers_in_process`), so the control
loop asks these transports one after the other rather than at once (shuttled/loop/asking.py).
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

    answers_in_process = True  # never waits: the control loop need not ask it concurrently

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
        arrays = self.arrays
        readings = {}
        all_measured = True
        for unit, i in self._units.items():
            if arrays.available[i]:
                readings[unit] = BioreactorReading(
                    float(arrays.measured_temperature[i]),
                    float(arrays.volume_ml[i]),
                    arrays.cartridges[i] if i < len(arrays.cartridges) else None,
                )
            else:
                all_measured = False
                readings[unit] = BioreactorReading(math.nan, math.nan)
        # The same truth the OPC UA driver reports: connected, but some unit cannot be measured.
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
    """A pump bus whose frames are handed to the firmware stub instead of a serial port.

    Each frame goes to the pump it addresses, which is what the bus's `feed` does with one whole
    request line after every other pump has checked its CRC and found it is not meant for it.
    A request without arguments (STATUS, STOP, CLEAR) is encoded once per sequence number."""

    answers_in_process = True

    def __init__(self, port: str, firmware: PumpBusFirmware, now: Callable[[], float]) -> None:
        super().__init__(port)
        self._pumps = {pump.address: pump for pump in firmware.pumps}
        self._now = now
        self._frames: dict[tuple[int, int, str], bytes] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def attempt(self, address: int, command: str, *args: object) -> list[str]:
        seq = self.next_seq()
        frame = self._frames.get((address, seq, command)) if not args else None
        if frame is None:
            frame = build_request(address, seq, command, args).strip()
            if not args:
                self._frames[(address, seq, command)] = frame
        # Answered at once: nothing waits on a line (shuttled/loop/asking.py).
        pump = self._pumps.get(address)
        reply = pump.handle_line(frame, self._now()) if pump is not None else None
        parsed = parse_reply(reply.strip()) if reply is not None else None
        if parsed is not None and parsed[:2] == (address, seq):
            return interpret_reply(address, command, parsed[2])
        self.timeouts += 1
        raise NoReply("no reply")


class DirectProbeBus(ProbeBus):
    """A Modbus line whose reads are answered from the probes' register maps."""

    answers_in_process = True

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
        pump_bus=lambda port, _timeout, _line: DirectPumpBus(port, pump_firmware[port], now),
        probe_bus=lambda port, _timeout, _line: DirectProbeBus(port, probe_firmware[port]),
    )
