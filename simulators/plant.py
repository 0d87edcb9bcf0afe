"""Closed-loop physics and biology of every cartridge of a virtual instrument.

The plant is what the controllers are tuned against, so it reacts to every actuator: heater power
warms the liquid, feeding adds volume, dilutes cells and mixes in cold medium, harvesting removes
liquid. All units advance in one numba call over arrays; `plant_step.py_func` is the pure-Python
reference that tests compare bit for bit.

Model (per unit, fixed step `dt`):

* thermal, lumped: C·dT/dt = P·u − UA·(T − T_amb), with C = cp·V + C_vessel following the liquid
  volume; the temperature sensor is a first-order lag of the liquid temperature;
* growth: dX/dt = (μ_max·f(T)·lag(age)·(1 − X/X_max) − k_d)·X, where f is the cardinal
  temperature model with inflection (Rosso et al. 1993) and lag(age) = 1 − exp(−age/τ_lag) the
  activation lag of T cells after CD3/CD28 stimulation;
* mass balance: inflow adds volume at its own temperature (mixing by heat capacity) and dilutes
  cells by V/(V+ΔV); outflow removes liquid at the current density.

Parameter values and their sources are listed with `DEFAULT_PARAMETERS`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from numba import njit

# State columns.
TEMPERATURE, SENSOR_TEMPERATURE, VOLUME_ML, DENSITY, AGE_H = range(5)
STATE_COLUMNS = 5

# Parameter columns.
(
    HEATER_W,
    UA_W_PER_K,
    AMBIENT_C,
    VESSEL_J_PER_K,
    SENSOR_TAU_S,
    MU_MAX_PER_H,
    T_MIN,
    T_OPT,
    T_MAX,
    DENSITY_MAX,
    DEATH_PER_H,
    LAG_H,
) = range(12)
PARAMETER_COLUMNS = 12

WATER_J_PER_ML_K = 4.18  # specific heat of aqueous medium, J/(g·K) at ~1 g/mL


@dataclass(frozen=True)
class PlantParameters:
    """One unit's physical and biological constants.

    Sources and assumptions:
    heater_w 15 W and ua_w_per_k 0.6 W/K: assumption for a 1 L single-use cartridge in an
    incubator-less housing, chosen so a 200 mL fill warms 22 → 37 °C in ≈ 25 min at full power.
    vessel_j_per_k 160 J/K: ≈ 100 g of polymer and sensor housings at ≈ 1.6 J/(g·K) (assumption).
    sensor_tau_s 20 s: typical Pt100 in a thermowell, 10–30 s (vendor data sheets).
    mu_max_per_h ln2/24 h: T-cell doubling ≈ 24 h at the optimum (literature 13–24 h).
    t_min/t_opt/t_max 25/37/42 °C: cardinal temperatures of mammalian cells (assumption).
    density_max 3e7 cells/mL: practical ceiling of T-cell suspension culture.
    death_per_h 0.002: ≈ 5 % loss per day of viability without nutrient stress (assumption).
    lag_h 12 h: activation lag after CD3/CD28 stimulation (assumption; 12–36 h reported).
    """

    heater_w: float = 15.0
    ua_w_per_k: float = 0.6
    ambient_c: float = 22.0
    vessel_j_per_k: float = 160.0
    sensor_tau_s: float = 20.0
    mu_max_per_h: float = math.log(2.0) / 24.0
    t_min: float = 25.0
    t_opt: float = 37.0
    t_max: float = 42.0
    density_max: float = 3.0e7
    death_per_h: float = 0.002
    lag_h: float = 12.0

    def as_row(self) -> np.ndarray:
        return np.array(list(asdict(self).values()), dtype=np.float64)


@dataclass(frozen=True)
class InitialConditions:
    """SPEC §1: a unit starts at 22 °C with 100 mL of medium at 0.5×10⁶ viable cells/mL."""

    temperature: float = 22.0
    volume_ml: float = 100.0
    density: float = 0.5e6

    def as_row(self) -> np.ndarray:
        return np.array(
            [self.temperature, self.temperature, self.volume_ml, self.density, 0.0],
            dtype=np.float64,
        )


@njit(cache=True)
def cardinal_temperature_factor(t: float, t_min: float, t_opt: float, t_max: float) -> float:
    """Rosso's cardinal temperature model: 0 outside (t_min, t_max), 1 at t_opt."""
    if t <= t_min or t >= t_max:
        return 0.0
    numerator = (t - t_max) * (t - t_min) ** 2
    denominator = (t_opt - t_min) * (
        (t_opt - t_min) * (t - t_opt) - (t_opt - t_max) * (t_opt + t_min - 2.0 * t)
    )
    return numerator / denominator


@njit(cache=True)
def plant_step(
    state: np.ndarray,
    params: np.ndarray,
    heater_duty: np.ndarray,
    inflow_ml: np.ndarray,
    inflow_temperature: np.ndarray,
    outflow_ml: np.ndarray,
    heater_works: np.ndarray,
    dt: float,
    steps: int,
) -> None:
    """Advance every unit by `steps` fixed steps of `dt` seconds, in place.

    Flows are totals over the whole interval, spread evenly over its steps, so a pump that ran
    during a control period adds its volume gradually as it would.
    """
    n = state.shape[0]
    for i in range(n):
        duty = min(max(heater_duty[i], 0.0), 1.0) if heater_works[i] else 0.0
        power = params[i, HEATER_W] * duty
        in_ml = inflow_ml[i] / steps
        out_ml = outflow_ml[i] / steps
        t_in = inflow_temperature[i]
        for _ in range(steps):
            temperature = state[i, TEMPERATURE]
            volume = state[i, VOLUME_ML]
            density = state[i, DENSITY]

            capacity = WATER_J_PER_ML_K * volume + params[i, VESSEL_J_PER_K]
            heat_flow = power - params[i, UA_W_PER_K] * (temperature - params[i, AMBIENT_C])
            temperature += heat_flow / capacity * dt

            age = state[i, AGE_H] + dt / 3600.0
            growth = (
                params[i, MU_MAX_PER_H]
                * cardinal_temperature_factor(
                    temperature, params[i, T_MIN], params[i, T_OPT], params[i, T_MAX]
                )
                * (1.0 - math.exp(-age / params[i, LAG_H]))
                * (1.0 - density / params[i, DENSITY_MAX])
            )
            density *= math.exp((growth - params[i, DEATH_PER_H]) * dt / 3600.0)

            if in_ml > 0.0:
                added_capacity = WATER_J_PER_ML_K * in_ml
                temperature = (capacity * temperature + added_capacity * t_in) / (
                    capacity + added_capacity
                )
                density *= volume / (volume + in_ml)
                volume += in_ml
            if out_ml > 0.0:
                volume = max(volume - out_ml, 0.0)

            tau = params[i, SENSOR_TAU_S]
            state[i, SENSOR_TEMPERATURE] += (temperature - state[i, SENSOR_TEMPERATURE]) * (
                1.0 - math.exp(-dt / tau)
            )
            state[i, TEMPERATURE] = temperature
            state[i, VOLUME_ML] = volume
            state[i, DENSITY] = density
            state[i, AGE_H] = age


def steady_state_temperature(params: PlantParameters, duty: float) -> float:
    """Closed form of the thermal balance at a fixed heater duty (for tests and feed-forward)."""
    return params.ambient_c + params.heater_w * duty / params.ua_w_per_k
