"""Driver round trips against the virtual instrument: OPC UA over loopback, serial over ptys.

Measures, in one run, what a control tick pays per device request: one batched OPC UA Read of
temperature, volume and heater readback for 16 units, one batched Write of 16 heater outputs, one
pump STATUS round trip (SPEC §7) and one density-probe read (three Modbus requests, SPEC §8).
Prints one JSON object (milliseconds, median and p99) as its last line.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable

from drivers.bioreactor_opcua import OpcUaBioreactor
from drivers.probe_modbus import ModbusDensityProbe, ProbeBus
from drivers.pump_serial import PumpBus, SerialPump
from simulators.instrument import VirtualInstrument

UNITS = 16
SAMPLES = 500
WARM_UP = 20


async def _measure(call: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    for _ in range(WARM_UP):
        await call()
    samples = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000.0)
    samples.sort()
    return round(statistics.median(samples), 3), round(samples[int(0.99 * len(samples)) - 1], 3)


async def main() -> dict[str, float]:
    instrument = VirtualInstrument(UNITS, now=lambda: 0.0, seed=1)
    ends = instrument.endpoints()
    await instrument.start()
    bioreactor = OpcUaBioreactor(ends.opcua_endpoint, ends.opcua_namespace, ends.unit_nodes)
    pump_bus = PumpBus(ends.pumps[0].port, timeout_s=1.0)
    probe_bus = ProbeBus(ends.probes[0].port, timeout_s=1.0)
    pump = SerialPump(pump_bus, ends.pumps[0].address)
    probe = ModbusDensityProbe(probe_bus, ends.probes[0].device_id)
    outputs = {unit: 12.5 for unit in ends.unit_nodes}
    try:
        await bioreactor.connect()
        read = await _measure(bioreactor.read_units)
        write = await _measure(lambda: bioreactor.write_heaters(outputs))
        status = await _measure(pump.status)
        probe_read = await _measure(probe.read)
    finally:
        await bioreactor.close()
        await pump_bus.close()
        await probe_bus.close()
        await instrument.stop()
    return {
        "units": UNITS,
        "samples": SAMPLES,
        "opcua_read_16_median_ms": read[0],
        "opcua_read_16_p99_ms": read[1],
        "opcua_write_16_median_ms": write[0],
        "opcua_write_16_p99_ms": write[1],
        "pump_status_median_ms": status[0],
        "pump_status_p99_ms": status[1],
        "probe_read_median_ms": probe_read[0],
        "probe_read_p99_ms": probe_read[1],
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
