"""What the probes' liveness reads cost a control tick (issue 14, item 6).

16 units' probes on one Modbus line, read by the daemon's own ProbePoller as the control loop
does: a full read (three requests) every `poll_period_s` (30 s: every sixth tick), and, with
liveness, the status word alone of every probe not asked for two ticks. Measured per tick, with
and without liveness, in the same run, on the pseudo-terminal as fast as it copies bytes and with
the real line's timing (19200 baud, 8N2, device turnaround: `shuttle-sim --byte-timing`). Prints
one JSON line: milliseconds of probe-line time per tick (median), and the ratio.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from drivers.clock import VirtualClock
from shuttled.devices import Devices
from shuttled.loop.device_loss import DeviceWatch
from shuttled.loop.probe_polling import ProbePoller
from shuttled.simulation.instrument_config import config_for_instrument
from simulators.instrument import VirtualInstrument
from simulators.pty_bus import SerialTiming

UNITS = 16
TICKS = 60  # ten full-read periods
NO_LIVENESS = 10**9


async def per_tick_ms(byte_timing: bool, liveness_ticks: int) -> float:
    clock = VirtualClock()
    timing = SerialTiming() if byte_timing else None
    instrument = VirtualInstrument(UNITS, now=clock.now, seed=1, serial_timing=timing)
    await instrument.start()
    with tempfile.TemporaryDirectory() as scratch:
        config = config_for_instrument(
            instrument.endpoints(), Path(scratch), 0, users_file=None
        ).to_daemon_config()
        devices = Devices(config)
        for bus in devices.probe_buses.values():
            await bus.open()
        watch = DeviceWatch(config.device_loss_hold_s)
        poller = ProbePoller(config, devices, watch, liveness_ticks=liveness_ticks)
        samples = []
        try:
            for tick in range(TICKS):
                watch.begin_tick()
                started = time.perf_counter()
                await poller.read(tick * config.control_period_s)
                samples.append((time.perf_counter() - started) * 1000.0)
        finally:
            for bus in devices.probe_buses.values():
                await bus.close()
            await instrument.stop()
    assert not watch.lost, watch.lost
    return round(statistics.median(samples), 3)


async def main() -> dict[str, float]:
    result: dict[str, float] = {}
    for line, timed in (("pty", False), ("19200_baud", True)):
        without = await per_tick_ms(timed, NO_LIVENESS)
        with_liveness = await per_tick_ms(timed, 2)
        result[f"{line}_ms_per_tick_full_reads_only"] = without
        result[f"{line}_ms_per_tick_with_liveness"] = with_liveness
        result[f"{line}_ratio"] = round(with_liveness / without, 2)
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
