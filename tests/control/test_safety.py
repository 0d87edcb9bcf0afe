"""The guarded temperature tick: bad and stale readings, the latched over-temperature trip."""

from __future__ import annotations

import math

import numpy as np

from shuttled.control import safety
from shuttled.control import temperature as pid


class Tick:
    """One unit's temperature tick with its arrays, for readable tests."""

    def __init__(self, n: int = 1, temperature_max: float = 40.0) -> None:
        self.gains = np.tile(pid.TemperatureGains().as_row(), (n, 1))
        self.settings = np.tile(
            safety.GuardSettings(temperature_max=temperature_max).as_row(), (n, 1)
        )
        self.pid_state = np.zeros((n, pid.STATE_COLUMNS))
        self.guard = safety.new_guard_state(n)
        self.heater = np.zeros(n)
        self.flags = np.zeros(n, dtype=np.int64)

    def __call__(self, setpoint, measured, second=math.nan, kernel=None) -> tuple[float, int]:
        (kernel or safety.temperature_tick)(
            np.atleast_1d(np.asarray(setpoint, dtype=float)),
            np.atleast_1d(np.asarray(measured, dtype=float)),
            np.atleast_1d(np.asarray(second, dtype=float)),
            self.gains,
            self.settings,
            self.pid_state,
            self.guard,
            5.0,
            self.heater,
            self.flags,
        )
        return float(self.heater[0]), int(self.flags[0])


def test_numba_tick_is_bit_identical_to_its_python_reference() -> None:
    n = 16
    traces = []
    for kernel in (safety.temperature_tick, safety.temperature_tick.py_func):
        rng = np.random.default_rng(5)
        tick = Tick(n)
        trace = []
        for k in range(600):
            setpoint = np.where(rng.random(n) > 0.9, np.nan, 37.0)
            measured = 35.0 + 6.0 * rng.random(n)
            measured[rng.random(n) > 0.97] = np.nan
            measured[:2] = 36.5 if k > 300 else measured[:2]  # two frozen sensors
            second = np.where(rng.random(n) > 0.5, measured + 0.1, np.nan)
            tick(setpoint, measured, second, kernel=kernel)
            trace.append(
                np.concatenate(
                    [tick.heater, tick.flags, tick.pid_state.ravel(), tick.guard.ravel()]
                )
            )
        traces.append(np.array(trace))
    assert np.array_equal(traces[0], traces[1], equal_nan=True)


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
