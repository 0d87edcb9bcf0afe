"""The guarded temperature tick: bad and stale readings, the latched over-temperature trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shuttled.control import safety
from shuttled.control import temperature as pid


class Tick:
    """Some units' temperature tick with their arrays, for readable tests (unit 0 is reported)."""

    def __init__(self, n: int = 1, temperature_max: float = 40.0) -> None:
        self.arrays = safety.TemperatureArrays(
            [pid.TemperatureGains()] * n,
            [safety.GuardSettings(temperature_max=temperature_max)] * n,
        )

    def __call__(self, setpoint, measured, second=math.nan, kernel=None) -> tuple[float, int]:
        self.arrays.setpoint[:] = setpoint
        self.arrays.measured[:] = measured
        self.arrays.second_sensor[:] = second
        (kernel or safety.temperature_tick)(self.arrays.block, 5.0)
        return float(self.arrays.heater[0]), int(self.arrays.flags[0])


def _trace(kernel, n: int, ticks: int, seed: int) -> np.ndarray:
    """The whole block after each of `ticks` ticks of random readings, faults and setpoints."""
    rng = np.random.default_rng(seed)
    tick = Tick(n)
    trace = []
    for k in range(ticks):
        setpoint = np.where(rng.random(n) > 0.9, np.nan, 37.0)
        setpoint[rng.random(n) > 0.97] = 30.0 + 10.0 * rng.random()  # feed-forward shifts
        measured = 35.0 + 6.0 * rng.random(n)
        measured[rng.random(n) > 0.97] = np.nan
        measured[:2] = 36.5 if k > ticks // 2 else measured[:2]  # two frozen sensors
        second = np.where(rng.random(n) > 0.5, measured + 0.1, np.nan)
        tick(setpoint, measured, second, kernel=kernel)
        trace.append(tick.arrays.block.ravel().copy())
    return np.array(trace)


@pytest.mark.parametrize(("n", "ticks"), [(16, 600), (300, 60)])
def test_numba_tick_is_bit_identical_to_its_python_reference(n: int, ticks: int) -> None:
    """16 units run the scalar loop; from ~120 units on, LLVM's vectorized loop runs. The
    reference runs no compiled code (test_references_run_no_compiled_code.py)."""
    numba = _trace(safety.temperature_tick, n, ticks, seed=5)
    python = _trace(safety.temperature_tick.py_func, n, ticks, seed=5)
    assert np.array_equal(numba, python, equal_nan=True)


def test_the_views_share_the_kernels_block_and_rows_are_padded() -> None:
    arrays = safety.TemperatureArrays(
        [pid.TemperatureGains(kp=i) for i in range(1024)], [safety.GuardSettings()] * 1024
    )
    assert arrays.block.shape == (safety.ROWS, 1032)  # 129 groups of 8: rows not 4 KB apart
    assert arrays.block.ctypes.data % 64 == 0 and arrays.block.flags.c_contiguous
    arrays.measured[3] = 36.0
    assert arrays.block[safety.MEASURED, 3] == 36.0
    assert np.shares_memory(arrays.heater, arrays.pid_state)
    assert arrays.gains[pid.KP, 7] == 7.0
    assert [safety.padded_width(n) for n in (1, 8, 9, 16, 17, 1024)] == [8, 8, 24, 24, 24, 1032]


def test_a_nan_or_implausible_reading_turns_the_heater_off_and_is_flagged() -> None:
    tick = Tick()
    assert tick(37.0, 36.0)[0] > 0.0
    assert tick(37.0, math.nan) == (0.0, safety.FLAG_BAD)
    assert tick(37.0, 250.0) == (0.0, safety.FLAG_BAD)
    heater, flags = tick(37.0, 36.0)
    assert heater > 0.0 and flags == 0


def test_a_single_spike_is_rejected_but_a_lasting_jump_is_believed() -> None:
    tick = Tick()
    tick(37.0, 37.0)
    assert tick(37.0, 31.0)[1] == safety.FLAG_BAD  # 6 K in 5 s: not the liquid
    assert tick(37.0, 37.01)[1] == 0
    flags = [tick(37.0, 30.0)[1] for _ in range(safety.REBASE_AFTER_REJECTS + 1)]
    assert flags == [safety.FLAG_BAD] * safety.REBASE_AFTER_REJECTS + [0]


def test_a_frozen_reading_is_stale_and_a_moving_one_recovers() -> None:
    tick = Tick()
    samples = safety.GuardSettings().stuck_samples
    flags = [tick(37.0, 36.9)[1] for _ in range(samples)]
    assert flags[-2] == 0 and flags[-1] == safety.FLAG_STALE
    assert tick(37.0, 36.9)[0] == 0.0
    assert tick(37.0, 36.91)[1] == 0


def test_over_temperature_trips_after_confirmation_and_stays_latched_until_reset() -> None:
    tick = Tick()
    for t in (37.0, 38.0, 38.9):
        assert tick(37.0, t)[1] == 0
    assert tick(37.0, 39.2)[1] == 0  # one sample over: could be noise
    assert tick(37.0, 39.3) == (0.0, safety.FLAG_TRIPPED)
    for t in (39.0, 38.5, 38.05):  # back under the threshold, not yet under the reset level
        assert tick(37.0, t) == (0.0, safety.FLAG_TRIPPED)
    heater, flags = tick(37.0, 37.9)
    assert flags == 0 and heater >= 0.0


def test_the_unit_limit_trips_whatever_the_setpoint() -> None:
    tick = Tick(temperature_max=38.0)
    for t in (37.0, 37.8, 38.3):
        assert tick(37.0, t)[1] == 0
    assert tick(37.0, 38.4)[1] == safety.FLAG_TRIPPED
    assert tick(math.nan, 38.4)[1] == safety.FLAG_TRIPPED  # heater not even commanded


def test_lowering_the_setpoint_never_trips() -> None:
    tick = Tick()
    tick(37.0, 37.0)
    for k in range(100):  # 37 → 30 °C: the liquid is 7 K above the new setpoint while it cools
        assert tick(30.0, 37.0 - 0.07 * k)[1] == 0
    for _ in range(2):  # once the relative trip is armed for 30 °C, it protects 30 °C
        flags = tick(30.0, 32.5)[1]
    assert flags == safety.FLAG_TRIPPED


def test_the_independent_sensor_trips_when_the_primary_one_is_stuck_low() -> None:
    tick = Tick()
    tick(37.0, 36.0)
    for _ in range(2):
        heater, flags = tick(37.0, 36.0, second=39.5)
    assert flags & safety.FLAG_TRIPPED and heater == 0.0
