"""Driver round trips against the virtual instrument: OPC UA over loopback, serial over ptys.

Measures, in one run, what a control tick pays per device request: one batched OPC UA Read of
temperature, volume and heater readback for 16 units (48 values), one batched Write of 16 heater
outputs, one pump STATUS round trip (SPEC §7) and one density-probe read (three Modbus requests,
SPEC §8).

The OPC UA link is measured twice against the same controller, as SPEC §11 asks of a comparison:
encrypted (Basic256Sha256 SignAndEncrypt, the default) and with SecurityPolicy None, the samples
interleaved so that both see the same machine load; the ratio is what encryption costs per tick.
Also the session set-up of each (the secure one adds the endpoint check and the RSA handshake),
paid at start and after every lost connection, not per tick.

Prints one JSON object (milliseconds, median and p99) as its last line.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from drivers.bioreactor_opcua import OpcUaBioreactor, OpcUaSecurity
from drivers.probe_modbus import ModbusDensityProbe, ProbeBus
from drivers.pump_serial import PumpBus, SerialPump
from simulators.instrument import VirtualInstrument

UNITS = 16
SAMPLES = 500
WARM_UP = 20
CONNECTS = 20

Call = Callable[[], Awaitable[object]]


def _stats(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return round(statistics.median(samples), 3), round(samples[int(0.99 * len(samples)) - 1], 3)


async def _measure(*calls: Call) -> list[tuple[float, float]]:
    """Median and p99 of each call, the calls' samples interleaved."""
    for _ in range(WARM_UP):
        for call in calls:
            await call()
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(SAMPLES):
        for call, taken in zip(calls, samples, strict=True):
            started = time.perf_counter()
            await call()
            taken.append((time.perf_counter() - started) * 1000.0)
    return [_stats(taken) for taken in samples]


def _connect_and_close(driver: OpcUaBioreactor) -> Call:
    async def cycle() -> None:
        await driver.connect()
        await driver.close()

    return cycle


async def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="driver-latency-") as scratch:
        # The controller offers None as well, so both links reach the very same server.
        instrument = VirtualInstrument(UNITS, now=lambda: 0.0, seed=1, allow_insecure=True)
        ends = instrument.endpoints()
        await instrument.start()
        secure = instrument.opcua.client_security(Path(scratch) / "client")
        drivers = {
            name: OpcUaBioreactor(ends.opcua_endpoint, ends.opcua_namespace, ends.unit_nodes,
                                  security=security)
            for name, security in (("secure", secure), ("none", OpcUaSecurity("None")))
        }
        pump_bus = PumpBus(ends.pumps[0].port, timeout_s=1.0)
        probe_bus = ProbeBus(ends.probes[0].port, timeout_s=1.0)
        pump = SerialPump(pump_bus, ends.pumps[0].address)
        probe = ModbusDensityProbe(probe_bus, ends.probes[0].device_id)
        outputs = {unit: 12.5 for unit in ends.unit_nodes}
        try:
            for driver in drivers.values():
                await driver.connect()
            read_s, read_n = await _measure(drivers["secure"].read_units,
                                            drivers["none"].read_units)
            write_s, write_n = await _measure(lambda: drivers["secure"].write_heaters(outputs),
                                              lambda: drivers["none"].write_heaters(outputs))
            [status] = await _measure(pump.status)
            [probe_read] = await _measure(probe.read)
            connect = {}
            for name, driver in drivers.items():
                cycle = _connect_and_close(driver)
                await cycle()
                taken = []
                for _ in range(CONNECTS):
                    started = time.perf_counter()
                    await cycle()
                    taken.append((time.perf_counter() - started) * 1000.0)
                connect[name] = round(statistics.median(taken), 1)
        finally:
            for driver in drivers.values():
                await driver.close()
            await pump_bus.close()
            await probe_bus.close()
            await instrument.stop()
    tick_secure = read_s[0] + write_s[0]
    tick_none = read_n[0] + write_n[0]
    return {
        "units": UNITS,
        "samples": SAMPLES,
        "opcua_policy": "Basic256Sha256 SignAndEncrypt",
        "opcua_read_48_median_ms": read_s[0],
        "opcua_read_48_p99_ms": read_s[1],
        "opcua_write_16_median_ms": write_s[0],
        "opcua_write_16_p99_ms": write_s[1],
        "none_opcua_read_48_median_ms": read_n[0],
        "none_opcua_read_48_p99_ms": read_n[1],
        "none_opcua_write_16_median_ms": write_n[0],
        "none_opcua_write_16_p99_ms": write_n[1],
        "opcua_tick_median_ms": round(tick_secure, 3),
        "none_opcua_tick_median_ms": round(tick_none, 3),
        "secure_vs_none_read": round(read_s[0] / read_n[0], 2),
        "secure_vs_none_write": round(write_s[0] / write_n[0], 2),
        "secure_vs_none_tick": round(tick_secure / tick_none, 2),
        "opcua_connect_median_ms": connect["secure"],
        "none_opcua_connect_median_ms": connect["none"],
        "pump_status_median_ms": status[0],
        "pump_status_p99_ms": status[1],
        "probe_read_median_ms": probe_read[0],
        "probe_read_p99_ms": probe_read[1],
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
