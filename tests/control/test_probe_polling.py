"""Probe polling through the real stack: each probe every `poll_period_s`, spread over ticks.

A capacitance probe costs three Modbus requests on a line it shares with the other units' probes,
and density changes over hours. The loop reads each probe every `poll_period_s` of process time
(at least once per tick when the period is shorter), unit i on its own ticks so the line's load is
even; between reads the estimator predicts and the trip keeps the last probe temperature. On the
other ticks each probe is asked for its status word alone, so a silent probe raises its alarm
within two control periods (its status word alone, when it was not asked for two ticks).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.clock import VirtualClock
from protocols.loader import load_protocol_text
from shuttled.devices import Devices
from shuttled.engine.unit_run import UnitRun
from shuttled.loop.control_loop import ControlLoop
from shuttled.records.journal import Journal
from shuttled.simulation.instrument_config import config_for_instrument, trust_each_other
from simulators.faults import Fault
from simulators.instrument import VirtualInstrument

UNITS = 4
HOLD_37 = """\
shuttle_protocol: 1
name: hold
version: 1.0.0
phases:
  - name: hold
    temperature: 37.0
    duration: 2h
"""


@dataclass
class Stack:
    clock: VirtualClock
    instrument: VirtualInstrument
    loop: ControlLoop
    # Register reads per (probe device id, first register), counted by the firmware: a full read
    # asks 2089, 2409 and 4872; a liveness read 4872 alone.
    reads: Counter[tuple[int, int]]

    def full_reads(self) -> Counter[int]:
        full = {device: n for (device, address), n in self.reads.items() if address == 2089}
        return Counter(full)

    def pings(self) -> int:
        return sum(self.reads[(d, 4872)] for d in range(1, UNITS + 1)) - sum(
            self.full_reads().values()
        )

    async def tick(self) -> None:
        await self.clock.sleep_until(self.clock.now() + self.loop.config.control_period_s)
        await self.loop.tick(self.clock.now())


async def _stack(tmp_path: Path, poll_period_s: float | None) -> AsyncIterator[Stack]:
    clock = VirtualClock()
    instrument = VirtualInstrument(UNITS, now=clock.now, seed=3)
    await instrument.start()
    clock.add_advance_listener(instrument.advance_to)
    config = config_for_instrument(instrument.endpoints(), tmp_path, 0, users_file=None)
    if poll_period_s is not None:
        period = {"poll_period_s": poll_period_s}
        units = [
            u.model_copy(update={"probe": u.probe.model_copy(update=period)}) for u in config.units
        ]
        config = config.model_copy(update={"units": units})
    daemon_config = config.to_daemon_config()
    trust_each_other(instrument.endpoints(), daemon_config)  # the device link is encrypted
    reads: Counter[tuple[int, int]] = Counter()
    for probe in instrument.probes:
        original = probe.read_registers

        def counted(
            address: int, count: int, _probe=probe, _original=original
        ) -> list[int] | None:
            reads[(_probe.device_id, address)] += 1
            return _original(address, count)

        probe.read_registers = counted  # type: ignore[method-assign]
    devices = Devices(daemon_config)
    await devices.open()
    journal = Journal(tmp_path / "journal.sqlite3")
    runs = {u.unit_id: UnitRun(u.unit_id) for u in daemon_config.units}
    loop = ControlLoop(daemon_config, devices, runs, clock, journal)
    for unit, run in runs.items():
        run.start(load_protocol_text(HOLD_37), {}, f"R-{unit}", clock.now(), "test")
    yield Stack(clock, instrument, loop, reads)
    await devices.close()
    journal.close()
    await instrument.stop()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async for built in _stack(tmp_path, None):
        yield built


@pytest.fixture
async def every_tick(tmp_path: Path) -> AsyncIterator[Stack]:
    async for built in _stack(tmp_path, 1.0):
        yield built


async def test_each_probe_is_read_once_per_period_and_the_reads_are_spread(stack: Stack) -> None:
    per_tick = []
    asked: dict[int, list[int]] = {device: [] for device in range(1, UNITS + 1)}
    for tick in range(24):  # two minutes at 5 s: four 30 s periods
        before = sum(stack.full_reads().values())
        status_reads = {d: stack.reads[(d, 4872)] for d in asked}
        await stack.tick()
        per_tick.append(sum(stack.full_reads().values()) - before)
        for device in asked:  # every full read and every liveness read asks the status word
            if stack.reads[(device, 4872)] > status_reads[device]:
                asked[device].append(tick)
    assert sorted(stack.full_reads().values()) == [4] * UNITS  # four full reads of each probe
    assert max(per_tick) == 1  # never the whole line at once
    # Every probe hears from the daemon at least every second tick, and no more often: in
    # between full reads, the status word alone.
    for ticks in asked.values():
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert ticks[0] <= 1 and max(gaps) <= 2 and min(gaps) >= 1
    assert stack.pings() == sum(len(t) for t in asked.values()) - 4 * UNITS
    assert stack.pings() < 24 * UNITS / 2


async def test_between_reads_the_trip_keeps_the_probe_temperature_and_the_estimator_predicts(
    stack: Stack,
) -> None:
    for _ in range(60):  # five minutes: each probe read ten times, the estimates settled
        await stack.tick()
    for _ in range(12):
        await stack.tick()
        assert all(math.isfinite(t) for t in stack.loop.probe_temperature)
        fresh = [not math.isnan(d) for d in stack.loop.probe_density]
        assert sum(fresh) <= 1  # only the probe read this tick brings a density
        assert all(math.isfinite(d) for d in stack.loop.density)


async def test_a_period_shorter_than_the_control_period_reads_every_tick(
    every_tick: Stack,
) -> None:
    for _ in range(6):
        await every_tick.tick()
    assert sorted(every_tick.full_reads().values()) == [6] * UNITS
    assert every_tick.pings() == 0


async def test_a_probe_that_failed_its_read_gives_the_trip_no_old_temperature(
    stack: Stack,
) -> None:
    for _ in range(12):
        await stack.tick()
    await stack.instrument.inject(Fault("serial_cut", bus="probes", duration_s=600.0))
    for _ in range(7):  # every probe has had its turn on the dead line
        await stack.tick()
    assert all(math.isnan(t) for t in stack.loop.probe_temperature)
    assert all("PROBE_LOST" in alarms for alarms in stack.loop.alarms.values())


async def test_a_silent_probe_raises_its_alarm_within_two_control_periods(stack: Stack) -> None:
    for _ in range(13):  # settled, and on a tick where just one probe is due a full read
        await stack.tick()
    await stack.instrument.inject(Fault("serial_cut", bus="probes", duration_s=12.0))
    for _ in range(2):
        await stack.tick()
    assert all("PROBE_LOST" in alarms for alarms in stack.loop.alarms.values())
    before = sum(stack.full_reads().values())
    for _ in range(4):  # the line is back; the watch's reconnect try reads lost probes fully
        await stack.tick()
    assert not any("PROBE_LOST" in alarms for alarms in stack.loop.alarms.values())
    assert sum(stack.full_reads().values()) >= before + UNITS
