"""The plant kernel's arithmetic: short series instead of libm, the carried activation lag, and
the per-unit law that the digital twin inlines, against `plant_step` and against Python."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from benchmarks import digital_twin
from shuttled.control import temperature as control
from simulators import plant

ULP_OF_ONE = 2.0**-52


@njit(cache=True)
def _exp_small_numba(x: float) -> float:
    return plant._exp_small(x)


@njit(cache=True)
def _expm1_small_numba(x: float) -> float:
    return plant._expm1_small(x)


def test_the_step_exponential_series_is_within_an_ulp_of_libm() -> None:
    xs = np.concatenate(
        [np.random.default_rng(1).uniform(-1e-4, 1e-4, 20000), [0.0, 1e-300, -1e-12]]
    )
    for x in xs:
        value = plant._exp_small(x)
        assert value == _exp_small_numba(x)
        assert abs(value - math.exp(x)) <= ULP_OF_ONE
    for x in (1e-4, -1e-4, 0.3, -5.0):  # outside the series' range: libm itself
        assert plant._exp_small(x) == math.exp(x) == _exp_small_numba(x)


def test_the_gain_series_is_within_an_ulp_of_libm() -> None:
    xs = np.random.default_rng(2).uniform(-0.125, 0.125, 20000)
    for x in xs:
        value = plant._expm1_small(x)
        assert value == _expm1_small_numba(x)
        assert abs(value - math.expm1(x)) <= abs(math.expm1(x)) * ULP_OF_ONE
    for x in (0.125, -0.125, 1.0, -3.0):
        assert plant._expm1_small(x) == math.expm1(x) == _expm1_small_numba(x)


def _run(state: np.ndarray, params: np.ndarray, steps: int, calls: int) -> None:
    for _ in range(calls):
        plant.plant_step(
            state,
            params,
            np.array([0.0]),
            np.zeros(1),
            np.full(1, 37.0),
            np.zeros(1),
            np.ones(1, dtype=np.bool_),
            1.0,
            steps,
        )


def test_the_carried_lag_is_the_closed_form_whatever_the_call_pattern() -> None:
    params = plant.PlantParameters(lag_h=2.0).as_row()[None, :]
    one_call = plant.InitialConditions().as_row()[None, :].copy()
    many_calls = one_call.copy()
    _run(one_call, params, steps=7200, calls=1)
    _run(many_calls, params, steps=5, calls=1440)
    for state in (one_call, many_calls):
        assert state[0, plant.AGE_H] == pytest.approx(2.0)
        assert state[0, plant.LAG_AGE_H] == state[0, plant.AGE_H]
        assert state[0, plant.LAG_REMAINING] == pytest.approx(math.exp(-1.0), rel=1e-12)
    np.testing.assert_allclose(one_call, many_calls, rtol=1e-12)


def test_a_caller_that_sets_the_age_gets_the_lag_of_that_age() -> None:
    # A harness may start from activated cells by setting AGE_H alone.
    parameters = plant.PlantParameters(  # held at 37 °C, no limits: only the lag is left
        ua_w_per_k=0.0,
        death_per_h=0.0,
        starvation_death_per_h=0.0,
        glucose_k_mm=0.0,
        glucose_uptake_pmol_per_cell_h=0.0,
        density_max=1e30,
    )
    params = parameters.as_row()[None, :]
    fresh = plant.InitialConditions(temperature=37.0).as_row()[None, :].copy()
    activated = fresh.copy()
    activated[0, plant.AGE_H] = 1000.0
    _run(fresh, params, steps=60, calls=1)
    _run(activated, params, steps=60, calls=1)
    assert activated[0, plant.LAG_REMAINING] == pytest.approx(math.exp(-(1000 + 1 / 60) / 12.0))
    fresh_rate = math.log(fresh[0, plant.DENSITY] / 0.5e6)
    activated_rate = math.log(activated[0, plant.DENSITY] / 0.5e6)
    assert fresh_rate < activated_rate / 100  # barely started vs full speed
    assert activated_rate == pytest.approx(parameters.mu_max_per_h / 60, rel=1e-6)


def test_the_twins_per_unit_law_is_plant_step_bit_for_bit() -> None:
    @njit
    def advance(
        state: np.ndarray,
        params: np.ndarray,
        duty: float,
        inflow: float,
        outflow: float,
        steps: int,
    ) -> None:
        constants = plant.step_constants(params, 0, 1.0)
        plant.advance_unit(state, 0, constants, duty, inflow, 20.0, outflow, True, steps)

    rng = np.random.default_rng(5)
    params = plant.PlantParameters().as_row()[None, :]
    by_unit = plant.InitialConditions().as_row()[None, :].copy()
    by_kernel = by_unit.copy()
    for _ in range(300):
        duty, inflow, outflow = rng.random(), rng.random() * (rng.random() > 0.8), 0.0
        advance(by_unit, params, duty, inflow, outflow, 5)
        plant.plant_step(
            by_kernel,
            params,
            np.array([duty]),
            np.array([inflow]),
            np.array([20.0]),
            np.array([outflow]),
            np.ones(1, dtype=np.bool_),
            1.0,
            5,
        )
    assert np.array_equal(by_unit, by_kernel)


def test_the_benchmarks_twin_is_bit_identical_to_its_python_reference() -> None:
    # Compiled afresh: numba's on-disk cache of the benchmark's loop is keyed on the benchmark's
    # source alone, and would not notice a change to the plant it inlines.
    twin_numba = njit(digital_twin.make_twin(plant.advance_unit, control.pid_unit))
    steps = 6 * 3600
    runs = []
    for twin in (twin_numba, digital_twin.twin_python):
        state, params, gains, pid_state = digital_twin.fresh()
        mean = twin(state, params, gains, pid_state, steps)
        runs.append((state, pid_state, mean))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert np.array_equal(runs[0][1], runs[1][1])
    assert runs[0][2] == runs[1][2]
    assert runs[0][0][0, plant.TEMPERATURE] == pytest.approx(37.0, abs=0.05)
