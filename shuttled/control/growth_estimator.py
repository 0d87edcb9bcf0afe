"""Viable density and growth rate of every unit from a noisy capacitance probe: a Kalman filter.

The protocol's `density`, `total_cells`, `growth_rate` and `doubling_time_h` signals, and density
control, come from here. The design follows Pioreactor's `CultureGrowthEKF` (a filter on the
culture's signal with a growth-rate state), adapted to what we know better than Pioreactor does:

* The probe's noise is multiplicative (~5 %), so the state is x = [ln density, μ] with μ the
  specific growth rate in 1/h. On log density both the model and the measurement are linear
  (ln X(t+dt) = ln X(t) + μ·dt; z = ln X + v), so the filter is an exact linear Kalman filter and
  needs no Jacobians; the growth rate is a random walk because activation, lag and nutrient
  limits change it over hours.
* Feeding dilutes the culture by a known factor: the loop reports the vessel volume, and every
  rise over the last reference volume shifts ln X by ln(V_ref/V) in the prediction, so a feed is
  never read as cell death and growth estimates do not dip after each dilution. A fall in volume
  (harvest, sampling) leaves density unchanged and only moves the reference.
* Outliers (bubbles, a glitching transmitter) are gated on the innovation: a reading more than
  `gate_sigmas` standard deviations from the prediction is rejected. If `reinit_after_rejects`
  readings in a row are rejected, the probe is consistently telling something else (a manual
  addition the loop did not see, a re-calibrated probe) and the level is re-initialised from it,
  keeping the growth rate.

`growth_estimator.py_func` is the bit-identical pure-Python reference. Its one helper,
`_dilution_log_factor`, is `register_jitable` rather than `njit` for that: compiled into the
kernel, plain Python when the reference calls it, so the reference runs no compiled code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit
from numba.extending import register_jitable

# Settings columns.
(
    MEASUREMENT_SD,
    LEVEL_Q_PER_S,
    GROWTH_Q_PER_S,
    INITIAL_GROWTH_SD,
    GATE_SIGMAS,
    REINIT_AFTER_REJECTS,
    VOLUME_DEADBAND_ML,
    REPORT_SD,
) = range(8)
SETTINGS_COLUMNS = 8

# State columns.
(
    LOG_DENSITY,
    GROWTH_PER_H,
    P_LL,
    P_LG,
    P_GG,
    INITIALISED,
    REJECT_RUN,
    REJECTED_TOTAL,
    REFERENCE_VOLUME_ML,
) = range(9)
STATE_COLUMNS = 9


@dataclass(frozen=True)
class EstimatorSettings:
    """Noise model of the probe and the culture (variances per second of process time).

    measurement_sd 0.05: the probe's ~5 % multiplicative noise on ln density. growth_sd_per_h
    0.005/h per √h: μ of T cells drifts by a few thousandths per hour (lag, activation, nutrient
    limits), so the filter can follow the lag phase in a few hours yet smooths the 5 % noise to a
    fraction of a percent. level_sd_per_h: unmodelled level changes (sampling, settling).
    volume_deadband_ml: volume rises smaller than this are treated as reading noise until they
    add up. report_sd 0.02: density is reported (NaN before) once its standard error is under
    2 %, about six readings after the first or after a re-initialisation, so nothing doses on one
    noisy sample.
    """

    measurement_sd: float = 0.05
    level_sd_per_h: float = 0.01
    growth_sd_per_h: float = 0.005
    initial_growth_sd: float = 0.05
    gate_sigmas: float = 4.0
    reinit_after_rejects: int = 6
    volume_deadband_ml: float = 0.05
    report_sd: float = 0.02

    def as_row(self) -> np.ndarray:
        return np.array(
            [
                self.measurement_sd,
                self.level_sd_per_h**2 / 3600.0,
                self.growth_sd_per_h**2 / 3600.0,
                self.initial_growth_sd,
                self.gate_sigmas,
                float(self.reinit_after_rejects),
                self.volume_deadband_ml,
                self.report_sd,
            ],
            dtype=np.float64,
        )


def new_estimator_state(units: int) -> np.ndarray:
    state = np.zeros((units, STATE_COLUMNS))
    state[:, REFERENCE_VOLUME_ML] = math.nan
    return state


@register_jitable
def _dilution_log_factor(i: int, volume: float, settings: np.ndarray, state: np.ndarray) -> float:
    """ln(V_ref/V) for a rise in volume beyond the deadband (0 otherwise); moves the reference."""
    if not volume > 0.0:
        return 0.0
    reference = state[i, REFERENCE_VOLUME_ML]
    if reference != reference or volume < reference:
        state[i, REFERENCE_VOLUME_ML] = volume
        return 0.0
    if volume - reference <= settings[i, VOLUME_DEADBAND_ML]:
        return 0.0
    state[i, REFERENCE_VOLUME_ML] = volume
    return math.log(reference / volume)


@njit(cache=True)
def growth_estimator(
    measured: np.ndarray,
    volume_ml: np.ndarray,
    settings: np.ndarray,
    state: np.ndarray,
    dt: float,
    density: np.ndarray,
    growth_per_h: np.ndarray,
) -> None:
    """Predict every unit by `dt` seconds, fold in its reading, write density and growth rate.

    `measured` NaN or ≤ 0 means no usable reading this tick (only the prediction runs);
    `volume_ml` NaN means no volume reading (no dilution is inferred). Outputs are NaN until a
    unit's first readings (until the estimate's standard error is under `report_sd`).
    """
    hours = dt / 3600.0
    for i in range(measured.shape[0]):
        shift = _dilution_log_factor(i, volume_ml[i], settings, state)
        initialised = state[i, INITIALISED] != 0.0
        if initialised:
            p_ll = state[i, P_LL]
            p_lg = state[i, P_LG]
            p_gg = state[i, P_GG]
            state[i, LOG_DENSITY] += state[i, GROWTH_PER_H] * hours + shift
            state[i, P_LL] = (
                p_ll + 2.0 * hours * p_lg + hours * hours * p_gg + settings[i, LEVEL_Q_PER_S] * dt
            )
            state[i, P_LG] = p_lg + hours * p_gg
            state[i, P_GG] = p_gg + settings[i, GROWTH_Q_PER_S] * dt

        y = measured[i]
        r = settings[i, MEASUREMENT_SD] * settings[i, MEASUREMENT_SD]
        if y > 0.0 and y < math.inf:
            z = math.log(y)
            if not initialised:
                state[i, LOG_DENSITY] = z
                state[i, GROWTH_PER_H] = 0.0
                state[i, P_LL] = r
                state[i, P_LG] = 0.0
                state[i, P_GG] = settings[i, INITIAL_GROWTH_SD] * settings[i, INITIAL_GROWTH_SD]
                state[i, INITIALISED] = 1.0
                initialised = True
            else:
                innovation = z - state[i, LOG_DENSITY]
                s = state[i, P_LL] + r
                gate = settings[i, GATE_SIGMAS]
                if innovation * innovation > gate * gate * s:
                    state[i, REJECTED_TOTAL] += 1.0
                    state[i, REJECT_RUN] += 1.0
                    if state[i, REJECT_RUN] >= settings[i, REINIT_AFTER_REJECTS]:
                        state[i, LOG_DENSITY] = z
                        state[i, P_LL] = r
                        state[i, P_LG] = 0.0
                        state[i, REJECT_RUN] = 0.0
                else:
                    state[i, REJECT_RUN] = 0.0
                    k_l = state[i, P_LL] / s
                    k_g = state[i, P_LG] / s
                    p_ll = state[i, P_LL]
                    p_lg = state[i, P_LG]
                    state[i, LOG_DENSITY] += k_l * innovation
                    state[i, GROWTH_PER_H] += k_g * innovation
                    state[i, P_LL] = (1.0 - k_l) * p_ll
                    state[i, P_LG] = (1.0 - k_l) * p_lg
                    state[i, P_GG] -= k_g * p_lg

        if initialised and state[i, P_LL] <= settings[i, REPORT_SD] * settings[i, REPORT_SD]:
            density[i] = math.exp(state[i, LOG_DENSITY])
            growth_per_h[i] = state[i, GROWTH_PER_H]
        else:
            density[i] = math.nan
            growth_per_h[i] = math.nan
