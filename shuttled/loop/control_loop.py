"""The control tick: measure every unit, regulate in one kernel call, step every run, act.

Per tick there is one batched read and one batched write per bioreactor controller, a read of
the probes due this tick (each every `poll_period_s`, staggered) and a STATUS request per watched
pump (`pump_polling`), the three kinds of line asked at once, one call of the temperature kernel
(measurement checks, over-temperature trip and PID for every unit) and one call of the growth
estimator for every unit. `dt` is the process time since the last tick, from
the injected clock, so a late tick is integrated as late rather than as on time.

Device failures never escape the tick: they become NaN measurements, which the temperature
kernel turns into heater-off and flags, and the flags into alarms. A device that does not answer
is lost (SPEC §4, `device_loss`): an alarm while the loss is short, a hold beyond
`device_loss_hold_s`; a lost pump stops by itself on its watchdog (`pump_alarms`). An
over-temperature trip is an interlock (SPEC §4): it also holds a running run with a
`temperature` reason, which keeps the heater off until an operator restarts it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import structlog

from drivers.bioreactor_opcua import BioreactorReading
from drivers.clock import Clock
from drivers.interfaces import DeviceError, ProbeReading
from protocols.state_machine import RunState
from shuttled.config import DaemonConfig
from shuttled.control import growth_estimator as estimator
from shuttled.control import safety
from shuttled.devices import Devices, watchdog_ms
from shuttled.engine.actions import Action, Dispense, StopPump, UnitSnapshot
from shuttled.engine.persistence import RunPersistence
from shuttled.engine.statistics import RunStatistics
from shuttled.engine.unit_run import UnitRun
from shuttled.loop.asking import answers_in_process, ask
from shuttled.loop.cartridge_check import CartridgeCheck
from shuttled.loop.device_loss import DeviceKey, DeviceWatch
from shuttled.loop.probe_polling import ProbePoller
from shuttled.loop.pump_polling import PumpPoller
from shuttled.records.journal import Journal

log = structlog.get_logger("shuttled.control")

NO_READING = BioreactorReading(math.nan, math.nan)

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
        devices.use_clock(clock.now)
        self.runs = runs
        self.clock = clock
        self.journal = journal
        self.unit_ids = [u.unit_id for u in config.units]
        self.index = {u: i for i, u in enumerate(self.unit_ids)}
        n = len(self.unit_ids)
        # Kernel inputs and state, owned here for the daemon's lifetime. The temperature arrays
        # are views into the one block the temperature kernel takes.
        self.temperature = safety.TemperatureArrays(
            [u.temperature_gains for u in config.units],
            [safety.GuardSettings(temperature_max=u.limits.temperature_max) for u in config.units],
        )
        self.setpoint = self.temperature.setpoint
        self.measured = self.temperature.measured
        self.probe_temperature = self.temperature.second_sensor
        self.heater = self.temperature.heater
        self.flags = self.temperature.flags
        self.probe_density = np.full(n, math.nan)
        # The last good probe temperature, the trip's second sensor until the next read.
        self._probe_temperature_held = np.full(n, math.nan)
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
        self.watch = DeviceWatch(config.device_loss_hold_s)
        self.probes = ProbePoller(config, devices, self.watch)
        self.pumps = PumpPoller(
            devices, self.unit_ids, runs, self.watch, watchdog_ms(config.control_period_s),
            self._raise_alarm, self._clear_alarm,
        )  # fmt: skip
        self.cartridges = CartridgeCheck(devices, runs, self._raise_alarm, self._clear_alarm)
        self._last_tick_at = math.nan
        self._journaled_events = {u: 0 for u in self.unit_ids}
        self._sensor_unusable_since: dict[str, float] = {}  # unit -> when its reading went bad
        self._in_process = answers_in_process(devices)  # the twin's transports (`asking`)
        # Every device of a unit with its loss alarm, as `_device_losses` goes through them.
        self._loss_keys = {
            unit: [(key, key.alarm) for key in (
                DeviceKey(unit, "bioreactor"), DeviceKey(unit, "probe"),
                *(DeviceKey(unit, f"pump {name}") for name in devices.units[unit].pumps),
            )]
            for unit in self.unit_ids
        }  # fmt: skip

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

    async def _read_bioreactors(self, now: float) -> dict[str, BioreactorReading]:
        """One batched read per controller; its backoff keeps a lost one from costing time."""
        readings: dict[str, BioreactorReading] = {}
        for bioreactor in self.devices.bioreactors.values():
            keys = [DeviceKey(unit, "bioreactor") for unit in bioreactor.unit_ids]
            try:
                readings.update(await bioreactor.read_units())
            except Exception as error:  # a driver bug must not stop the tick
                if not isinstance(error, DeviceError):
                    log.exception("bioreactor driver raised outside its contract")
                for key in keys:
                    self.watch.failed(key, now, str(error) or type(error).__name__)
                continue
            for key in keys:
                self.watch.answered(key, now)
        return readings

    def _device_losses(self, now: float) -> None:
        """Loss alarms follow the watch; a loss beyond `device_loss_hold_s` holds the run."""
        lost = self.watch.lost
        for unit, keys in self._loss_keys.items():
            raised = self.alarms[unit]
            for key, alarm in keys:
                loss = lost.get(key)
                if loss is not None:
                    self._raise_alarm(unit, alarm, loss.error)
                elif alarm in raised:
                    self._clear_alarm(unit, alarm)
        for key, lost_for in self.watch.overdue(now) if lost else ():
            self.runs[key.unit].action_failed(
                now, f"device lost: {key.device} on {key.unit} for {lost_for:.0f} s"
            )

    # --- the tick -----

    async def tick(self, now: float) -> None:
        dt = now - self._last_tick_at
        if not dt > 0.0:  # first tick (NaN) or a clock that did not move
            dt = self.config.control_period_s
        self._last_tick_at = now
        self.watch.begin_tick()
        # The controllers, the probe lines and the pump lines are independent transports: they
        # are asked at once, so a tick waits for the slowest of them, not for their sum.
        readings, probes, pumps = await ask(
            self._in_process,
            self._read_bioreactors(now), self.probes.read(now), self.pumps.read(now),
        )  # fmt: skip
        self._device_losses(now)
        self.last_readings = readings
        self.cartridges.check(now, readings)  # a swapped cartridge holds before the engine steps
        self._load_measurements(readings, probes)
        safety.temperature_tick(self.temperature.block, dt)
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
        acted = False
        for unit, run, actions in planned:
            for action in actions:
                acted = True
                await self._carry_out(unit, run, action, now)
        if acted:  # and what refusing devices made of it (no action: nothing changed since)
            self._make_durable(now)
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
            if probe is not None or self.probes.full_read_due(unit):  # read (or tried) this tick
                self._probe_temperature_held[i] = probe.temperature if good_probe else math.nan
            self.probe_temperature[i] = self._probe_temperature_held[i]
            # The estimator folds in each density reading once; between reads it predicts.
            self.probe_density[i] = probe.density if good_probe else math.nan

    def _temperature_alarms(self, now: float) -> None:
        """Flags to alarms; a new over-temperature trip also holds a running run (interlock),
        and so does a temperature reading unusable for longer than `device_loss_hold_s`."""
        for unit, i in self.index.items():
            flags = int(self.flags[i])
            for bit, name, message in TEMPERATURE_ALARMS:
                if flags & bit:
                    self._raise_alarm(unit, name, message)
                else:
                    self._clear_alarm(unit, name)
            run = self.runs[unit]
            self._hold_on_a_lasting_bad_sensor(unit, run, flags, now)
            if flags & safety.FLAG_TRIPPED and run.state == RunState.RUNNING:
                run.action_failed(
                    now,
                    f"temperature trip: {self.measured[i]:.2f} °C measured, "
                    f"setpoint {self.setpoint[i]:.1f} °C",
                )

    def _hold_on_a_lasting_bad_sensor(
        self, unit: str, run: UnitRun, flags: int, now: float
    ) -> None:
        """A bad or frozen temperature reading is a sensor lost while its controller answers:
        like a lost device (SPEC §4), an alarm with the heater off while it is short, a hold
        beyond `device_loss_hold_s`. The reason starts with "temperature", so the heater stays
        off while HELD until an operator has looked (`UnitRun.temperature_setpoint`). A lost
        controller is the device watch's to hold, with its own reason."""
        unusable = flags & (safety.FLAG_BAD | safety.FLAG_STALE)
        if not unusable or self.watch.is_lost(DeviceKey(unit, "bioreactor")):
            self._sensor_unusable_since.pop(unit, None)
            return
        since = self._sensor_unusable_since.setdefault(unit, now)
        if now - since >= self.config.device_loss_hold_s and run.state == RunState.RUNNING:
            kind = "frozen" if flags & safety.FLAG_STALE else "unusable"
            run.action_failed(now, f"temperature sensor {kind} for {now - since:.0f} s")

    async def _write_heaters(self) -> None:
        for bioreactor in self.devices.bioreactors.values():
            if self.watch.lost and any(
                self.watch.is_lost(DeviceKey(u, "bioreactor")) for u in bioreactor.unit_ids
            ):
                continue  # already alarmed by the read; the controller's own failsafe applies
            outputs = {u: float(self.heater[self.index[u]]) for u in bioreactor.unit_ids}
            try:
                accepted = await bioreactor.write_heaters(outputs)
            except Exception as error:  # a driver bug must not stop the tick
                log.warning("heater write failed", endpoint=bioreactor.endpoint, error=str(error))
                continue  # the next read finds out whether the controller is lost
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
            self._clear_alarm(unit, f"PUMP_{action.pump.upper()}_COMMAND")
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
