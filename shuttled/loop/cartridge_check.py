"""The cartridge check of every tick (SPEC §12, chain of identity).

A run bound to a cartridge must only ever act on that cartridge: if the controller reports
another one in the unit (taken out, swapped for another patient's), the run is held before the
engine steps this tick — so no pump command follows — with the reason
`cartridge changed: <old> → <new>`, and the critical alarm CARTRIDGE_CHANGED stands for as long
as the wrong cartridge (or none) is in. When the original cartridge is back the alarm clears;
the run stays held until an operator restarts it (a person must have looked). A Restart while
the wrong cartridge is in is held again at the next tick.

An unknown cartridge (the controller lost, or one that does not report cartridges) changes
nothing here: a lost controller is the device watch's to alarm and hold. Temperature control
goes on while held, whatever is in the unit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from drivers.bioreactor_opcua import BioreactorReading
from protocols.state_machine import RunState
from shuttled.devices import Devices
from shuttled.engine.unit_run import UnitRun

CARTRIDGE_CHANGED = "CARTRIDGE_CHANGED"
HOLD_PREFIX = "cartridge changed"


def changed_reason(bound: str, installed: str) -> str:
    """The hold reason and alarm message: `cartridge changed: CRT-U01 → CRT-0099`."""
    return f"{HOLD_PREFIX}: {bound} → {installed or '(none)'}"


class CartridgeCheck:
    def __init__(
        self,
        devices: Devices,
        runs: Mapping[str, UnitRun],
        raise_alarm: Callable[[str, str, str], None],
        clear_alarm: Callable[[str, str], None],
    ) -> None:
        self.devices = devices
        self.runs = runs
        self.raise_alarm = raise_alarm
        self.clear_alarm = clear_alarm

    def check(self, now: float, readings: Mapping[str, BioreactorReading]) -> None:
        """Record what each unit's controller reports installed, then hold a run whose
        cartridge is not in its unit."""
        for unit, run in self.runs.items():
            reading = readings.get(unit)
            installed = reading.cartridge if reading is not None else None
            self.devices.cartridges[unit] = installed
            self._check(unit, run, installed, now)

    def _check(self, unit: str, run: UnitRun, installed: str | None, now: float) -> None:
        bound = run.cartridge_id
        if bound is None or not run.is_active:
            self.clear_alarm(unit, CARTRIDGE_CHANGED)
            return
        if installed is None:
            return  # not known this tick: neither proof of a swap nor of its end
        if installed == bound:
            self.clear_alarm(unit, CARTRIDGE_CHANGED)
            return
        reason = changed_reason(bound, installed)
        self.raise_alarm(unit, CARTRIDGE_CHANGED, reason)
        if run.state == RunState.RUNNING:
            run.action_failed(now, reason)
