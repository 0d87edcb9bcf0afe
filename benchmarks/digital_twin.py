"""14 days of one unit at 1 s steps: plant + temperature controller, numba vs Python (SPEC §11).

The digital twin is what `shuttlectl analyze` and the tests run, so it must simulate a whole
batch in milliseconds. One fused loop calls the production kernels — `simulators.plant.plant_step`
and `shuttled.control.temperature.temperature_pid` — over 1 209 600 one-second steps: the
controller reads the sensor once per control period (5 s, the daemon's default), the plant
integrates each 1 s step of the period at that heater duty, as the daemon and the virtual
instrument do. The numba build of the loop is timed on the full 14 days; the pure-Python
reference (the same loop over the kernels' `.py_func`) is timed on `PYTHON_DAYS` and scaled
linearly (the loop does the same work every step), because the full span takes minutes in
Python. Both are checked bit for bit on the span the Python side runs, so the speed-up compares
identical computations.

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
# As in the daemon (config `control_period_s`, default 5 s): the controller acts once per period,
# the plant integrates each of its seconds.
CONTROL_STEPS = 5
CONTROL_PERIOD_S = float(CONTROL_STEPS)


def make_twin(plant_step: Callable, pid: Callable) -> Callable:
    """The twin's loop over the given kernels (numba dispatchers or their Python references)."""

    def twin(
        state: np.ndarray,
        params: np.ndarray,
        gains: np.ndarray,
        pid_state: np.ndarray,
        steps: int,
    ) -> float:
        setpoint = np.full(1, SETPOINT_C)
        measurement = np.zeros(1)
        enabled = np.ones(1, dtype=np.bool_)
        output = np.zeros(1)
        duty = np.zeros(1)
        no_flow = np.zeros(1)
        inflow_t = np.full(1, 37.0)
        heater_works = np.ones(1, dtype=np.bool_)
        total = 0.0
        periods = steps // CONTROL_STEPS
        for _ in range(periods):
            measurement[0] = state[0, plant.SENSOR_TEMPERATURE]
            pid(setpoint, measurement, enabled, gains, pid_state, CONTROL_PERIOD_S, output)
            duty[0] = output[0] / 100.0
            plant_step(
                state, params, duty, no_flow, inflow_t, no_flow, heater_works, 1.0, CONTROL_STEPS
            )
            total += state[0, plant.TEMPERATURE]
        return total / periods

    return twin


twin_numba = njit(cache=True)(make_twin(plant.plant_step, control.temperature_pid))
twin_python = make_twin(plant.plant_step.py_func, control.temperature_pid.py_func)


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
    numba_s = min(timed(twin_numba, steps)[0] for _ in range(5))
    _, numba_state, numba_mean = timed(twin_numba, python_steps)
    python_s, python_state, python_mean = timed(twin_python, python_steps)
    if not (np.array_equal(numba_state, python_state) and numba_mean == python_mean):
        raise SystemExit("numba and Python twins disagree: the comparison would be meaningless")
    python_full_s = python_s * steps / python_steps
    print(
        f"numba: {numba_s * 1e3:.1f} ms for {DAYS} d ({steps} steps); Python reference: "
        f"{python_s:.2f} s for {PYTHON_DAYS} d, scaled ×{steps / python_steps:g} to "
        f"{python_full_s:.0f} s; states bit-identical over the Python span",
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
