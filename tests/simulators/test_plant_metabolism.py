"""Glucose, lactate, carrying capacity and death: closed forms and the Python reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulators import plant

# Growth, death and the heater out of the way unless a test turns them on.
STILL = {"mu_max_per_h": 0.0, "death_per_h": 0.0, "starvation_death_per_h": 0.0}


def _unit(parameters: plant.PlantParameters, **initial: float):
    state = plant.InitialConditions(**initial).as_row()[None, :].copy()
    return state, parameters.as_row()[None, :]


def _run(state, params, *, steps: int, inflow=0.0, outflow=0.0, dt=1.0, kernel=plant.plant_step):
    kernel(
        state,
        params,
        np.array([0.0]),
        np.array([inflow]),
        np.array([37.0]),
        np.array([outflow]),
        np.array([True]),
        dt,
        steps,
    )


def test_glucose_is_used_at_the_specific_rate_and_becomes_lactate_by_the_yield() -> None:
    # K_G = 0: no Monod slowdown, so the uptake is linear in time and has a closed form.
    parameters = plant.PlantParameters(glucose_k_mm=0.0, **STILL)
    state, params = _unit(parameters, density=2.0e6, temperature=37.0)
    hours = 6
    _run(state, params, steps=hours * 3600)
    used = parameters.glucose_uptake_pmol_per_cell_h * 1e-9 * 1000.0 * 2.0e6 * hours
    assert used == pytest.approx(0.96)  # 0.08 pmol/cell/h × 2e9 cells/L × 6 h
    assert state[0, plant.GLUCOSE_MM] == pytest.approx(11.1 - used, rel=1e-9)
    assert state[0, plant.LACTATE_MM] == pytest.approx(parameters.lactate_yield * used, rel=1e-9)


def test_the_carbon_balance_holds_exactly_while_cells_grow_and_glucose_runs_out() -> None:
    parameters = plant.PlantParameters(lag_h=1e-6)
    state, params = _unit(parameters, density=1.0e7, temperature=37.0, glucose_mm=2.0)
    _run(state, params, steps=24 * 3600)
    used = 2.0 - state[0, plant.GLUCOSE_MM]
    assert state[0, plant.GLUCOSE_MM] >= 0.0
    assert used > 1.9  # essentially all of it at 1e7 cells/mL
    assert state[0, plant.LACTATE_MM] == pytest.approx(parameters.lactate_yield * used, rel=1e-12)


def test_a_feed_dilutes_cells_and_lactate_by_v_over_v_plus_x_and_brings_glucose() -> None:
    parameters = plant.PlantParameters(glucose_uptake_pmol_per_cell_h=0.0, **STILL)
    state, params = _unit(
        parameters, temperature=37.0, volume_ml=200.0, glucose_mm=3.0, lactate_mm=20.0
    )
    _run(state, params, steps=10, inflow=50.0)
    ratio = 200.0 / 250.0
    assert state[0, plant.VOLUME_ML] == pytest.approx(250.0)
    assert state[0, plant.DENSITY] == pytest.approx(0.5e6 * ratio, rel=1e-12)
    assert state[0, plant.LACTATE_MM] == pytest.approx(20.0 * ratio, rel=1e-12)
    expected_glucose = (3.0 * 200.0 + parameters.medium_glucose_mm * 50.0) / 250.0
    assert state[0, plant.GLUCOSE_MM] == pytest.approx(expected_glucose, rel=1e-12)


def test_add_medium_at_once_is_the_same_mixing_the_pumps_do() -> None:
    parameters = plant.PlantParameters(ua_w_per_k=0.0, **STILL)
    state, params = _unit(parameters, temperature=37.0, lactate_mm=10.0)
    plant.add_medium(state, params, 0, 50.0, 4.0)
    capacity = plant.WATER_J_PER_ML_K * 100.0 + parameters.vessel_j_per_k
    added = plant.WATER_J_PER_ML_K * 50.0
    assert state[0, plant.TEMPERATURE] == pytest.approx(
        (capacity * 37 + added * 4) / (capacity + added)
    )
    assert state[0, plant.VOLUME_ML] == 150.0
    assert state[0, plant.LACTATE_MM] == pytest.approx(10.0 * 100.0 / 150.0)


def test_harvest_leaves_concentrations_unchanged() -> None:
    parameters = plant.PlantParameters(glucose_uptake_pmol_per_cell_h=0.0, **STILL)
    state, params = _unit(parameters, temperature=37.0, lactate_mm=5.0)
    _run(state, params, steps=10, outflow=40.0)
    assert state[0, plant.VOLUME_ML] == pytest.approx(60.0)
    assert state[0, plant.GLUCOSE_MM] == pytest.approx(11.1)
    assert state[0, plant.LACTATE_MM] == pytest.approx(5.0)


def _rate_per_h(parameters: plant.PlantParameters, **initial: float) -> float:
    state, params = _unit(parameters, temperature=37.0, **initial)
    before = state[0, plant.DENSITY]
    _run(state, params, steps=1, dt=60.0)
    return math.log(state[0, plant.DENSITY] / before) * 60.0


def test_lactate_at_its_constant_halves_growth_and_no_glucose_stops_it() -> None:
    free = plant.PlantParameters(
        ua_w_per_k=0.0, lag_h=1e-9, death_per_h=0.0, starvation_death_per_h=0.0, density_max=1e30
    )
    mu = _rate_per_h(free)
    assert mu == pytest.approx(free.mu_max_per_h * 11.1 / 11.6, rel=1e-3)
    assert _rate_per_h(free, lactate_mm=30.0) == pytest.approx(mu / 2, rel=1e-3)
    assert _rate_per_h(free, glucose_mm=0.0) == 0.0


def test_starving_cells_die_and_crowded_cells_stop_at_the_carrying_capacity() -> None:
    parameters = plant.PlantParameters(ua_w_per_k=0.0, lag_h=1e-9)
    assert _rate_per_h(parameters, glucose_mm=0.0) == pytest.approx(
        -(parameters.death_per_h + parameters.starvation_death_per_h), rel=1e-6
    )
    crowded = plant.PlantParameters(  # held at 37 °C (no heat loss), fed, immortal
        ua_w_per_k=0.0,
        lag_h=1e-9,
        death_per_h=0.0,
        starvation_death_per_h=0.0,
        glucose_uptake_pmol_per_cell_h=0.0,
    )
    state, params = _unit(crowded, temperature=37.0, density=2.9e7)
    _run(state, params, steps=20 * 24 * 60, dt=60.0)
    assert 2.99e7 < state[0, plant.DENSITY] <= crowded.density_max


def test_numba_and_python_agree_bit_for_bit_through_starvation_feeds_and_harvests() -> None:
    n = 4
    results = []
    for kernel in (plant.plant_step, plant.plant_step.py_func):
        state = np.tile(plant.InitialConditions(density=5e6, temperature=37.0).as_row(), (n, 1))
        params = np.tile(plant.PlantParameters(lag_h=2.0).as_row(), (n, 1))
        rng = np.random.default_rng(11)
        for _ in range(300):
            kernel(
                state,
                params,
                rng.random(n),
                rng.random(n) * 5.0 * (rng.random(n) > 0.9),
                rng.uniform(4.0, 37.0, n),
                rng.random(n) * 2.0 * (rng.random(n) > 0.95),
                rng.random(n) > 0.1,
                60.0,
                10,
            )
        results.append(state)
    assert np.array_equal(results[0], results[1])
    assert (results[0][:, plant.GLUCOSE_MM] < 1.0).any()  # the run did reach starvation
