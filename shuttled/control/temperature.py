"""Batched temperature control: one numba call regulates the heater of every unit.

A Python call per unit costs more than the whole control law, so the law runs over arrays owned
by the control loop. `temperature_pid.py_func` is the pure-Python reference the tests compare
against bit for bit.

The law is a PID in position form with:

* derivative on the measurement (no kick on a setpoint change) through a first-order filter, since
  the sensor is noisy and the plant slow;
* conditional integration (the integrator does not wind up while the output is saturated in the
  direction the error pushes), because warm-up saturates the heater for many minutes;
* a feed-forward bias from the thermal model — the duty that holds the setpoint at steady state,
  UA·(T_sp − T_amb)/P — so the integrator only has to learn the model's error; that is what makes
  warm-up fast without overshoot;
* a per-unit enable: a disabled unit outputs 0 % and its integrator is held at zero, so it comes
  back bumplessly from the feed-forward bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

# Gain columns.
KP, KI, KD, DERIVATIVE_TAU_S, HEATER_W, UA_W_PER_K, AMBIENT_C = range(7)
GAIN_COLUMNS = 7

# State columns.
INTEGRAL, FILTERED_DERIVATIVE, PREVIOUS_MEASUREMENT, INITIALISED = range(4)
STATE_COLUMNS = 4


@dataclass(frozen=True)
class TemperatureGains:
    """Tuned on the virtual instrument's 100–1000 mL thermal model (τ ≈ 16–80 min, 20 s sensor).

    kp in %/K, ki in %/(K·s), kd in %·s/K; the model terms feed the feed-forward bias.
    """

    kp: float = 60.0
    ki: float = 0.05
    kd: float = 200.0
    derivative_tau_s: float = 30.0
    heater_w: float = 15.0
    ua_w_per_k: float = 0.6
    ambient_c: float = 22.0

    def as_row(self) -> np.ndarray:
        return np.array(
            [
                self.kp,
                self.ki,
                self.kd,
                self.derivative_tau_s,
                self.heater_w,
                self.ua_w_per_k,
                self.ambient_c,
            ],
            dtype=np.float64,
        )


@njit(cache=True)
def temperature_pid(
    setpoint: np.ndarray,
    measurement: np.ndarray,
    enabled: np.ndarray,
    gains: np.ndarray,
    state: np.ndarray,
    dt: float,
    output: np.ndarray,
) -> None:
    """Compute every unit's heater output in % (0–100), updating `state` in place."""
    for i in range(setpoint.shape[0]):
        if not enabled[i] or measurement[i] != measurement[i]:  # disabled or NaN
            state[i, INTEGRAL] = 0.0
            state[i, FILTERED_DERIVATIVE] = 0.0
            state[i, INITIALISED] = 0.0
            output[i] = 0.0
            continue
        if state[i, INITIALISED] == 0.0:
            state[i, PREVIOUS_MEASUREMENT] = measurement[i]
            state[i, INITIALISED] = 1.0

        error = setpoint[i] - measurement[i]
        bias = (
            100.0 * gains[i, UA_W_PER_K] * (setpoint[i] - gains[i, AMBIENT_C]) / gains[i, HEATER_W]
        )
        slope = (measurement[i] - state[i, PREVIOUS_MEASUREMENT]) / dt
        alpha = dt / (gains[i, DERIVATIVE_TAU_S] + dt)
        derivative = state[i, FILTERED_DERIVATIVE] + alpha * (slope - state[i, FILTERED_DERIVATIVE])

        proportional = gains[i, KP] * error
        unsaturated = bias + proportional + state[i, INTEGRAL] - gains[i, KD] * derivative
        candidate_integral = state[i, INTEGRAL] + gains[i, KI] * error * dt
        saturated_high = unsaturated >= 100.0 and error > 0.0
        saturated_low = unsaturated <= 0.0 and error < 0.0
        if not (saturated_high or saturated_low):
            state[i, INTEGRAL] = candidate_integral

        value = bias + proportional + state[i, INTEGRAL] - gains[i, KD] * derivative
        output[i] = min(max(value, 0.0), 100.0)
        state[i, FILTERED_DERIVATIVE] = derivative
        state[i, PREVIOUS_MEASUREMENT] = measurement[i]
