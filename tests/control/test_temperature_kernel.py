"""The batched temperature PID: bit-identity with its reference, saturation and closed loop."""

from __future__ import annotations

import numpy as np
import pytest

from shuttled.control import temperature as pid
from simulators import plant


def _arrays(n: int):
    gains = np.tile(pid.TemperatureGains().as_row(), (n, 1))
    return gains, np.zeros((n, pid.STATE_COLUMNS)), np.zeros(n)


def test_numba_kernel_is_bit_identical_to_its_python_reference() -> None:
    n = 16
    outputs = []
    for kernel in (pid.temperature_pid, pid.temperature_pid.py_func):
        rng = np.random.default_rng(3)
        gains, state, out = _arrays(n)
        trace = []
        for _ in range(500):
            measured = 30.0 + 10.0 * rng.random(n)
            measured[rng.random(n) > 0.95] = np.nan
            enabled = rng.random(n) > 0.05
            kernel(np.full(n, 37.0), measured, enabled, gains, state, 5.0, out)
            trace.append(out.copy())
        outputs.append(np.array(trace))
    assert np.array_equal(outputs[0], outputs[1])


def test_disabled_or_unmeasured_units_get_no_heat() -> None:
    gains, state, out = _arrays(3)
    pid.temperature_pid(
        np.full(3, 37.0),
        np.array([20.0, np.nan, 20.0]),
        np.array([False, True, True]),
        gains,
        state,
        5.0,
        out,
    )
    assert out[0] == 0.0 and out[1] == 0.0 and out[2] == 100.0


def test_output_stays_within_0_and_100_percent() -> None:
    gains, state, out = _arrays(2)
    for _ in range(100):
        pid.temperature_pid(
            np.array([42.0, 4.0]),
            np.array([4.0, 42.0]),
            np.array([True, True]),
            gains,
            state,
            5.0,
            out,
        )
        assert out.min() >= 0.0 and out.max() <= 100.0


def test_integrator_does_not_wind_up_during_a_saturated_warm_up() -> None:
    gains, state, out = _arrays(1)
    for _ in range(1000):  # 83 min far below the setpoint, heater saturated
        pid.temperature_pid(
            np.array([37.0]), np.array([22.0]), np.array([True]), gains, state, 5.0, out
        )
    assert state[0, pid.INTEGRAL] == 0.0


@pytest.mark.parametrize("volume_ml", [100.0, 200.0])
def test_closed_loop_warm_up_reaches_the_band_without_overshoot(volume_ml: float) -> None:
    parameters = plant.PlantParameters()
    state = plant.InitialConditions(volume_ml=volume_ml).as_row()[None, :].copy()
    params = parameters.as_row()[None, :]
    gains, pid_state, out = _arrays(1)
    temperatures = []
    for _ in range(int(3 * 3600 / 5)):
        pid.temperature_pid(
            np.array([37.0]),
            state[:, plant.SENSOR_TEMPERATURE].copy(),
            np.array([True]),
            gains,
            pid_state,
            5.0,
            out,
        )
        plant.plant_step(
            state,
            params,
            out / 100.0,
            np.zeros(1),
            np.zeros(1),
            np.zeros(1),
            np.ones(1, dtype=np.bool_),
            1.0,
            5,
        )
        temperatures.append(state[0, plant.TEMPERATURE])
    temperatures = np.array(temperatures)
    assert temperatures.max() < 37.1
    assert abs(temperatures[-1] - 37.0) < 0.02
