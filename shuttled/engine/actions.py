"""What a unit's run engine sees of the instrument each tick, and what it asks the instrument to do.

The engine is pure: it takes a snapshot and returns actions. The control loop gathers snapshots
from the drivers and carries actions out, so the engine can be tested without devices, sockets or
clocks, and the same engine drives real hardware and the virtual instrument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PumpView:
    """The last STATUS of one pump; `dispensed_ul` is the pump's cumulative counter."""

    running: bool
    dispensed_ul: float
    alarms: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class UnitSnapshot:
    """One unit's measurements at one control tick. NaN means not available this tick."""

    now: float
    temperature: float
    volume_ml: float
    density: float = math.nan
    growth_rate: float = math.nan
    pumps: dict[str, PumpView] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Dispense:
    """Deliver `volume_ul` with `pump` at `rate_ul_min`; the pump stops by itself when done."""

    pump: str
    volume_ul: float
    rate_ul_min: float


@dataclass(frozen=True, slots=True)
class StopPump:
    pump: str


Action = Dispense | StopPump
