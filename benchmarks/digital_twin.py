"""14 days of one unit at 1 s steps: plant + temperature controller, numba vs Python (SPEC §11).

The digital twin is what the tests and dry runs lean on, so it must simulate a whole batch in
milliseconds. One fused loop runs the production per-unit laws — `simulators.plant.advance_unit`
(what `plant_step` runs for each unit) and `shuttled.control.temperature.pid_unit` (what the
batched controller kernels run for each unit) — over 1 209 600 one-second steps: the controller
reads the sensor once per control period (5 s, the daemon's default) and the plant integrates
each 1 s step of the period at that heater duty, as the daemon and the virtual instrument do.
Both laws are inlined by numba, and the plant's per-step constants (`step_constants`), which
depend only on the parameters and the step, are derived once before the loop rather than every
period, since neither changes during the run.

The numba build of the loop is timed on the full 14 days; the Python reference (the same loop
run by the interpreter: `advance_unit` and `pid_unit` are `register_jitable`, plain functions to
Python all the way down, so no compiled code runs on the Python side) is timed on
`PYTHON_DAYS` and scaled linearly (the loop does the same work every step), because the full
span takes seconds in Python. Both are checked bit for bit on the span the Python side runs, so
the speed-up compares identical computations.

Prints a note on stderr and one JSON object as the last line of stdout:
`{"twin_14d_ms": ..., "speedup_vs_python": ...}` (goals: ≤ 25 ms and ≥ 100×).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import numpy as np
from numba import njit

from shuttled.control import temperature as control
from simulators import plant

DAYS = 14
PYTHON_DAYS = 0.5
SETPOINT_C = 37.0
STEP_S = 1.0
MEDIUM_C = 37.0
# As in the daemon (config `control_period_s`, default 5 s): the controller acts once per period,
# the plant integrates each of its seconds.
CONTROL_STEPS = 5
CONTROL_PERIOD_S = CONTROL_STEPS * STEP_S
PERCENT = 0.01  # controller output (%) to heater duty (fraction)
REPEATS = 5  # the numba run is timed this many times; the fastest is reported


def make_twin(advance_unit: Callable, pid_unit: Callable) -> Callable:
    """The twin's loop over the given per-unit laws (inlined by numba, or run by Python)."""

    def twin(
        state: np.ndarray,
        params: np.ndarray,
        gains: np.ndarray,
        pid_state: np.ndarray,
        steps: int,
    ) -> float:
        constants = plant.step_constants(params, 0, STEP_S)
        total = 0.0
        periods = steps // CONTROL_STEPS
        for _ in range(periods):
            measured = state[0, plant.SENSOR_TEMPERATURE]
            duty = pid_unit(0, SETPOINT_C, measured, gains, pid_state, CONTROL_PERIOD_S) * PERCENT
            advance_unit(state, 0, constants, duty, 0.0, MEDIUM_C, 0.0, True, CONTROL_STEPS)
            total += state[0, plant.TEMPERATURE]
        return total / periods

    return twin


twin_numba = njit(cache=True)(make_twin(plant.advance_unit, control.pid_unit))
twin_python = make_twin(plant.advance_unit, control.pid_unit)


def fresh() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    state = plant.InitialConditions().as_row()[None, :].copy()
    params = plant.PlantParameters().as_row()[None, :]
    gains = control.TemperatureGains().as_row()[None, :]
    pid_state = np.zeros((1, control.STATE_COLUMNS))
    return state, params, gains, pid_state


def timed(twin: Callable, steps: int) -> tuple[float, np.ndarray, float]:
    state, params, gains, pid_state = fresh()
    start = time.perf_counter()
    mean = twin(state, params, gains, pid_state, steps)
    return time.perf_counter() - start, state, mean


def main() -> None:
    steps = DAYS * 86400
    python_steps = int(PYTHON_DAYS * 86400)
    timed(twin_numba, 10)  # compile, or load from the cache
    numba_s = min(timed(twin_numba, steps)[0] for _ in range(REPEATS))
    _, numba_state, numba_mean = timed(twin_numba, python_steps)
    python_s, python_state, python_mean = timed(twin_python, python_steps)
    if not (np.array_equal(numba_state, python_state) and numba_mean == python_mean):
        raise SystemExit(
            "numba and Python twins disagree: the comparison would be meaningless (after an "
            "edit of simulators/plant.py, numba's cache of this loop may be stale: delete "
            "benchmarks/__pycache__)"
        )
    python_full_s = python_s * steps / python_steps
    print(
        f"numba: {numba_s * 1e3:.1f} ms for {DAYS} d ({steps} steps, best of {REPEATS}); "
        f"Python reference: {python_s:.2f} s for {PYTHON_DAYS} d, scaled "
        f"×{steps / python_steps:g} to {python_full_s:.0f} s; states bit-identical over the "
        "Python span",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "twin_14d_ms": round(numba_s * 1e3, 2),
                "speedup_vs_python": round(python_full_s / numba_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
