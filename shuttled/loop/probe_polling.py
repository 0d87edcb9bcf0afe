"""Probe polling: a full read every `poll_period_s`, a one-register liveness read in between.

A capacitance probe's full read is three Modbus requests on a line it shares with the other
units' probes, and density changes over hours: each probe is read fully every `poll_period_s` of
process time, unit i on its own ticks so the line's load is even. But a probe that goes silent
must raise its alarm within two control periods (the fail-safe rule), not at its next full read
half a minute later. So a probe not read fully for LIVENESS_TICKS ticks is asked for its status
word alone, one register, about a quarter of a full read's time on the wire. With two ticks, a
probe that falls silent right after it answered is found silent at the second tick after, and
each probe costs the line half a ping per tick: 8 a tick for 16 units on one line.
"""

from __future__ import annotations

import asyncio

from drivers.interfaces import ProbeReading
from shuttled.config import DaemonConfig
from shuttled.devices import Devices
from shuttled.loop.device_loss import DeviceKey, DeviceWatch, poll_bus

LIVENESS_TICKS = 2  # the fail-safe rule: a lost device is noticed within two control periods


class ProbePoller:
    def __init__(
        self,
        config: DaemonConfig,
        devices: Devices,
        watch: DeviceWatch,
        liveness_ticks: int = LIVENESS_TICKS,
    ) -> None:
        """`liveness_ticks`: LIVENESS_TICKS; larger only to measure what liveness costs
        (benchmarks/probe_liveness.py)."""
        self.devices = devices
        self.liveness_ticks = liveness_ticks
        self.watch = watch
        self.unit_ids = [u.unit_id for u in config.units]
        self._index = {unit: i for i, unit in enumerate(self.unit_ids)}
        self._keys = {unit: DeviceKey(unit, "probe") for unit in self.unit_ids}
        # Unit i is read fully on the ticks where (tick + i) is a multiple of its period.
        self._full_every = {
            u.unit_id: max(1, round(u.probe.poll_period_s / config.control_period_s))
            for u in config.units
        }
        self._last_asked = dict.fromkeys(self.unit_ids, -liveness_ticks)
        self.full_reads = 0
        self.pings = 0

    def full_read_due(self, unit: str) -> bool:
        return (self.watch.tick + self._index[unit]) % self._full_every[unit] == 0

    def _to_ask(self, unit: str) -> bool:
        return (
            self.full_read_due(unit)
            or self.watch.is_lost(self._keys[unit])
            or self.watch.tick - self._last_asked[unit] >= self.liveness_ticks
        )

    async def read(self, now: float) -> dict[str, ProbeReading]:
        """The readings of the probes due a full read (and of lost ones, whose reconnect tries
        the watch paces); liveness alone from those not asked for LIVENESS_TICKS ticks."""
        by_bus: dict[int, list[DeviceKey]] = {}
        for unit in self.unit_ids:
            if self._to_ask(unit):
                self._last_asked[unit] = self.watch.tick
                key = self._keys[unit]
                by_bus.setdefault(id(self.devices.units[unit].probe_bus), []).append(key)

        async def ask(key: DeviceKey) -> ProbeReading | None:
            probe = self.devices.units[key.unit].probe
            if self.full_read_due(key.unit) or self.watch.is_lost(key):
                self.full_reads += 1
                return await probe.read()
            self.pings += 1
            await probe.ping()
            return None

        if len(by_bus) <= 1:  # one line (or none this tick): nothing to ask at once
            parts = [await poll_bus(keys, ask, self.watch, now) for keys in by_bus.values()]
        else:
            parts = await asyncio.gather(*(poll_bus(keys, ask, self.watch, now)
                                           for keys in by_bus.values()))  # fmt: skip
        return {
            key.unit: reading
            for part in parts
            for key, reading in part.items()
            if reading is not None
        }
