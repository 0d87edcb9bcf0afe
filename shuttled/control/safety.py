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
numba call; `temperature_tick.py_func` is its bit-identical reference, Python all the way down:
its helpers are `register_jitable`, not `njit`, compiled into the kernel (why: temperature.py).

Why the data is laid out as it is (measured on a 2-core AMD EPYC, see the README): a numba call
costs ~80 ns per array argument to type-check and unbox, more than the whole work for 16 units,
so all inputs, outputs, configuration and state of the tick live in one float64 block
(`TemperatureArrays`), one row per quantity and one column per unit. Rows make every per-unit
access contiguous, which is what lets LLVM vectorize the tick across units (8 per AVX-512
instruction); for that the loop body reads each row once and writes it at most once, and calls
nothing but inlined scalar functions. What is left at 1024 units is streaming the ~280 KB block
through the L2 cache once per tick.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import llvmlite.binding
import numpy as np
from numba import njit
from numba.extending import register_jitable

from shuttled.control import temperature as pid
from shuttled.control.temperature import at_least, at_most, feed_forward_duty, pid_law

# The rows of the block are disjoint, but LLVM cannot prove it (their distance is a multiple of
# the runtime width), so the vectorized loop is guarded by one overlap check per pair of rows
# that may conflict: ~450 here, beyond LLVM's default limit of 128, at which it silently keeps
# the scalar loop (3x slower at 1024 units). The checks cost ~0.1 µs per call. The option is
# process-wide; it only lets the vectorizer accept more checks, it does not change results.
llvmlite.binding.set_option("shuttled", "-vectorize-memory-check-threshold=1024")

# Settings columns (rows of `TemperatureArrays.settings`).
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

# Guard state columns (rows of `TemperatureArrays.guard`). The trip latch is not among them: it
# is the FLAG_TRIPPED bit of the unit's last flags.
LAST_GOOD, LAST_RAW, REPEATS, REJECTS, OVER_COUNT, ARMED_SETPOINT = range(6)
GUARD_COLUMNS = 6

# Rows of the block: inputs, the flags output, per-unit configuration, state. The heater output
# is the PID state's OUTPUT row (the output applied last tick is the rate limit's reference).
SETPOINT, MEASURED, SECOND_SENSOR, FLAGS = range(4)
GAINS = 4  # pid.GAIN_COLUMNS rows, in temperature.py's column order
SETTINGS = GAINS + pid.GAIN_COLUMNS
PID_STATE = SETTINGS + SETTINGS_COLUMNS  # pid.STATE_COLUMNS rows, in temperature.py's order
GUARD = PID_STATE + pid.STATE_COLUMNS
ROWS = GUARD + GUARD_COLUMNS
HEATER = PID_STATE + pid.OUTPUT

# Flag bits of the `flags` output. The kernel keeps them as exact small integers in a float64
# row, so that the whole tick stays one array; `int(flags[i]) & FLAG_BAD` reads them.
FLAG_BAD = 1
FLAG_STALE = 2
FLAG_TRIPPED = 4
_BAD = float(FLAG_BAD)
_STALE = float(FLAG_STALE)
_TRIPPED = float(FLAG_TRIPPED)

# After this many consecutive step rejections the new level is believed: a sensor that reports
# the same jump three times running is reporting the liquid, not a glitch.
REBASE_AFTER_REJECTS = 3

# Rows are padded to 8·(odd) units: a row is then a whole number of 64-byte lines, and rows do
# not start at the same offset modulo 4 KB, which would map them all to the same L1 sets (at a
# width of 1024 units the tick was 10x slower for it).
_LANES = 8
_ALIGNMENT_BYTES = 64


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


def padded_width(units: int) -> int:
    """Columns of the block for `units` units (see `_LANES`)."""
    groups = max(1, -(-units // _LANES))
    return _LANES * (groups if groups % 2 else groups + 1)


class TemperatureArrays:
    """Everything `temperature_tick` reads and writes for some units: views into one block.

    `block` (ROWS × padded width, float64, 64-byte aligned) is what the kernel takes. The other
    attributes are views the control loop fills and reads, `units` columns wide: `setpoint`,
    `measured`, `second_sensor` (inputs, NaN = none), `heater` (% output) and `flags` (outputs),
    and `gains`, `settings`, `pid_state`, `guard` with one row per column constant of
    temperature.py / this module (`gains[pid.KP]` is every unit's kp). Padding columns hold
    default configuration and no readings, so the kernel may treat them as heater-off units.
    """

    def __init__(self, gains: Sequence[pid.TemperatureGains], settings: Sequence[GuardSettings]):
        units = len(gains)
        if len(settings) != units:
            raise ValueError(f"{units} gain sets but {len(settings)} guard settings")
        width = padded_width(units)
        buffer = np.empty(ROWS * width + _ALIGNMENT_BYTES // 8)
        start = (-buffer.ctypes.data % _ALIGNMENT_BYTES) // 8
        self.block: np.ndarray = buffer[start : start + ROWS * width].reshape(ROWS, width)
        block = self.block
        block[:] = 0.0
        block[SETPOINT] = math.nan
        block[MEASURED] = math.nan
        block[SECOND_SENSOR] = math.nan
        block[GAINS : GAINS + pid.GAIN_COLUMNS] = pid.TemperatureGains().as_row()[:, None]
        block[SETTINGS : SETTINGS + SETTINGS_COLUMNS] = GuardSettings().as_row()[:, None]
        for i, (unit_gains, unit_settings) in enumerate(zip(gains, settings, strict=True)):
            block[GAINS : GAINS + pid.GAIN_COLUMNS, i] = unit_gains.as_row()
            block[SETTINGS : SETTINGS + SETTINGS_COLUMNS, i] = unit_settings.as_row()
        # No history, nothing armed: a NaN never equals a reading or a setpoint.
        block[GUARD + LAST_GOOD] = math.nan
        block[GUARD + LAST_RAW] = math.nan
        block[GUARD + ARMED_SETPOINT] = math.nan

        self.units = units
        self.setpoint: np.ndarray = block[SETPOINT, :units]
        self.measured: np.ndarray = block[MEASURED, :units]
        self.second_sensor: np.ndarray = block[SECOND_SENSOR, :units]
        self.flags: np.ndarray = block[FLAGS, :units]
        self.heater: np.ndarray = block[HEATER, :units]
        self.gains: np.ndarray = block[GAINS:SETTINGS, :units]
        self.settings: np.ndarray = block[SETTINGS:PID_STATE, :units]
        self.pid_state: np.ndarray = block[PID_STATE:GUARD, :units]
        self.guard: np.ndarray = block[GUARD:ROWS, :units]


@register_jitable(inline="always")
def check_measurement(
    t: float,
    plausible_min: float,
    plausible_max: float,
    stuck_samples: float,
    max_step: float,
    last_raw: float,
    repeats: float,
    last_good: float,
    rejects: float,
) -> tuple[float, float, float, float, float]:
    """Flags (FLAG_BAD / FLAG_STALE, 0 when `t` can be trusted) and the guard state after `t`.

    Returns (flags, last_raw, repeats, last_good, rejects). A bad reading leaves the history as
    it was; a rejected jump counts towards REBASE_AFTER_REJECTS and does not move `last_good`.
    """
    if (t != t) | (t < plausible_min) | (t > plausible_max):
        return _BAD, last_raw, repeats, last_good, rejects
    repeats = repeats + 1.0 if t == last_raw else 0.0
    flags = _STALE if repeats + 1.0 >= stuck_samples else 0.0
    jumped = (last_good == last_good) & (abs(t - last_good) > max_step)
    if jumped & (rejects < REBASE_AFTER_REJECTS):
        return flags + _BAD, t, repeats, last_good, rejects + 1.0
    return flags, t, repeats, t, 0.0


@register_jitable(inline="always")
def over_temperature_trip(
    setpoint: float,
    hottest: float,
    tripped: bool,
    armed_setpoint: float,
    over_count: float,
    temperature_max: float,
    margin: float,
    hysteresis: float,
    confirm_samples: float,
) -> tuple[bool, float, float]:
    """The latched trip after the hottest trustworthy reading: (tripped, armed, over_count)."""
    threshold = temperature_max
    limit = setpoint + margin
    if setpoint == setpoint:
        if (armed_setpoint != setpoint) & (hottest <= limit):
            armed_setpoint = setpoint
        if armed_setpoint == setpoint:
            threshold = at_most(threshold, limit)
    else:
        armed_setpoint = math.nan
    over_count = over_count + 1.0 if hottest > threshold else 0.0
    if over_count >= confirm_samples:
        tripped = True
    elif tripped & (hottest <= threshold - hysteresis):
        tripped = False
    return tripped, armed_setpoint, over_count


@njit(cache=True, error_model="numpy", boundscheck=False)
def temperature_tick(block: np.ndarray, dt: float) -> None:
    """Check, trip and regulate every unit of a `TemperatureArrays.block`; `dt` must be > 0.

    Writes the heater outputs in % and per-unit flag bits. `setpoint` NaN means the unit is not
    under temperature control (heater off, not an alarm); `second_sensor` NaN means no
    independent reading this tick. A unit whose integrator needs its feed-forward pre-load or a
    setpoint shift (first enable, setpoint change: rare) is left untouched by the vectorized
    loop and regulated by `_regulate_with_feed_forward` after it, which keeps the thermal-model
    columns and two divisions out of the per-tick path.
    """
    pending = 0
    for i in range(block.shape[1]):
        # Each row is read once, here, and written at most once, below: a second access to a row
        # in another form makes LLVM's overlap check fail, and the vectorized loop never runs.
        setpoint = block[SETPOINT, i]
        t = block[MEASURED, i]
        backup = block[SECOND_SENSOR, i]
        last_flags = block[FLAGS, i]
        plausible_min = block[SETTINGS + PLAUSIBLE_MIN_C, i]
        plausible_max = block[SETTINGS + PLAUSIBLE_MAX_C, i]
        low = block[GAINS + pid.OUTPUT_MIN, i]
        high = block[GAINS + pid.OUTPUT_MAX, i]
        integral = block[PID_STATE + pid.INTEGRAL, i]
        filtered = block[PID_STATE + pid.FILTERED_DERIVATIVE, i]
        previous = block[PID_STATE + pid.PREVIOUS_MEASUREMENT, i]
        initialised = block[PID_STATE + pid.INITIALISED, i]
        last_output = block[PID_STATE + pid.OUTPUT, i]

        unit_flags, last_raw, repeats, last_good, rejects = check_measurement(
            t,
            plausible_min,
            plausible_max,
            block[SETTINGS + STUCK_SAMPLES, i],
            block[SETTINGS + MAX_SLEW_K_S, i] * dt,
            block[GUARD + LAST_RAW, i],
            block[GUARD + REPEATS, i],
            block[GUARD + LAST_GOOD, i],
            block[GUARD + REJECTS, i],
        )
        hottest = t if unit_flags == 0.0 else math.nan
        trusted_backup = (backup == backup) & (plausible_min <= backup) & (backup <= plausible_max)
        if trusted_backup & (not backup <= hottest):
            hottest = backup
        tripped, armed, over_count = over_temperature_trip(
            setpoint,
            hottest,
            last_flags >= _TRIPPED,
            block[GUARD + ARMED_SETPOINT, i],
            block[GUARD + OVER_COUNT, i],
            block[SETTINGS + TEMPERATURE_MAX_C, i],
            block[SETTINGS + TRIP_MARGIN_K, i],
            block[SETTINGS + RESET_HYSTERESIS_K, i],
            block[SETTINGS + TRIP_CONFIRM_SAMPLES, i],
        )
        if tripped:
            unit_flags += _TRIPPED

        enabled = (unit_flags == 0.0) & (setpoint == setpoint)
        needs_feed_forward = (block[PID_STATE + pid.PRELOADED, i] == 0.0) | (
            setpoint != block[PID_STATE + pid.PREVIOUS_SETPOINT, i]
        )
        regulate = enabled & (not needs_feed_forward)
        pending += enabled & needs_feed_forward
        started = initialised != 0.0
        output, new_integral, derivative = pid_law(
            setpoint,
            t,
            dt,
            block[GAINS + pid.KP, i],
            block[GAINS + pid.KI, i],
            block[GAINS + pid.KD, i],
            block[GAINS + pid.DERIVATIVE_TAU_S, i],
            low,
            high,
            block[GAINS + pid.RATE_LIMIT_PCT_S, i],
            integral,
            filtered if started else 0.0,
            previous if started else t,
            last_output,
        )
        # Regulated: the law's results. Disabled: heater off, derivative history cleared, the
        # integrator frozen. Waiting for the feed-forward pass: untouched.
        waiting = enabled & (not regulate)
        block[FLAGS, i] = unit_flags
        block[GUARD + LAST_RAW, i] = last_raw
        block[GUARD + REPEATS, i] = repeats
        block[GUARD + LAST_GOOD, i] = last_good
        block[GUARD + REJECTS, i] = rejects
        block[GUARD + ARMED_SETPOINT, i] = armed
        block[GUARD + OVER_COUNT, i] = over_count
        block[PID_STATE + pid.INTEGRAL, i] = new_integral if regulate else integral
        block[PID_STATE + pid.PREVIOUS_MEASUREMENT, i] = t if regulate else previous
        block[PID_STATE + pid.FILTERED_DERIVATIVE, i] = (
            derivative if regulate else (filtered if waiting else 0.0)
        )
        block[PID_STATE + pid.OUTPUT, i] = output if regulate else (last_output if waiting else 0.0)
        block[PID_STATE + pid.INITIALISED, i] = (
            1.0 if regulate else (initialised if waiting else 0.0)
        )
    if pending:
        _regulate_with_feed_forward(block, dt)


@register_jitable(error_model="numpy", boundscheck=False)
def _regulate_with_feed_forward(block: np.ndarray, dt: float) -> None:
    """Regulate the enabled units whose integrator needs its pre-load or a setpoint shift.

    The integrator is loaded with the steady-state duty of the thermal model when a unit is
    first enabled, and shifted by the model's difference when its setpoint changes, so it only
    learns the model's error (see temperature.py).
    """
    for i in range(block.shape[1]):
        setpoint = block[SETPOINT, i]
        if block[FLAGS, i] != 0.0 or setpoint != setpoint:
            continue
        low = block[GAINS + pid.OUTPUT_MIN, i]
        high = block[GAINS + pid.OUTPUT_MAX, i]
        heater_w = block[GAINS + pid.HEATER_W, i]
        ua_w_per_k = block[GAINS + pid.UA_W_PER_K, i]
        ambient_c = block[GAINS + pid.AMBIENT_C, i]
        previous_setpoint = block[PID_STATE + pid.PREVIOUS_SETPOINT, i]
        if block[PID_STATE + pid.PRELOADED, i] == 0.0:
            integral = feed_forward_duty(setpoint, heater_w, ua_w_per_k, ambient_c, low, high)
            block[PID_STATE + pid.PRELOADED, i] = 1.0
        elif setpoint != previous_setpoint:
            shifted = (
                block[PID_STATE + pid.INTEGRAL, i]
                + feed_forward_duty(setpoint, heater_w, ua_w_per_k, ambient_c, low, high)
                - feed_forward_duty(previous_setpoint, heater_w, ua_w_per_k, ambient_c, low, high)
            )
            integral = at_most(at_least(shifted, low), high)
        else:
            continue
        block[PID_STATE + pid.PREVIOUS_SETPOINT, i] = setpoint
        t = block[MEASURED, i]
        started = block[PID_STATE + pid.INITIALISED, i] != 0.0
        output, integral, derivative = pid_law(
            setpoint,
            t,
            dt,
            block[GAINS + pid.KP, i],
            block[GAINS + pid.KI, i],
            block[GAINS + pid.KD, i],
            block[GAINS + pid.DERIVATIVE_TAU_S, i],
            low,
            high,
            block[GAINS + pid.RATE_LIMIT_PCT_S, i],
            integral,
            block[PID_STATE + pid.FILTERED_DERIVATIVE, i] if started else 0.0,
            block[PID_STATE + pid.PREVIOUS_MEASUREMENT, i] if started else t,
            block[PID_STATE + pid.OUTPUT, i],
        )
        block[PID_STATE + pid.INTEGRAL, i] = integral
        block[PID_STATE + pid.FILTERED_DERIVATIVE, i] = derivative
        block[PID_STATE + pid.PREVIOUS_MEASUREMENT, i] = t
        block[PID_STATE + pid.OUTPUT, i] = output
        block[PID_STATE + pid.INITIALISED, i] = 1.0
