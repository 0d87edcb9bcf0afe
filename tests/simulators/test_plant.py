"""The plant model: closed forms, mass balance and bit-identity with its Python reference."""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pytest

from simulators import plant


def _one_unit(parameters: plant.PlantParameters | None = None, **initial: float):
    state = plant.InitialConditions(**initial).as_row()[None, :].copy()
    params = (parameters or plant.PlantParameters()).as_row()[None, :]
    return state, params


def _step(
    state,
    params,
    *,
    duty=0.0,
    inflow=0.0,
    inflow_t=37.0,
    outflow=0.0,
    dt=1.0,
    steps=1,
    heater_works=True,
    kernel=plant.plant_step,
):
    kernel(
        state,
        params,
        np.array([duty]),
        np.array([inflow]),
        np.array([inflow_t]),
        np.array([outflow]),
        np.array([heater_works]),
        dt,
        steps,
    )


def test_steady_state_temperature_matches_the_closed_form() -> None:
    parameters = plant.PlantParameters()
    state, params = _one_unit(parameters)
    _step(state, params, duty=0.5, steps=6 * 3600 * 2)  # 12 h, many time constants
    expected = plant.steady_state_temperature(parameters, 0.5)
    assert state[0, plant.TEMPERATURE] == pytest.approx(expected, abs=1e-3)
    assert state[0, plant.SENSOR_TEMPERATURE] == pytest.approx(expected, abs=1e-3)


def test_warm_up_at_full_power_takes_about_25_minutes_at_200_ml() -> None:
    state, params = _one_unit(volume_ml=200.0)
    minutes = 0
    while state[0, plant.TEMPERATURE] < 37.0:
        _step(state, params, duty=1.0, steps=60)
        minutes += 1
    assert 22 <= minutes <= 28


def test_a_feed_dilutes_density_by_v_over_v_plus_x() -> None:
    parameters = plant.PlantParameters(
        mu_max_per_h=0.0, death_per_h=0.0, starvation_death_per_h=0.0
    )
    state, params = _one_unit(parameters, temperature=37.0)
    before_density = state[0, plant.DENSITY]
    _step(state, params, inflow=25.0, steps=10)
    assert state[0, plant.VOLUME_ML] == pytest.approx(125.0)
    assert state[0, plant.DENSITY] == pytest.approx(before_density * 100.0 / 125.0, rel=1e-12)


def test_a_cold_addition_mixes_by_heat_capacity() -> None:
    parameters = plant.PlantParameters(ua_w_per_k=0.0)
    state, params = _one_unit(parameters, temperature=37.0)
    _step(state, params, inflow=20.0, inflow_t=4.0)
    capacity = plant.WATER_J_PER_ML_K * 100.0 + parameters.vessel_j_per_k
    added = plant.WATER_J_PER_ML_K * 20.0
    assert state[0, plant.TEMPERATURE] == pytest.approx(
        (capacity * 37 + added * 4) / (capacity + added)
    )


def test_harvest_removes_volume_but_not_density_and_never_goes_negative() -> None:
    state, params = _one_unit(temperature=37.0)
    density = state[0, plant.DENSITY]
    _step(state, params, outflow=150.0, steps=10)
    assert state[0, plant.VOLUME_ML] == 0.0
    assert state[0, plant.DENSITY] == pytest.approx(density, rel=1e-4)


def test_doubling_time_at_the_optimum_is_as_configured_once_activated() -> None:
    # No death, lag, crowding or metabolic limits: only the temperature factor remains.
    parameters = plant.PlantParameters(
        death_per_h=0.0,
        lag_h=1e-6,
        density_max=1e30,
        glucose_k_mm=0.0,
        glucose_uptake_pmol_per_cell_h=0.0,
        starvation_death_per_h=0.0,
    )
    state, params = _one_unit(parameters, temperature=37.0)
    # Hold the liquid at 37 °C exactly: the heater supplies the loss to ambient.
    duty = parameters.ua_w_per_k * (37.0 - parameters.ambient_c) / parameters.heater_w
    start = state[0, plant.DENSITY]
    _step(state, params, duty=duty, steps=24 * 3600)
    assert state[0, plant.DENSITY] / start == pytest.approx(2.0, rel=1e-3)


def test_no_growth_outside_the_cardinal_temperatures() -> None:
    for temperature in (20.0, 25.0, 42.0, 45.0):
        assert plant.cardinal_temperature_factor(temperature, 25.0, 37.0, 42.0) == 0.0
    assert plant.cardinal_temperature_factor(37.0, 25.0, 37.0, 42.0) == pytest.approx(1.0)


def test_a_failed_heater_has_no_effect() -> None:
    state, params = _one_unit()
    _step(state, params, duty=1.0, steps=600, heater_works=False)
    assert state[0, plant.TEMPERATURE] == pytest.approx(22.0)


def test_numba_kernel_is_bit_identical_to_its_python_reference() -> None:
    """Same random drive (heater, feeds at 30 °C, harvests) into both; the reference is plain
    Python all the way down (test_references_run_no_compiled_code.py), so this compares two
    implementations. The drive must also have had the effects the model says it has."""
    n = 5
    states = []
    for kernel in (plant.plant_step, plant.plant_step.py_func):
        state = np.tile(plant.InitialConditions().as_row(), (n, 1))
        params = np.tile(plant.PlantParameters().as_row(), (n, 1))
        drive = np.random.default_rng(7)  # the same seed: both kernels get the same drive
        fed, harvested = np.zeros(n), np.zeros(n)
        for _ in range(200):
            duty = drive.random(n)
            inflow = drive.random(n) * (drive.random(n) > 0.8)
            outflow = drive.random(n) * 0.5 * (drive.random(n) > 0.9)
            kernel(
                state,
                params,
                duty,
                inflow,
                np.full(n, 30.0),
                outflow,
                np.ones(n, dtype=np.bool_),
                1.0,
                5,
            )
            fed += inflow
            harvested += outflow
        states.append(state)
    assert np.array_equal(states[0], states[1])
    state = states[0]
    assert all(math.isfinite(v) for v in state.ravel())
    assert len({tuple(row) for row in state}) == n  # each unit had a drive of its own
    assert (fed > 10.0).all() and (harvested > 2.0).all()  # every unit was fed and harvested

    # Volume balance: what went in minus what came out, to rounding.
    assert state[:, plant.VOLUME_ML] == pytest.approx(100.0 + fed - harvested, rel=1e-12)
    # 200 periods of 5 one-second steps: 1000 s of age, the lag factor exp(−age/12 h) with it.
    age_h = 1000.0 / 3600.0
    assert state[:, plant.AGE_H] == pytest.approx(np.full(n, age_h), rel=1e-12)
    assert state[:, plant.LAG_REMAINING] == pytest.approx(np.full(n, math.exp(-age_h / 12.0)))
    # The heater's mean duty is 0.5: the liquid follows the half-power warm-up from 22 °C,
    # 22 + 12.5·(1 − exp(−t/τ)) with τ = C/UA ≈ (4.18·107 + 160)/0.6 ≈ 1010 s, ≈ 29.9 °C after
    # 1000 s (±1 K: the duty's randomness and the 30 °C feeds); the 20 s sensor lags it slightly.
    tau_s = (plant.WATER_J_PER_ML_K * 107.0 + 160.0) / 0.6
    warm = 22.0 + 12.5 * (1.0 - math.exp(-1000.0 / tau_s))
    assert state[:, plant.TEMPERATURE] == pytest.approx(np.full(n, warm), abs=1.0)
    sensor_lag = state[:, plant.TEMPERATURE] - state[:, plant.SENSOR_TEMPERATURE]
    assert (np.abs(sensor_lag) < 0.3).all()
    # Cells leave only with harvests (growth is nil this early in the lag, death ≈ 0.05 %): a
    # harvest of h mL removes between h/V_max and h/V_min of them; feeds only dilute.
    left = state[:, plant.DENSITY] * state[:, plant.VOLUME_ML] / (0.5e6 * 100.0)
    assert (left >= (1.0 - harvested / 100.0) * 0.999).all()
    assert (left <= 1.0 - harvested / (100.0 + fed)).all()
    # Lactate is made from glucose at the yield 1.6, and feeds dilute lactate and the glucose
    # deficit alike, so lactate = 1.6 · (11.1 mM − glucose) exactly, fed or not.
    deficit = 11.1 - state[:, plant.GLUCOSE_MM]
    assert (deficit > 0.005).all()  # ≈ 0.036 mM/h of uptake at 0.45e6 cells/mL
    assert state[:, plant.LACTATE_MM] == pytest.approx(1.6 * deficit, rel=1e-9)


def test_parameter_rows_follow_the_kernels_column_indices() -> None:
    """The dataclasses (plant_parameters.py) and the kernels' column indices (plant.py) live in
    two files; a field added or moved in one and not the other would feed the kernels the wrong
    constants without any error."""
    parameters = plant.PlantParameters()
    row = parameters.as_row()
    assert len(row) == plant.PARAMETER_COLUMNS
    for field in fields(parameters):
        assert row[getattr(plant, field.name.upper())] == getattr(parameters, field.name)
    start = plant.InitialConditions(temperature=30.0, volume_ml=150.0, density=1e6)
    state = start.as_row()
    assert len(state) == plant.STATE_COLUMNS
    assert state[plant.TEMPERATURE] == state[plant.SENSOR_TEMPERATURE] == 30.0
    assert (state[plant.VOLUME_ML], state[plant.DENSITY]) == (150.0, 1e6)
    assert (state[plant.GLUCOSE_MM], state[plant.LACTATE_MM]) == (11.1, 0.0)
    assert (state[plant.AGE_H], state[plant.LAG_REMAINING], state[plant.LAG_AGE_H]) == (0, 1, 0)
