"""The temperature tick with its guards: measurement checks and a hard over-temperature trip.

A PID trusts its measurement; life support must not. Before the PID runs, every unit's reading is
checked, and a unit whose reading is bad (NaN, outside what a liquid in this vessel can be, or a
jump faster than its heat capacity allows) or stale (the same value bit for bit for minutes: a
frozen transmitter) gets its heater off for that tick, with a flag the loop turns into an alarm.

The over-temperature trip does not use the PID at all, and also looks at a second, independent
sensor (the density probe's temperature) so a stuck primary sensor cannot hide overheating. It
trips when the hottest trustworthy reading stays above the setpoint + `trip_margin_k` or above
the unit's `temperature_max` for `trip_confirm_samples` samples (one noisy sample is not a
fault), forces the heater to 0 and stays latched until the reading is `reset_hysteresis_k` below
the threshold. After a setpoint step down, the setpoint-relative threshold is armed only once the
liquid has cooled to within the margin, so lowering a setpoint never trips.

`temperature_tick` is everything the temperature control does per tick, for every unit, in one
numba call; `temperature_tick.py_func` is its bit-identical reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from shuttled.control.temperature import disable_unit, pid_unit

# Settings columns.
(
    TEMPERATURE_MAX_C,
    TRIP_MARGIN_K,
    RESET_HYSTERESIS_K,
    TRIP_CONFIRM_SAMPLES,
    STUCK_SAMPLES,
    PLAUSIBLE_MIN_C,
    PLAUSIBLE_MAX_C,
    MAX_SLEW_K_S,
) = range(8)
SETTINGS_COLUMNS = 8

# Guard state columns.
LAST_GOOD, LAST_RAW, REPEATS, REJECTS, OVER_COUNT, TRIPPED, ARMED_SETPOINT = range(7)
GUARD_COLUMNS = 7

# Flag bits of the `flags` output.
FLAG_BAD = 1
FLAG_STALE = 2
FLAG_TRIPPED = 4

# After this many consecutive step rejections the new level is believed: a sensor that reports
# the same jump three times running is reporting the liquid, not a glitch.
REBASE_AFTER_REJECTS = 3


@dataclass(frozen=True)
class GuardSettings:
    """Per-unit guard limits; `temperature_max` comes from the unit's configured limits.

    max_slew_k_s 1 K/s: the fastest real change at the sensor is a 50 mL bolus of 4 °C medium
    into 100 mL, ≈ 0.4 K/s through the 20 s sensor lag. stuck_samples 24: two minutes of a
    bit-identical double from a sensor with 0.02 K of noise does not happen while it is alive.
    """

    temperature_max: float = 40.0
    trip_margin_k: float = 2.0
    reset_hysteresis_k: float = 1.0
    trip_confirm_samples: int = 2
    stuck_samples: int = 24
    plausible_min_c: float = -5.0
    plausible_max_c: float = 80.0
    max_slew_k_s: float = 1.0

    def as_row(self) -> np.ndarray:
        return np.array(
            [
                self.temperature_max,
                self.trip_margin_k,
                self.reset_hysteresis_k,
                float(self.trip_confirm_samples),
                float(self.stuck_samples),
                self.plausible_min_c,
                self.plausible_max_c,
                self.max_slew_k_s,
            ],
            dtype=np.float64,
        )


def new_guard_state(units: int) -> np.ndarray:
    """Guard state before the first reading: no history, nothing tripped, nothing armed."""
    state = np.zeros((units, GUARD_COLUMNS))
    state[:, LAST_GOOD] = math.nan
    state[:, LAST_RAW] = math.nan
    state[:, ARMED_SETPOINT] = math.nan
    return state


@njit(cache=True, error_model="numpy", inline="always")
def check_measurement(i: int, t: float, settings: np.ndarray, guard: np.ndarray, dt: float) -> int:
    """FLAG_BAD / FLAG_STALE for unit i's primary reading `t` (0 when it can be trusted)."""
    if t != t or t < settings[i, PLAUSIBLE_MIN_C] or t > settings[i, PLAUSIBLE_MAX_C]:
        return FLAG_BAD
    flags = 0
    if t == guard[i, LAST_RAW]:
        guard[i, REPEATS] += 1.0
    else:
        guard[i, REPEATS] = 0.0
    guard[i, LAST_RAW] = t
    if guard[i, REPEATS] + 1.0 >= settings[i, STUCK_SAMPLES]:
        flags |= FLAG_STALE
    last = guard[i, LAST_GOOD]
    jumped = last == last and abs(t - last) > settings[i, MAX_SLEW_K_S] * dt
    if jumped and guard[i, REJECTS] < REBASE_AFTER_REJECTS:
        guard[i, REJECTS] += 1.0
        return flags | FLAG_BAD
    guard[i, REJECTS] = 0.0
    guard[i, LAST_GOOD] = t
    return flags


@njit(cache=True, error_model="numpy", inline="always")
def over_temperature_trip(
    i: int, setpoint: float, hottest: float, settings: np.ndarray, guard: np.ndarray
) -> bool:
    """Update unit i's latched trip from the hottest trustworthy reading; True while tripped."""
    threshold = settings[i, TEMPERATURE_MAX_C]
    margin = settings[i, TRIP_MARGIN_K]
    if setpoint == setpoint:
        if guard[i, ARMED_SETPOINT] != setpoint and hottest <= setpoint + margin:
            guard[i, ARMED_SETPOINT] = setpoint
        if guard[i, ARMED_SETPOINT] == setpoint:
            threshold = min(threshold, setpoint + margin)
    else:
        guard[i, ARMED_SETPOINT] = math.nan
    if hottest > threshold:
        guard[i, OVER_COUNT] += 1.0
    else:
        guard[i, OVER_COUNT] = 0.0
    if guard[i, OVER_COUNT] >= settings[i, TRIP_CONFIRM_SAMPLES]:
        guard[i, TRIPPED] = 1.0
    elif guard[i, TRIPPED] != 0.0 and hottest <= threshold - settings[i, RESET_HYSTERESIS_K]:
        guard[i, TRIPPED] = 0.0
    return guard[i, TRIPPED] != 0.0


@njit(cache=True, error_model="numpy")
def temperature_tick(
    setpoint: np.ndarray,
    measured: np.ndarray,
    second_sensor: np.ndarray,
    gains: np.ndarray,
    settings: np.ndarray,
    pid_state: np.ndarray,
    guard: np.ndarray,
    dt: float,
    heater: np.ndarray,
    flags: np.ndarray,
) -> None:
    """Check, trip and regulate every unit: heater outputs in % and per-unit flag bits.

    `setpoint` NaN means the unit is not under temperature control (heater off, not an alarm);
    `second_sensor` NaN means no independent reading this tick. `dt` must be > 0.
    """
    for i in range(setpoint.shape[0]):
        t = measured[i]
        unit_flags = check_measurement(i, t, settings, guard, dt)
        hottest = t if unit_flags == 0 else math.nan
        backup = second_sensor[i]
        if (
            backup == backup
            and settings[i, PLAUSIBLE_MIN_C] <= backup <= settings[i, PLAUSIBLE_MAX_C]
            and not backup <= hottest
        ):
            hottest = backup
        if over_temperature_trip(i, setpoint[i], hottest, settings, guard):
            unit_flags |= FLAG_TRIPPED
        flags[i] = unit_flags
        if unit_flags != 0 or setpoint[i] != setpoint[i]:
            disable_unit(pid_state, i)
            heater[i] = 0.0
        else:
            heater[i] = pid_unit(i, setpoint[i], t, gains, pid_state, dt)
