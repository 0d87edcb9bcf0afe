"""Which pumps the control tick asks for STATUS, and what it does with the answers.

A pump line is shared by many modules, so only the pumps the engine is waiting on are polled
every tick; every pump is surveyed every `SURVEY_EVERY_TICKS` so latched alarms are cleared before
a transfer needs the pump and a pump that vanished is noticed while it is idle. Each answer goes
through the alarm policy of `pump_alarms`, and a pump that may have forgotten its watchdog (back
from a loss, or its counter restarted: a power cycle) has it armed again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from drivers.interfaces import PumpStatus
from protocols.model import Transfer
from protocols.state_machine import RunState
from shuttled.devices import Devices
from shuttled.engine.actions import PumpView
from shuttled.engine.unit_run import UnitRun
from shuttled.loop.device_loss import DeviceKey, DeviceWatch, poll_bus
from shuttled.loop.pump_alarms import PumpUnavailable, mid_transfer, settle_alarms

# Every pump, also idle ones, is asked for its STATUS this often.
SURVEY_EVERY_TICKS = 12

AlarmSink = Callable[[str, str, str], None]  # (unit, alarm, message)


def watched_pumps(run: UnitRun) -> set[str]:
    """The pumps the engine is waiting on: the open transfer's, or the next step's."""
    if run.transfer is not None:
        return {run.transfer.pump}
    phase = run.phase
    if run.state == RunState.RUNNING and phase is not None and run.step_index < len(phase.steps):
        step = phase.steps[run.step_index]
        return {step.pump} if isinstance(step, Transfer) else set()  # an operator step: none
    return set()


class PumpPoller:
    def __init__(
        self,
        devices: Devices,
        unit_ids: list[str],
        runs: dict[str, UnitRun],
        watch: DeviceWatch,
        watchdog_ms: int,
        raise_alarm: AlarmSink,
        clear_alarm: Callable[[str, str], None],
    ) -> None:
        self.devices = devices
        self.unit_ids = unit_ids  # configuration order: the order pumps are asked in
        self.runs = runs
        self.watch = watch
        self.watchdog_ms = watchdog_ms
        self._raise_alarm = raise_alarm
        self._clear_alarm = clear_alarm
        self._counters: dict[DeviceKey, float] = {}
        self._keys = {
            unit: {name: DeviceKey(unit, f"pump {name}") for name in devices.units[unit].pumps}
            for unit in unit_ids
        }

    async def read(self, now: float) -> dict[str, dict[str, PumpView]]:
        """STATUS of the pumps the engine waits on, of lost ones due a probe, of all on a survey
        tick; one pump at a time per line, lines in parallel."""
        survey = self.watch.tick % SURVEY_EVERY_TICKS == 1
        by_bus: dict[int, list[DeviceKey]] = {}
        for unit in self.unit_ids:
            watched = watched_pumps(self.runs[unit])
            keys = self._keys[unit]
            for name, pump in self.devices.units[unit].pumps.items():
                key = keys[name]
                if survey or name in watched or self.watch.is_lost(key):
                    by_bus.setdefault(id(pump.bus), []).append(key)
        if len(by_bus) <= 1:  # one line (or none this tick): nothing to ask at once
            parts = [await poll_bus(keys, self._status, self.watch, now)
                     for keys in by_bus.values()]  # fmt: skip
        else:
            parts = await asyncio.gather(
                *(poll_bus(keys, self._status, self.watch, now) for keys in by_bus.values())
            )
        views: dict[str, dict[str, PumpView]] = {u: {} for u in self.unit_ids}
        for part in parts:
            for key, status in part.items():
                views[key.unit][key.device.removeprefix("pump ")] = PumpView(
                    status.state == "RUN", status.dispensed_ul, status.alarms
                )
        return views

    async def _status(self, key: DeviceKey) -> PumpStatus:
        """One pump's STATUS after the alarm policy (`pump_alarms`)."""
        name = key.device.removeprefix("pump ")
        pump = self.devices.units[key.unit].pumps[name]
        status = await pump.status()
        last = self._counters.get(key)
        if self.watch.is_lost(key) or (last is not None and status.dispensed_ul < last):
            await pump.set_watchdog(self.watchdog_ms)
        alarm = f"PUMP_{name.upper()}_ALARM"
        run = self.runs[key.unit]
        try:
            check = await settle_alarms(
                pump, status, mid=mid_transfer(run, name), wdog_ms=self.watchdog_ms
            )
        except PumpUnavailable as unavailable:
            self._raise_alarm(key.unit, alarm, str(unavailable))
            if name in watched_pumps(run):
                raise  # the run needs it: counts as lost, and holds the run if it lasts
            return status  # an idle pump with an open cover does not hold the run
        if check.cleared:
            self._raise_alarm(key.unit, alarm, ",".join(sorted(check.cleared)))
            self._clear_alarm(key.unit, alarm)
        elif check.status.alarms:
            self._raise_alarm(key.unit, alarm, ",".join(sorted(check.status.alarms)))
        self._counters[key] = check.status.dispensed_ul
        return check.status
