"""The control tick: measure every unit, regulate in one kernel call, step every run, act.

Per tick there is one batched read and one batched write per bioreactor controller, one request
per probe and per watched pump on each serial bus (buses in parallel), one call of the
temperature kernel (measurement checks, over-temperature trip and PID for every unit) and one
call of the growth estimator for every unit. `dt` is the process time since the last tick, from
the injected clock, so a late tick is integrated as late rather than as on time.

Device failures never escape the tick: they become NaN measurements, which the temperature
kernel turns into heater-off and flags, and the flags into alarms. An over-temperature trip is an
interlock (SPEC §4): it also holds a running run with a `temperature` reason, which keeps the
heater off until an operator restarts it.
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
from shuttled.control import growth_estimator as estimator
from shuttled.control import safety
from shuttled.control.temperature import STATE_COLUMNS
from shuttled.devices import Devices
from shuttled.engine.actions import Action, Dispense, PumpView, StopPump, UnitSnapshot
from shuttled.engine.persistence import RunPersistence
from shuttled.engine.statistics import RunStatistics
from shuttled.engine.unit_run import UnitRun
from shuttled.journal import Journal

log = structlog.get_logger("shuttled.control")

NO_READING = BioreactorReading(math.nan, math.nan, math.nan)

TEMPERATURE_ALARMS = (
    (safety.FLAG_BAD, "TEMPERATURE_SENSOR_BAD", "temperature reading unusable: heater off"),
    (safety.FLAG_STALE, "TEMPERATURE_SENSOR_STALE", "temperature reading frozen: heater off"),
    (safety.FLAG_TRIPPED, "OVER_TEMPERATURE", "over-temperature trip: heater off"),
)


class UnitEstimate:
    """One unit's view of the estimator arrays (what the summary and operators read)."""

    def __init__(self, loop: ControlLoop, index: int) -> None:
        self._loop = loop
        self._index = index

    @property
    def density(self) -> float:
        return float(self._loop.density[self._index])

    @property
    def growth_rate_per_h(self) -> float:
        return float(self._loop.growth_rate[self._index])

    @property
    def rejected(self) -> int:
        return int(self._loop.estimator_state[self._index, estimator.REJECTED_TOTAL])


class ControlLoop:
    def __init__(
        self,
        config: DaemonConfig,
        devices: Devices,
        runs: dict[str, UnitRun],
        clock: Clock,
        journal: Journal,
        persistence: RunPersistence | None = None,
    ) -> None:
        self.config = config
        self.persistence = persistence or RunPersistence(journal)
        self.devices = devices
        self.runs = runs
        self.clock = clock
        self.journal = journal
        self.unit_ids = [u.unit_id for u in config.units]
        self.index = {u: i for i, u in enumerate(self.unit_ids)}
        n = len(self.unit_ids)
        # Kernel inputs and state, owned here for the daemon's lifetime.
        self.setpoint = np.full(n, math.nan)
        self.measured = np.full(n, math.nan)
        self.probe_temperature = np.full(n, math.nan)
        self.gains = np.stack([u.temperature_gains.as_row() for u in config.units])
        self.guard_settings = np.stack(
            [
                safety.GuardSettings(temperature_max=u.limits.temperature_max).as_row()
                for u in config.units
            ]
        )
        self.pid_state = np.zeros((n, STATE_COLUMNS))
        self.guard_state = safety.new_guard_state(n)
        self.heater = np.zeros(n)
        self.flags = np.zeros(n, dtype=np.int64)
        self.probe_density = np.full(n, math.nan)
        self.volume = np.full(n, math.nan)
        self.estimator_settings = np.stack(
            [estimator.EstimatorSettings().as_row() for _ in config.units]
        )
        self.estimator_state = estimator.new_estimator_state(n)
        self.density = np.full(n, math.nan)
        self.growth_rate = np.full(n, math.nan)
        self.estimates = {u: UnitEstimate(self, i) for u, i in self.index.items()}
        self.statistics = {u: RunStatistics() for u in self.unit_ids}
        self.alarms: dict[str, dict[str, str]] = {u: {} for u in self.unit_ids}
        self.alarm_history: dict[str, list[str]] = {u: [] for u in self.unit_ids}
        self.last_readings: dict[str, BioreactorReading] = {}
        self.ticks = 0
        self._last_tick_at = math.nan
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
        dt = now - self._last_tick_at
        if not dt > 0.0:  # first tick (NaN) or a clock that did not move
            dt = self.config.control_period_s
        self._last_tick_at = now
        readings = await self._read_bioreactors()
        probes = await self._read_probes()
        pumps = await self._read_watched_pumps()
        self.last_readings = readings
        self._load_measurements(readings, probes)
        safety.temperature_tick(
            self.setpoint,
            self.measured,
            self.probe_temperature,
            self.gains,
            self.guard_settings,
            self.pid_state,
            self.guard_state,
            dt,
            self.heater,
            self.flags,
        )
        estimator.growth_estimator(
            self.probe_density,
            self.volume,
            self.estimator_settings,
            self.estimator_state,
            dt,
            self.density,
            self.growth_rate,
        )
        self._temperature_alarms(now)
        await self._write_heaters()

        planned: list[tuple[str, UnitRun, list[Action]]] = []
        for unit, i in self.index.items():
            run = self.runs[unit]
            reading = readings.get(unit, NO_READING)
            snapshot = UnitSnapshot(
                now,
                reading.temperature,
                reading.volume_ml,
                float(self.density[i]),
                float(self.growth_rate[i]),
                pumps[unit],
            )
            self._update_statistics(run, snapshot)
            planned.append((unit, run, run.step(snapshot)))
        self._make_durable(now)  # fsync before acting: a restart must know what was commanded
        for unit, run, actions in planned:
            for action in actions:
                await self._carry_out(unit, run, action, now)
        self._make_durable(now)  # and what refusing devices made of it
        self.ticks += 1

    def _make_durable(self, now: float) -> None:
        for unit in self.unit_ids:
            self._journal_new_events(unit, self.runs[unit])
        self.persistence.persist(list(self.runs.values()), now)

    def _load_measurements(
        self, readings: dict[str, BioreactorReading], probes: dict[str, ProbeReading]
    ) -> None:
        """Copy this tick's setpoints and readings into the kernels' input arrays (NaN: none)."""
        for unit, i in self.index.items():
            setpoint = self.runs[unit].temperature_setpoint
            reading = readings.get(unit, NO_READING)
            probe = probes.get(unit)
            good_probe = probe is not None and probe.quality == "good"
            self.setpoint[i] = math.nan if setpoint is None else setpoint
            self.measured[i] = reading.temperature
            self.volume[i] = reading.volume_ml
            self.probe_temperature[i] = probe.temperature if good_probe else math.nan
            self.probe_density[i] = probe.density if good_probe else math.nan

    def _temperature_alarms(self, now: float) -> None:
        """Flags to alarms; a new over-temperature trip also holds a running run (interlock)."""
        for unit, i in self.index.items():
            flags = int(self.flags[i])
            for bit, name, message in TEMPERATURE_ALARMS:
                if flags & bit:
                    self._raise_alarm(unit, name, message)
                else:
                    self._clear_alarm(unit, name)
            run = self.runs[unit]
            if flags & safety.FLAG_TRIPPED and run.state == RunState.RUNNING:
                run.action_failed(
                    now,
                    f"temperature trip: {self.measured[i]:.2f} °C measured, "
                    f"setpoint {self.setpoint[i]:.1f} °C",
                )

    async def _write_heaters(self) -> None:
        for bioreactor in self.devices.bioreactors.values():
            outputs = {u: float(self.heater[self.index[u]]) for u in bioreactor.unit_ids}
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
                await pump.dispense(action.volume_ul, self._bounded_rate(unit, action))
            elif isinstance(action, StopPump):
                await pump.stop()
        except DeviceError as error:
            self._raise_alarm(unit, f"PUMP_{action.pump.upper()}_COMMAND", str(error))
            run.action_failed(now, f"pump {action.pump}: {error}")

    def _bounded_rate(self, unit: str, action: Dispense) -> float:
        """The engine's rate, never above what the pump's tubing and motor can do."""
        config = self.config.units[self.index[unit]]
        return min(action.rate_ul_min, config.pumps[action.pump].max_rate_ul_min)

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
