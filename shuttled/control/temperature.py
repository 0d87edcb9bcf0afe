"""Batched temperature control: one numba call regulates the heater of every unit.

A Python call per unit costs more than the whole control law, so the law runs over arrays owned
by the control loop. `temperature_pid.py_func` is the pure-Python reference the tests compare
against bit for bit. The law itself is `pid_law`, a function of scalars that both batched kernels
inline: `temperature_pid` here (one row per unit, for the digital twin) and the safety-wrapped
`temperature_tick` in `safety.py` (one row per quantity, vectorized across units).

`pid_law` and every helper under it are `register_jitable(inline="always")`, not `njit`: numba
inlines them into the kernel that calls them, compiled with that kernel's options, while Python
calls them as the plain functions they are. So the reference is Python all the way down; with
`njit` helpers it would call their machine code, and the bit-identity tests would compare the
compiled arithmetic with itself (tests/control/test_references_run_no_compiled_code.py checks).

The law is a PID in position form with:

* derivative on the measurement (no kick on a setpoint change) through a first-order filter, since
  the sensor is noisy and the plant slow;
* conditional integration: the integrator does not move while the output is held by a limit (the
  output range or the rate limit) in the direction the error pushes, because warm-up saturates
  the heater for many minutes;
* output limits and a rate limit (%/s) on the applied output, so neither a noisy sample nor a
  setpoint step nor re-enabling a unit jumps the heater by more than the rate allows — the
  heater ramps from what it really did last, which is what makes every transfer bumpless;
* a feed-forward pre-load of the integrator from the thermal model: the duty that holds the
  setpoint at steady state, 100·UA·(T_sp − T_amb)/P. It is loaded when a unit is first enabled
  and shifted by the model's difference on every setpoint change, so the integrator only learns
  the model's error and keeps what it learned across setpoint changes and disabled spells. That
  is what makes warm-up fast without overshoot (26 min to ±0.1 K at 200 mL, vs 87 min without);
* a per-unit enable: a disabled unit outputs 0 % and its integrator is frozen (not zeroed), so it
  comes back from where it was, ramping up from 0 % at the rate limit.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np
from numba import njit
from numba.extending import register_jitable

# Gain columns.
(
    KP,
    KI,
    KD,
    DERIVATIVE_TAU_S,
    HEATER_W,
    UA_W_PER_K,
    AMBIENT_C,
    OUTPUT_MIN,
    OUTPUT_MAX,
    RATE_LIMIT_PCT_S,
) = range(10)
GAIN_COLUMNS = 10

# State columns.
(
    INTEGRAL,  # integrator including the feed-forward pre-load, % duty
    FILTERED_DERIVATIVE,  # K/s
    PREVIOUS_MEASUREMENT,
    INITIALISED,  # derivative history valid (cleared while disabled)
    PRELOADED,  # integrator holds a pre-load for PREVIOUS_SETPOINT
    PREVIOUS_SETPOINT,
    OUTPUT,  # the output applied last tick, % (the rate limit's reference)
) = range(7)
STATE_COLUMNS = 7


@dataclass(frozen=True)
class TemperatureGains:
    """Tuned on the virtual instrument's 100–1000 mL thermal model (τ ≈ 16–80 min, 20 s sensor).

    kp in %/K, ki in %/(K·s), kd in %·s/K; heater_w, ua_w_per_k and ambient_c describe the thermal
    model for the pre-load; the output is limited to [output_min, output_max] % and may change by
    at most rate_limit_pct_s per second (0→100 % in 20 s: far faster than the plant, slow enough
    that sensor noise and steps reach the heater smoothed).
    """

    kp: float = 60.0
    ki: float = 0.05
    kd: float = 200.0
    derivative_tau_s: float = 30.0
    heater_w: float = 15.0
    ua_w_per_k: float = 0.6
    ambient_c: float = 22.0
    output_min: float = 0.0
    output_max: float = 100.0
    rate_limit_pct_s: float = 5.0

    def as_row(self) -> np.ndarray:
        return np.array(astuple(self), dtype=np.float64)


@register_jitable(inline="always")
def at_least(value: float, low: float) -> float:
    """`max(value, low)` exactly as Python evaluates it, written as a select.

    Numba's builtin `max` on floats may be compiled as a call to a separately compiled helper
    (depending on what the process compiled first), and a call stops LLVM from vectorizing the
    batched kernels; a select always inlines and vectorizes. Written as an early return rather
    than a conditional expression: inlined two levels deep (through `pid_law`), numba's inliner
    leaves the expression's merge variable out of scope and warns (NumbaIRAssumptionWarning) on
    every compilation; LLVM makes the same select of both forms.
    """
    if low > value:
        return low
    return value


@register_jitable(inline="always")
def at_most(value: float, high: float) -> float:
    """`min(value, high)` exactly as Python evaluates it, written as a select (see `at_least`)."""
    if high < value:
        return high
    return value


@register_jitable(inline="always")
def feed_forward_duty(
    setpoint: float, heater_w: float, ua_w_per_k: float, ambient_c: float, low: float, high: float
) -> float:
    """Steady-state duty (%) that holds `setpoint` on a unit's thermal model, within the limits."""
    duty = 100.0 * ua_w_per_k * (setpoint - ambient_c) / heater_w
    return at_most(at_least(duty, low), high)


@register_jitable(inline="always")
def pid_law(
    setpoint: float,
    measurement: float,
    dt: float,
    kp: float,
    ki: float,
    kd: float,
    derivative_tau_s: float,
    low: float,
    high: float,
    rate_limit_pct_s: float,
    integral: float,
    filtered_derivative: float,
    previous_measurement: float,
    last_output: float,
) -> tuple[float, float, float]:
    """One step of the law for one unit whose pre-load and derivative history are settled.

    Returns (output %, integral, filtered derivative). Scalars in and out, no branches the
    compiler cannot turn into selects: both batched kernels inline it, and the column-layout one
    (`safety.temperature_tick`) is vectorized across units by LLVM.
    """
    error = setpoint - measurement
    slope = (measurement - previous_measurement) / dt
    alpha = dt / (derivative_tau_s + dt)
    derivative = filtered_derivative + alpha * (slope - filtered_derivative)
    proportional = kp * error
    damping = kd * derivative

    step = rate_limit_pct_s * dt
    floor = at_least(low, last_output - step)
    ceiling = at_most(high, last_output + step)
    value = proportional + integral - damping
    held_high = (value >= ceiling) & (error > 0.0)
    held_low = (value <= floor) & (error < 0.0)
    if not (held_high | held_low):
        integral = at_most(at_least(integral + ki * error * dt, low), high)
        value = proportional + integral - damping
    return at_most(at_least(value, floor), ceiling), integral, derivative


@register_jitable(inline="always")
def _feed_forward(gains: np.ndarray, i: int, setpoint: float) -> float:
    return feed_forward_duty(
        setpoint,
        gains[i, HEATER_W],
        gains[i, UA_W_PER_K],
        gains[i, AMBIENT_C],
        gains[i, OUTPUT_MIN],
        gains[i, OUTPUT_MAX],
    )


@register_jitable(inline="always")
def disable_unit(state: np.ndarray, i: int) -> None:
    """Heater off; the integrator is frozen so a re-enabled unit resumes what it had learned."""
    state[i, FILTERED_DERIVATIVE] = 0.0
    state[i, INITIALISED] = 0.0
    state[i, OUTPUT] = 0.0


@register_jitable(inline="always")
def pid_unit(
    i: int, setpoint: float, measurement: float, gains: np.ndarray, state: np.ndarray, dt: float
) -> float:
    """One unit's control step; returns the output in % and records it as the last output."""
    if state[i, PRELOADED] == 0.0:
        state[i, INTEGRAL] = _feed_forward(gains, i, setpoint)
        state[i, PREVIOUS_SETPOINT] = setpoint
        state[i, PRELOADED] = 1.0
    elif setpoint != state[i, PREVIOUS_SETPOINT]:
        shifted = (
            state[i, INTEGRAL]
            + _feed_forward(gains, i, setpoint)
            - _feed_forward(gains, i, state[i, PREVIOUS_SETPOINT])
        )
        state[i, INTEGRAL] = at_most(at_least(shifted, gains[i, OUTPUT_MIN]), gains[i, OUTPUT_MAX])
        state[i, PREVIOUS_SETPOINT] = setpoint
    if state[i, INITIALISED] == 0.0:
        state[i, PREVIOUS_MEASUREMENT] = measurement
        state[i, FILTERED_DERIVATIVE] = 0.0
        state[i, INITIALISED] = 1.0

    output, integral, derivative = pid_law(
        setpoint,
        measurement,
        dt,
        gains[i, KP],
        gains[i, KI],
        gains[i, KD],
        gains[i, DERIVATIVE_TAU_S],
        gains[i, OUTPUT_MIN],
        gains[i, OUTPUT_MAX],
        gains[i, RATE_LIMIT_PCT_S],
        state[i, INTEGRAL],
        state[i, FILTERED_DERIVATIVE],
        state[i, PREVIOUS_MEASUREMENT],
        state[i, OUTPUT],
    )
    state[i, INTEGRAL] = integral
    state[i, FILTERED_DERIVATIVE] = derivative
    state[i, PREVIOUS_MEASUREMENT] = measurement
    state[i, OUTPUT] = output
    return output


@njit(cache=True, error_model="numpy")
def temperature_pid(
    setpoint: np.ndarray,
    measurement: np.ndarray,
    enabled: np.ndarray,
    gains: np.ndarray,
    state: np.ndarray,
    dt: float,
    output: np.ndarray,
) -> None:
    """Compute every unit's heater output in %, updating `state` in place.

    Row layout (one row of gains and of state per unit), for single-unit simulations such as
    the digital twin; the daemon's tick is `safety.temperature_tick`, which runs the same law on
    a column layout. A disabled unit, or one whose measurement or setpoint is NaN, gets 0 %.
    `dt` must be > 0.
    """
    for i in range(setpoint.shape[0]):
        if not enabled[i] or measurement[i] != measurement[i] or setpoint[i] != setpoint[i]:
            disable_unit(state, i)
            output[i] = 0.0
            continue
        output[i] = pid_unit(i, setpoint[i], measurement[i], gains, state, dt)
