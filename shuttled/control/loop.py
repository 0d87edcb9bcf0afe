"""The control tick: measure every unit, regulate in one kernel call, step every run, act.

Per tick there is one batched read and one batched write per bioreactor controller, one request
per probe and per watched pump on each serial bus (buses in parallel), and one call of the
temperature kernel for every unit. Device failures never escape the tick: they become NaN
measurements (the heater of that unit goes off) and alarms.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import numpy as np
import structlog

from drivers.bioreactor_opcua import BioreactorReading
from drivers.interfaces import DeviceError, ProbeReading
from protocols.state_machine import RunState
from shuttled.clock import Clock
from shuttled.config import DaemonConfig
from shuttled.control.density_filter import DensityEstimate
from shuttled.control.temperature import STATE_COLUMNS, temperature_pid
from shuttled.devices import Devices
from shuttled.engine.actions import Action, Dispense, PumpView, StopPump, UnitSnapshot
from shuttled.engine.statistics import RunStatistics
from shuttled.engine.unit_run import UnitRun
from shuttled.journal import Journal

log = structlog.get_logger("shuttled.control")

NO_READING = BioreactorReading(math.nan, math.nan, math.nan)


class ControlLoop:
    def __init__(
        self,
        config: DaemonConfig,
        devices: Devices,
        runs: dict[str, UnitRun],
        clock: Clock,
        journal: Journal,
    ) -> None:
        self.config = config
        self.devices = devices
        self.runs = runs
        self.clock = clock
        self.journal = journal
        self.unit_ids = [u.unit_id for u in config.units]
        n = len(self.unit_ids)
        self.setpoint = np.zeros(n)
        self.measured = np.full(n, math.nan)
        self.enabled = np.zeros(n, dtype=np.bool_)
        self.gains = np.stack([u.temperature_gains.as_row() for u in config.units])
        self.pid_state = np.zeros((n, STATE_COLUMNS))
        self.heater = np.zeros(n)
        self.estimates = {u: DensityEstimate() for u in self.unit_ids}
        self.statistics = {u: RunStatistics() for u in self.unit_ids}
        self.alarms: dict[str, dict[str, str]] = {u: {} for u in self.unit_ids}
        self.alarm_history: dict[str, list[str]] = {u: [] for u in self.unit_ids}
        self.last_readings: dict[str, BioreactorReading] = {}
        self.ticks = 0
        self._journaled_events = {u: 0 for u in self.unit_ids}

    # --- alarms -----

    def _raise_alarm(self, unit: str, name: str, message: str) -> None:
        if name not in self.alarms[unit]:
            self.alarms[unit][name] = message
            self.alarm_history[unit].append(name)
            log.warning("alarm raised", unit=unit, alarm=name, message=message)

    def _clear_alarm(self, unit: str, name: str) -> None:
        if self.alarms[unit].pop(name, None) is not None:
            log.info("alarm cleared", unit=unit, alarm=name)

    # --- measurements -----

    async def _read_bioreactors(self) -> dict[str, BioreactorReading]:
        readings: dict[str, BioreactorReading] = {}
        for bioreactor in self.devices.bioreactors.values():
            try:
                readings.update(await bioreactor.read_units())
                for unit in bioreactor.unit_ids:
                    self._clear_alarm(unit, "BIOREACTOR_LOST")
            except DeviceError as error:
                for unit in bioreactor.unit_ids:
                    self._raise_alarm(unit, "BIOREACTOR_LOST", str(error))
        return readings

    async def _read_probes(self) -> dict[str, ProbeReading]:
        by_bus: dict[int, list[str]] = {}
        for unit in self.unit_ids:
            by_bus.setdefault(id(self.devices.units[unit].probe_bus), []).append(unit)

        async def read_bus(units: list[str]) -> dict[str, ProbeReading]:
            results = {}
            for unit in units:
                try:
                    results[unit] = await self.devices.units[unit].probe.read()
                    self._clear_alarm(unit, "PROBE_LOST")
                except DeviceError as error:
                    self._raise_alarm(unit, "PROBE_LOST", str(error))
            return results

        merged: dict[str, ProbeReading] = {}
        for part in await asyncio.gather(*(read_bus(units) for units in by_bus.values())):
            merged.update(part)
        return merged

    async def _read_watched_pumps(self) -> dict[str, dict[str, PumpView]]:
        views: dict[str, dict[str, PumpView]] = {u: {} for u in self.unit_ids}
        for unit in self.unit_ids:
            for name in self._watched_pumps(self.runs[unit]):
                pump = self.devices.units[unit].pumps.get(name)
                if pump is None:
                    continue
                try:
                    status = await pump.status()
                except DeviceError as error:
                    self._raise_alarm(unit, f"PUMP_{name.upper()}_LOST", str(error))
                    continue
                self._clear_alarm(unit, f"PUMP_{name.upper()}_LOST")
                views[unit][name] = PumpView(
                    status.state == "RUN", status.dispensed_ul, status.alarms
                )
        return views

    @staticmethod
    def _watched_pumps(run: UnitRun) -> set[str]:
        """Only pumps the engine is waiting on are polled every tick (the bus is shared)."""
        if run.transfer is not None:
            return {run.transfer.pump}
        phase = run.phase
        if (
            run.state == RunState.RUNNING
            and phase is not None
            and run.step_index < len(phase.steps)
        ):
            return {phase.steps[run.step_index].pump}
        return set()

    # --- the tick -----

    async def tick(self, now: float) -> None:
        readings = await self._read_bioreactors()
        probes = await self._read_probes()
        pumps = await self._read_watched_pumps()
        self.last_readings = readings
        await self._regulate_temperature(readings)

        for unit in self.unit_ids:
            run = self.runs[unit]
            reading = readings.get(unit, NO_READING)
            estimate = self.estimates[unit]
            probe = probes.get(unit)
            good_density = probe.density if probe is not None and probe.quality == "good" else None
            estimate.update(now, good_density, reading.volume_ml)
            snapshot = UnitSnapshot(
                now,
                reading.temperature,
                reading.volume_ml,
                estimate.density,
                estimate.growth_rate_per_h,
                pumps[unit],
            )
            self._update_statistics(run, snapshot)
            for action in run.step(snapshot):
                await self._carry_out(unit, run, action, now)
            self._journal_new_events(unit, run)
        self.ticks += 1

    async def _regulate_temperature(self, readings: dict[str, BioreactorReading]) -> None:
        for i, unit in enumerate(self.unit_ids):
            setpoint = self.runs[unit].temperature_setpoint
            measured = readings.get(unit, NO_READING).temperature
            self.setpoint[i] = setpoint if setpoint is not None else 0.0
            self.measured[i] = measured
            self.enabled[i] = setpoint is not None and not math.isnan(measured)
        temperature_pid(
            self.setpoint,
            self.measured,
            self.enabled,
            self.gains,
            self.pid_state,
            self.config.control_period_s,
            self.heater,
        )
        for bioreactor in self.devices.bioreactors.values():
            outputs = {u: float(self.heater[self.unit_ids.index(u)]) for u in bioreactor.unit_ids}
            try:
                accepted = await bioreactor.write_heaters(outputs)
            except DeviceError:
                continue  # already alarmed by the read; the controller's own failsafe applies
            for unit, ok in accepted.items():
                if not ok:
                    self._raise_alarm(unit, "HEATER_WRITE_REFUSED", "controller refused output")

    def _update_statistics(self, run: UnitRun, snapshot: UnitSnapshot) -> None:
        if run.state not in (RunState.RUNNING, RunState.HELD, RunState.HOLDING):
            return
        stats = self.statistics[run.unit_id]
        stats.add_temperature(run.temperature_setpoint, snapshot.temperature)
        phase = run.phase
        if phase is not None and phase.density_control is not None and run.protocol is not None:
            stats.add_density(
                snapshot.density, run.protocol.phase_max_density(phase, run.parameters)
            )

    async def _carry_out(self, unit: str, run: UnitRun, action: Action, now: float) -> None:
        pump = self.devices.units[unit].pumps.get(action.pump)
        try:
            if pump is None:
                raise DeviceError(f"unit {unit} has no pump '{action.pump}'")
            if isinstance(action, Dispense):
                if not self._pump_adds(unit, action.pump):
                    reading = self.last_readings.get(unit, NO_READING)
                    self.statistics[unit].add_harvest(
                        self.estimates[unit].density,
                        min(action.volume_ul / 1000.0, reading.volume_ml),
                    )
                await pump.dispense(action.volume_ul, action.rate_ul_min)
            elif isinstance(action, StopPump):
                await pump.stop()
        except DeviceError as error:
            self._raise_alarm(unit, f"PUMP_{action.pump.upper()}_COMMAND", str(error))
            run.action_failed(now, f"pump {action.pump}: {error}")

    def _pump_adds(self, unit: str, pump: str) -> bool:
        config = next(u for u in self.config.units if u.unit_id == unit)
        return config.pumps[pump].into_vessel

    def _journal_new_events(self, unit: str, run: UnitRun) -> None:
        start = self._journaled_events[unit]
        if run.run_id is not None and len(run.events) > start:
            self.journal.append_events(run.run_id, unit, run.events[start:])
        self._journaled_events[unit] = len(run.events)

    def reset_event_cursor(self, unit: str) -> None:
        self._journaled_events[unit] = 0

    async def run_until(
        self, done: Callable[[], bool], on_tick: Callable[[], None] | None = None
    ) -> None:
        """Tick every control period of process time until `done()` says the work has ended."""
        period = self.config.control_period_s
        next_tick = self.clock.now()
        while not done():
            next_tick += period
            await self.clock.sleep_until(next_tick)
            await self.tick(self.clock.now())
            if on_tick is not None:
                on_tick()
