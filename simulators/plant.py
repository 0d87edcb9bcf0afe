"""Closed-loop physics and biology of every cartridge of a virtual instrument.

The plant is what the controllers are tuned against, so it reacts to every actuator: heater power
warms the liquid, feeding adds volume, dilutes cells and metabolites and mixes in medium at its own
temperature, harvesting removes liquid. All units advance in one numba call over arrays;
`plant_step.py_func` is the pure-Python reference that tests compare bit for bit. The per-unit
law `advance_unit` and its helpers are `register_jitable`: numba inlines them into the kernels
that call them (`plant_step`, the digital twin's loop), while Python calls them as the plain
functions they are, so the reference really is Python all the way down.

Model (per unit, fixed step `dt`, explicit Euler for the liquid, exact exponential for cells):

* thermal, lumped: C·dT/dt = P·u − UA·(T − T_amb), with C = cp·V + C_vessel following the liquid
  volume; the temperature sensor is a first-order lag of the liquid temperature;
* growth: dX/dt = (μ − k_d)·X with
  μ = μ_max · f(T) · lag(age) · G/(K_G + G) · K_L/(K_L + L) · (1 − X/X_max), where f is the
  cardinal temperature model with inflection (Rosso et al. 1993), lag(age) = 1 − exp(−age/τ_lag)
  the activation lag of T cells after CD3/CD28 stimulation (exp(−age/τ_lag) is carried in the
  state, see LAG_REMAINING), the Monod term limits growth as glucose G runs out and the
  non-competitive term inhibits it as lactate L accumulates;
  k_d = k_d0 + k_starve · (1 − G/(K_G + G)): cells die faster once glucose is exhausted;
* metabolism: glucose uptake q_G·X·G/(K_G + G) (mmol/L/h with X in cells/mL, hence the 1000
  mL/L), and lactate made from it with the molar yield Y_L/G, so lactate made = Y·glucose used
  exactly (the balance tests check this);
* mass balance: inflow is fresh medium (glucose at its medium concentration, no lactate, no
  cells) at its own temperature: it mixes heat by heat capacity and dilutes cells and lactate by
  V/(V+ΔV); outflow removes liquid at the current concentrations.

Parameter values and their sources are listed with `PlantParameters` (plant_parameters.py).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit
from numba.extending import register_jitable

# Re-exported: callers build a plant from `plant.PlantParameters` and `plant.InitialConditions`.
from simulators.plant_parameters import (  # noqa: F401
    InitialConditions,
    PlantParameters,
    steady_state_temperature,
)

# State columns (new columns are appended: callers index by name, never by position).
(
    TEMPERATURE,
    SENSOR_TEMPERATURE,
    VOLUME_ML,
    DENSITY,
    AGE_H,
    GLUCOSE_MM,
    LACTATE_MM,
    # exp(−age/τ_lag), the share of the activation lag still to go, valid for the age in
    # LAG_AGE_H. Advanced step by step by the factor exp(−dt/τ_lag), so the kernel needs no exp
    # of the age per call; `plant_step` recomputes it from AGE_H whenever the two ages differ
    # (a caller that sets AGE_H, such as a harness starting with activated cells, needs to do
    # nothing else).
    LAG_REMAINING,
    LAG_AGE_H,
) = range(9)
STATE_COLUMNS = 9

# Parameter columns (in the order of PlantParameters' fields).
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
    GLUCOSE_K_MM,
    LACTATE_K_MM,
    GLUCOSE_UPTAKE_PMOL_PER_CELL_H,
    LACTATE_YIELD,
    MEDIUM_GLUCOSE_MM,
    STARVATION_DEATH_PER_H,
) = range(18)
PARAMETER_COLUMNS = 18

WATER_J_PER_ML_K = 4.18  # specific heat of aqueous medium, J/(g·K) at ~1 g/mL
_MMOL_PER_L_H_PER_CELL_PER_ML = 1e-9 * 1000.0  # pmol→mmol (1e-9) × cells/mL→cells/L (1000)


@register_jitable(inline="always")
def cardinal_temperature_factor(t: float, t_min: float, t_opt: float, t_max: float) -> float:
    """Rosso's cardinal temperature model: 0 outside (t_min, t_max), 1 at t_opt."""
    if t <= t_min or t >= t_max:
        return 0.0
    numerator = (t - t_max) * (t - t_min) ** 2
    denominator = (t_opt - t_min) * (
        (t_opt - t_min) * (t - t_opt) - (t_opt - t_max) * (t_opt + t_min - 2.0 * t)
    )
    return numerator / denominator


@register_jitable(inline="always")
def glucose_factor(glucose: float, k: float) -> float:
    """Monod limitation G/(K+G); with K = 0 growth is unlimited while any glucose is left."""
    if glucose <= 0.0:
        return 0.0
    return glucose / (k + glucose)


@njit(cache=True)
def add_medium(
    state: np.ndarray, params: np.ndarray, i: int, volume_ml: float, temperature: float
) -> None:
    """Mix `volume_ml` of fresh medium at `temperature` into unit `i` at once.

    Heat mixes by heat capacity (the vessel shares the liquid's temperature), cells and lactate
    are diluted by V/(V+ΔV), glucose moves towards the medium's concentration.
    """
    if volume_ml <= 0.0:
        return
    volume = state[i, VOLUME_ML]
    capacity = WATER_J_PER_ML_K * volume + params[i, VESSEL_J_PER_K]
    added_capacity = WATER_J_PER_ML_K * volume_ml
    state[i, TEMPERATURE] = (capacity * state[i, TEMPERATURE] + added_capacity * temperature) / (
        capacity + added_capacity
    )
    total = volume + volume_ml
    state[i, DENSITY] *= volume / total
    state[i, LACTATE_MM] *= volume / total
    state[i, GLUCOSE_MM] = (
        state[i, GLUCOSE_MM] * volume + params[i, MEDIUM_GLUCOSE_MM] * volume_ml
    ) / total
    state[i, VOLUME_ML] = total


# Below this |x| the cubic Taylor series of exp(x) is exact to double precision: the first term
# left out, x⁴/24 < 4.2e-18, is under a twentieth of an ulp of 1.
_EXP_SERIES_LIMIT = 1e-4
# Below this |x| the Taylor series of expm1(x) to x¹¹/11! is exact to double precision: the
# first term left out, x¹²/12! < 1.4e-20 (relative to |x| ≥ 1e-19), is far below an ulp.
_EXPM1_SERIES_LIMIT = 0.125
_EXPM1_COEFFICIENTS = tuple(1.0 / math.factorial(k) for k in range(11, 0, -1))  # 1/11! … 1/1!


@register_jitable(inline="always")
def _exp_small(x: float) -> float:
    """exp(x) for the tiny exponents of one step (|x| ≈ 1e-5 at 1 s steps), math.exp otherwise.

    The cubic series is written as (1 + x) + x²·(1/2 + x/6) so that x² and the bracket are
    computed side by side: the density's step-to-step dependency chain goes through this
    function, and on an out-of-order core its latency, not its operation count, sets the speed.
    """
    if -_EXP_SERIES_LIMIT < x < _EXP_SERIES_LIMIT:
        return (1.0 + x) + (x * x) * (0.5 + x * (1.0 / 6.0))
    return math.exp(x)


@register_jitable(inline="always")
def _expm1_small(x: float) -> float:
    """exp(x) − 1 for the small |x| of a per-step gain (dt/τ ≈ 0.05), math.expm1 otherwise.

    A call into libm costs more than the polynomial: the compiler has to save and restore every
    live register around it, on every `plant_step` call for every unit.
    """
    if -_EXPM1_SERIES_LIMIT < x < _EXPM1_SERIES_LIMIT:
        p = 0.0
        for c in _EXPM1_COEFFICIENTS:  # Horner: x·(1 + x·(1/2! + x·(1/3! + …)))
            p = p * x + c
        return p * x
    return math.expm1(x)


@register_jitable
def sync_lag(state: np.ndarray, params: np.ndarray, i: int) -> None:
    """Re-derive unit i's LAG_REMAINING, exp(−age/τ_lag), from AGE_H (which a caller has set).

    Kept out of `advance_unit`: a libm call on a branch of the step kernel, even one never
    taken, makes the compiler save and restore registers on the hot path (≈ +10 % on the twin).
    """
    state[i, LAG_REMAINING] = math.exp(-state[i, AGE_H] / params[i, LAG_H])
    state[i, LAG_AGE_H] = state[i, AGE_H]


class StepConstants(NamedTuple):
    """What a fixed step of `dt` seconds needs from one unit's parameters, computed once.

    `plant_step` derives them on every call (parameters may change between calls: an ambient
    step); a loop that keeps `dt` and the parameters fixed, like the digital twin, derives them
    once, as the hoisting of loop invariants a compiler would do if it knew the parameter array
    is not written by the step.
    """

    dt: float
    dt_h: float
    heater_w: float
    ua: float
    ua_ambient: float  # UA·T_amb
    vessel: float
    t_min: float
    t_opt: float
    t_max: float
    mu_max_dt: float  # μ_max·dt
    glucose_k: float
    lactate_k: float
    lactate_yield: float
    medium_glucose: float
    starvation_dt: float  # k_s·dt
    fed_death_dt: float  # (k_d0 + k_s)·dt
    inverse_density_max: float
    uptake_dt: float  # glucose uptake, mM per (cell/mL) per step
    sensor_gain: float  # 1 − exp(−dt/τ_sensor)
    lag_decay: float  # exp(−dt/τ_lag)


@register_jitable(inline="always")
def step_constants(params: np.ndarray, i: int, dt: float) -> StepConstants:
    """Unit i's `StepConstants` for steps of `dt` seconds.

    The two exponentials come from short series, exact to double precision in their ranges,
    rather than from libm: a call costs more than the polynomial, since the compiler saves and
    restores every live register around it.
    """
    dt_h = dt / 3600.0
    starvation_dt = params[i, STARVATION_DEATH_PER_H] * dt_h
    return StepConstants(
        dt=dt,
        dt_h=dt_h,
        heater_w=params[i, HEATER_W],
        ua=params[i, UA_W_PER_K],
        ua_ambient=params[i, UA_W_PER_K] * params[i, AMBIENT_C],
        vessel=params[i, VESSEL_J_PER_K],
        t_min=params[i, T_MIN],
        t_opt=params[i, T_OPT],
        t_max=params[i, T_MAX],
        mu_max_dt=params[i, MU_MAX_PER_H] * dt_h,
        glucose_k=params[i, GLUCOSE_K_MM],
        lactate_k=params[i, LACTATE_K_MM],
        lactate_yield=params[i, LACTATE_YIELD],
        medium_glucose=params[i, MEDIUM_GLUCOSE_MM],
        starvation_dt=starvation_dt,
        fed_death_dt=params[i, DEATH_PER_H] * dt_h + starvation_dt,
        inverse_density_max=1.0 / params[i, DENSITY_MAX],
        uptake_dt=(
            params[i, GLUCOSE_UPTAKE_PMOL_PER_CELL_H] * _MMOL_PER_L_H_PER_CELL_PER_ML * dt_h
        ),
        sensor_gain=-_expm1_small(-dt / params[i, SENSOR_TAU_S]),
        lag_decay=_exp_small(-dt_h / params[i, LAG_H]),
    )


@register_jitable(inline="always")
def advance_unit(
    state: np.ndarray,
    i: int,
    c: StepConstants,
    heater_duty: float,
    inflow_ml: float,
    inflow_temperature: float,
    outflow_ml: float,
    heater_works: bool,
    steps: int,
) -> None:
    """Advance unit `i` by `steps` fixed steps of `c.dt` seconds, in place (see `plant_step`).

    The per-unit law, inlined by numba into every kernel that calls it. It expects
    LAG_REMAINING to hold exp(−age/τ_lag) (`plant_step` re-derives it when a caller has set
    AGE_H). The step loop works on local copies of the unit's state and writes them back once,
    and its algebra is arranged for short dependency chains, because this loop is the digital
    twin's whole cost (SPEC §11); the model is the one in the module docstring:

    * the Euler step of the thermal balance, T + dt/C·(P − UA·(T − T_amb)), is evaluated as
      a·T + b with a = 1 − UA·dt/C and b = (P + UA·T_amb)·dt/C, both fixed while the volume is;
    * the growth exponent (μ − k_d)·dt is evaluated as g − h·X: with the Monod term m,
      μ = μ_T·m·(1 − X/X_max) (μ_T: rate at the current temperature, lag and lactate) and
      k_d = k_d0 + k_s·(1 − m), so g = m·(μ_T + k_s)·dt − (k_d0 + k_s)·dt and
      h = m·μ_T·dt/X_max: the density X enters only through one product and one difference;
    * the sensor's lag S + g·(T − S) is evaluated as (1 − g)·S + g·T: the sensor reading closes
      the loop through the controller, and this form is one operation shorter on that path.
    """
    dt, dt_h = c.dt, c.dt_h
    duty = min(max(heater_duty, 0.0), 1.0) if heater_works else 0.0
    power = c.heater_w * duty
    in_ml = inflow_ml / steps
    out_ml = outflow_ml / steps
    ua, ua_ambient, vessel = c.ua, c.ua_ambient, c.vessel
    t_min, t_opt, t_max = c.t_min, c.t_opt, c.t_max
    mu_max_dt, glucose_k, lactate_k = c.mu_max_dt, c.glucose_k, c.lactate_k
    starvation_dt, fed_death_dt = c.starvation_dt, c.fed_death_dt
    inverse_density_max, uptake_dt, lactate_yield = (
        c.inverse_density_max,
        c.uptake_dt,
        c.lactate_yield,
    )
    sensor_gain, lag_decay = c.sensor_gain, c.lag_decay
    sensor_keep = 1.0 - sensor_gain

    temperature = state[i, TEMPERATURE]
    sensor = state[i, SENSOR_TEMPERATURE]
    volume = state[i, VOLUME_ML]
    density = state[i, DENSITY]
    age = state[i, AGE_H]
    glucose = state[i, GLUCOSE_MM]
    lactate = state[i, LACTATE_MM]
    lag_remaining = state[i, LAG_REMAINING]

    dt_over_capacity = dt / (WATER_J_PER_ML_K * volume + vessel)
    thermal_a = 1.0 - ua * dt_over_capacity
    thermal_b = (power + ua_ambient) * dt_over_capacity
    for _ in range(steps):
        temperature = thermal_a * temperature + thermal_b
        age += dt_h
        lag_remaining *= lag_decay
        monod = glucose_factor(glucose, glucose_k)
        rate_dt = (
            mu_max_dt
            * cardinal_temperature_factor(temperature, t_min, t_opt, t_max)
            * (1.0 - lag_remaining)
            * (lactate_k / (lactate_k + lactate))
        )
        net_dt = monod * (rate_dt + starvation_dt) - fed_death_dt
        crowding_dt = monod * (rate_dt * inverse_density_max)
        used = min((uptake_dt * density) * monod, glucose)
        density *= _exp_small(net_dt - crowding_dt * density)
        glucose -= used
        lactate += lactate_yield * used

        if in_ml > 0.0:
            # Fresh medium mixes in (as `add_medium`): heat by heat capacity, cells and
            # lactate diluted by V/(V+ΔV), glucose towards the medium's concentration.
            capacity = WATER_J_PER_ML_K * volume + vessel
            added_capacity = WATER_J_PER_ML_K * in_ml
            temperature = (capacity * temperature + added_capacity * inflow_temperature) / (
                capacity + added_capacity
            )
            total = volume + in_ml
            density *= volume / total
            lactate *= volume / total
            glucose = (glucose * volume + c.medium_glucose * in_ml) / total
            volume = total
        if out_ml > 0.0:
            volume = max(volume - out_ml, 0.0)
        if in_ml > 0.0 or out_ml > 0.0:
            dt_over_capacity = dt / (WATER_J_PER_ML_K * volume + vessel)
            thermal_a = 1.0 - ua * dt_over_capacity
            thermal_b = (power + ua_ambient) * dt_over_capacity

        sensor = sensor * sensor_keep + temperature * sensor_gain

    state[i, TEMPERATURE] = temperature
    state[i, SENSOR_TEMPERATURE] = sensor
    state[i, VOLUME_ML] = volume
    state[i, DENSITY] = density
    state[i, AGE_H] = age
    state[i, GLUCOSE_MM] = glucose
    state[i, LACTATE_MM] = lactate
    state[i, LAG_REMAINING] = lag_remaining
    state[i, LAG_AGE_H] = age


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
    during a control period adds its volume gradually as it would. Inflow is fresh medium.
    """
    for i in range(state.shape[0]):
        if state[i, LAG_AGE_H] != state[i, AGE_H]:
            sync_lag(state, params, i)
        advance_unit(
            state,
            i,
            step_constants(params, i, dt),
            heater_duty[i],
            inflow_ml[i],
            inflow_temperature[i],
            outflow_ml[i],
            heater_works[i],
            steps,
        )
