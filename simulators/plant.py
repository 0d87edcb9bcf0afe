"""Closed-loop physics and biology of every cartridge of a virtual instrument.

The plant is what the controllers are tuned against, so it reacts to every actuator: heater power
warms the liquid, feeding adds volume, dilutes cells and metabolites and mixes in medium at its own
temperature, harvesting removes liquid. All units advance in one numba call over arrays;
`plant_step.py_func` is the pure-Python reference that tests compare bit for bit.

Model (per unit, fixed step `dt`, explicit Euler for the liquid, exact exponential for cells):

* thermal, lumped: C·dT/dt = P·u − UA·(T − T_amb), with C = cp·V + C_vessel following the liquid
  volume; the temperature sensor is a first-order lag of the liquid temperature;
* growth: dX/dt = (μ − k_d)·X with
  μ = μ_max · f(T) · lag(age) · G/(K_G + G) · K_L/(K_L + L) · (1 − X/X_max), where f is the
  cardinal temperature model with inflection (Rosso et al. 1993), lag(age) = 1 − exp(−age/τ_lag)
  the activation lag of T cells after CD3/CD28 stimulation, the Monod term limits growth as
  glucose G runs out and the non-competitive term inhibits it as lactate L accumulates;
  k_d = k_d0 + k_starve · (1 − G/(K_G + G)): cells die faster once glucose is exhausted;
* metabolism: glucose uptake q_G·X·G/(K_G + G) (mmol/L/h with X in cells/mL, hence the 1000
  mL/L), and lactate made from it with the molar yield Y_L/G, so lactate made = Y·glucose used
  exactly (the balance tests check this);
* mass balance: inflow is fresh medium (glucose at its medium concentration, no lactate, no
  cells) at its own temperature: it mixes heat by heat capacity and dilutes cells and lactate by
  V/(V+ΔV); outflow removes liquid at the current concentrations.

Parameter values and their sources are listed with `PlantParameters`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from numba import njit

# State columns (new columns are appended: callers index by name, never by position).
TEMPERATURE, SENSOR_TEMPERATURE, VOLUME_ML, DENSITY, AGE_H, GLUCOSE_MM, LACTATE_MM = range(7)
STATE_COLUMNS = 7

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


@dataclass(frozen=True)
class PlantParameters:
    """One unit's physical and biological constants.

    Sources and assumptions:
    heater_w 15 W and ua_w_per_k 0.6 W/K: assumption for a 1 L single-use cartridge in an
    incubator-less housing, chosen so a 200 mL fill warms 22 → 37 °C in ≈ 25 min at full power.
    vessel_j_per_k 160 J/K: ≈ 100 g of polymer and sensor housings at ≈ 1.6 J/(g·K) (assumption).
    sensor_tau_s 20 s: typical Pt100 in a thermowell, 10–30 s (vendor data sheets).
    mu_max_per_h ln2/24 h: T-cell doubling ≈ 24 h at the optimum (literature 13–24 h).
    t_min/t_opt/t_max 25/37/42 °C: cardinal temperatures of mammalian cells (assumption; T cells
    stop proliferating near 25 °C and suffer heat stress above ≈ 41 °C).
    density_max 3e7 cells/mL: practical ceiling of T-cell suspension culture (issue 3).
    death_per_h 0.002: ≈ 5 % loss per day of viability without nutrient stress (assumption).
    lag_h 12 h: activation lag after CD3/CD28 stimulation (assumption; 12–36 h reported).
    glucose_k_mm 0.5 mM: Monod constant for glucose; mammalian cell lines report 0.1–1 mM
    (assumption within that range).
    lactate_k_mm 30 mM: lactate concentration that halves growth; T-cell proliferation is
    markedly impaired at 20–40 mM (assumption within the reported range).
    glucose_uptake_pmol_per_cell_h 0.08: activated T cells take up ≈ 0.05–0.1 pmol/cell/h
    (assumption; gives ≈ 4 mM/day at 2×10⁶ cells/mL, as seen in CAR-T expansions).
    lactate_yield 1.6 mol/mol: aerobic glycolysis of activated T cells converts most glucose to
    lactate (theoretical maximum 2; 1.5–1.8 typical for proliferating lymphocytes; assumption).
    medium_glucose_mm 11.1 mM: 2 g/L, the glucose of RPMI 1640 and of common serum-free T-cell
    media (assumption for the medium in the bags).
    starvation_death_per_h 0.02: extra death rate once glucose is exhausted, ≈ 40 % per day
    (assumption).
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
    glucose_k_mm: float = 0.5
    lactate_k_mm: float = 30.0
    glucose_uptake_pmol_per_cell_h: float = 0.08
    lactate_yield: float = 1.6
    medium_glucose_mm: float = 11.1
    starvation_death_per_h: float = 0.02

    def as_row(self) -> np.ndarray:
        return np.array(list(asdict(self).values()), dtype=np.float64)


@dataclass(frozen=True)
class InitialConditions:
    """SPEC §1: a unit starts at 22 °C with 100 mL of medium at 0.5×10⁶ viable cells/mL.

    The medium is fresh: glucose at the medium's concentration, no lactate yet.
    """

    temperature: float = 22.0
    volume_ml: float = 100.0
    density: float = 0.5e6
    glucose_mm: float = 11.1
    lactate_mm: float = 0.0

    def as_row(self) -> np.ndarray:
        return np.array(
            [
                self.temperature,
                self.temperature,
                self.volume_ml,
                self.density,
                0.0,
                self.glucose_mm,
                self.lactate_mm,
            ],
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


@njit(cache=True)
def _exp_small(x: float) -> float:
    """exp(x) for the tiny exponents of one step (|x| ≲ 1e-4 at 1 s steps): a fourth-order
    Taylor series is exact to double precision there and several times cheaper than exp."""
    if -1e-3 < x < 1e-3:
        return 1.0 + x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0))))
    return math.exp(x)


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
    n = state.shape[0]
    dt_h = dt / 3600.0
    for i in range(n):
        duty = min(max(heater_duty[i], 0.0), 1.0) if heater_works[i] else 0.0
        power = params[i, HEATER_W] * duty
        in_ml = inflow_ml[i] / steps
        out_ml = outflow_ml[i] / steps
        t_in = inflow_temperature[i]
        sensor_gain = 1.0 - math.exp(-dt / params[i, SENSOR_TAU_S])
        uptake = params[i, GLUCOSE_UPTAKE_PMOL_PER_CELL_H] * _MMOL_PER_L_H_PER_CELL_PER_ML
        # exp(-age/τ_lag) advanced by a constant factor per step: one exp per call, not per step.
        lag_remaining = math.exp(-state[i, AGE_H] / params[i, LAG_H])
        lag_decay = math.exp(-dt_h / params[i, LAG_H])
        volume_changes = in_ml > 0.0 or out_ml > 0.0
        inverse_density_max = 1.0 / params[i, DENSITY_MAX]
        dt_over_capacity = 0.0
        for step in range(steps):
            temperature = state[i, TEMPERATURE]
            density = state[i, DENSITY]
            glucose = state[i, GLUCOSE_MM]
            lactate = state[i, LACTATE_MM]

            if volume_changes or step == 0:
                capacity = WATER_J_PER_ML_K * state[i, VOLUME_ML] + params[i, VESSEL_J_PER_K]
                dt_over_capacity = dt / capacity
            heat_flow = power - params[i, UA_W_PER_K] * (temperature - params[i, AMBIENT_C])
            temperature += heat_flow * dt_over_capacity

            age = state[i, AGE_H] + dt_h
            lag_remaining *= lag_decay
            monod = glucose_factor(glucose, params[i, GLUCOSE_K_MM])
            growth = (
                params[i, MU_MAX_PER_H]
                * cardinal_temperature_factor(
                    temperature, params[i, T_MIN], params[i, T_OPT], params[i, T_MAX]
                )
                * (1.0 - lag_remaining)
                * monod
                * (params[i, LACTATE_K_MM] / (params[i, LACTATE_K_MM] + lactate))
                * (1.0 - density * inverse_density_max)
            )
            death = params[i, DEATH_PER_H] + params[i, STARVATION_DEATH_PER_H] * (1.0 - monod)

            used = min(uptake * density * monod * dt_h, glucose)
            state[i, GLUCOSE_MM] = glucose - used
            state[i, LACTATE_MM] = lactate + params[i, LACTATE_YIELD] * used
            state[i, DENSITY] = density * _exp_small((growth - death) * dt_h)
            state[i, TEMPERATURE] = temperature
            state[i, AGE_H] = age

            add_medium(state, params, i, in_ml, t_in)
            if out_ml > 0.0:
                state[i, VOLUME_ML] = max(state[i, VOLUME_ML] - out_ml, 0.0)

            state[i, SENSOR_TEMPERATURE] += (
                state[i, TEMPERATURE] - state[i, SENSOR_TEMPERATURE]
            ) * sensor_gain


def steady_state_temperature(params: PlantParameters, duty: float) -> float:
    """Closed form of the thermal balance at a fixed heater duty (for tests and feed-forward)."""
    return params.ambient_c + params.heater_w * duty / params.ua_w_per_k
