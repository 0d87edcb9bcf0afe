"""The batched temperature PID: bit-identity with its reference, limits, anti-windup, bumpless
transfer and the feed-forward pre-load."""

from __future__ import annotations

import numpy as np
import pytest

from shuttled.control import temperature as pid

GAINS = pid.TemperatureGains()
PRELOAD_37 = 100.0 * GAINS.ua_w_per_k * (37.0 - GAINS.ambient_c) / GAINS.heater_w  # 60 %


def _arrays(n: int):
    gains = np.tile(GAINS.as_row(), (n, 1))
    return gains, np.zeros((n, pid.STATE_COLUMNS)), np.zeros(n)


def _step(setpoint, measured, enabled, gains, state, out, dt: float = 5.0) -> None:
    pid.temperature_pid(
        np.asarray(setpoint, dtype=float),
        np.asarray(measured, dtype=float),
        np.asarray(enabled, dtype=np.bool_),
        gains,
        state,
        dt,
        out,
    )


def test_numba_kernel_is_bit_identical_to_its_python_reference() -> None:
    # The reference runs the law and its helpers as Python, no compiled code
    # (test_references_run_no_compiled_code.py): two implementations, bit for bit.
    n = 16
    traces = []
    for kernel in (pid.temperature_pid, pid.temperature_pid.py_func):
        rng = np.random.default_rng(3)
        gains, state, out = _arrays(n)
        trace = []
        for _ in range(500):
            setpoint = np.where(rng.random(n) > 0.98, 30.0 + 10.0 * rng.random(n), 37.0)
            measured = 30.0 + 10.0 * rng.random(n)
            measured[rng.random(n) > 0.95] = np.nan
            enabled = rng.random(n) > 0.05
            kernel(setpoint, measured, enabled, gains, state, 5.0, out)
            trace.append(np.concatenate([out, state.ravel()]))
        traces.append(np.array(trace))
    assert np.array_equal(traces[0], traces[1], equal_nan=True)


def test_disabled_unmeasured_or_unset_units_get_no_heat() -> None:
    gains, state, out = _arrays(4)
    _step(
        [37.0, 37.0, 37.0, np.nan],
        [20.0, np.nan, 20.0, 20.0],
        [False, True, True, True],
        gains,
        state,
        out,
    )
    assert out[0] == 0.0 and out[1] == 0.0 and out[3] == 0.0
    assert out[2] == GAINS.rate_limit_pct_s * 5.0  # heating, but ramping from 0 %


def test_output_stays_within_its_limits_and_moves_at_most_at_the_rate_limit() -> None:
    gains, state, out = _arrays(2)
    gains[:, pid.OUTPUT_MAX] = 80.0
    rng = np.random.default_rng(1)
    previous = np.zeros(2)
    for _ in range(300):
        _step([42.0, 4.0], 4.0 + 38.0 * rng.random(2), [True, True], gains, state, out)
        assert out.min() >= 0.0 and out.max() <= 80.0
        assert np.abs(out - previous).max() <= GAINS.rate_limit_pct_s * 5.0 + 1e-12
        previous = out.copy()


def test_integrator_keeps_its_pre_load_during_a_saturated_warm_up() -> None:
    gains, state, out = _arrays(1)
    for _ in range(1000):  # 83 min far below the setpoint, heater saturated
        _step([37.0], [22.0], [True], gains, state, out)
    assert out[0] == 100.0
    assert state[0, pid.INTEGRAL] == pytest.approx(PRELOAD_37)


def test_a_setpoint_change_shifts_the_pre_load_and_keeps_what_was_learned() -> None:
    gains, state, out = _arrays(1)
    _step([37.0], [37.0], [True], gains, state, out)
    state[0, pid.INTEGRAL] += 3.0  # what the integrator has learned about the model's error
    _step([36.0], [36.0], [True], gains, state, out)  # no error: only the pre-load moves
    shift = 100.0 * GAINS.ua_w_per_k * (36.0 - 37.0) / GAINS.heater_w
    assert state[0, pid.INTEGRAL] == pytest.approx(PRELOAD_37 + 3.0 + shift)


def test_re_enabling_is_bumpless_ramping_from_zero_with_the_integrator_as_it_was() -> None:
    gains, state, out = _arrays(1)
    for _ in range(200):
        _step([37.0], [37.0], [True], gains, state, out)
    learned = state[0, pid.INTEGRAL]
    _step([37.0], [np.nan], [True], gains, state, out)  # a bad reading: heater off
    assert out[0] == 0.0 and state[0, pid.INTEGRAL] == learned
    outputs = []
    for _ in range(4):
        _step([37.0], [37.0], [True], gains, state, out)
        outputs.append(out[0])
    step = GAINS.rate_limit_pct_s * 5.0
    assert outputs[:2] == [step, 2 * step]  # no derivative kick, no jump to the old output
    assert outputs[-1] == pytest.approx(learned, abs=0.5)
