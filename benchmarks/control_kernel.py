"""Batched temperature control step vs `simple-pid` called once per unit (SPEC §11).

Prints one JSON line: ns_per_unit_16, ns_per_unit_1024, speedup_vs_simple_pid_16,
speedup_vs_simple_pid_1024 (and, beyond the contract, the growth estimator's ns per unit). Our side
is the whole per-tick temperature work of the control loop — measurement checks, the latched
over-temperature trip on two sensors, and the PID with rate limit — in one `temperature_tick`
call on the arrays the control loop owns (`safety.TemperatureArrays`); simple-pid's side is only
a PID step per unit, with the same inputs, in the same process. The timing is the best of
several repeats to keep scheduler noise out.
"""

from __future__ import annotations

import json
import time

import numpy as np
from simple_pid import PID

from shuttled.control import growth_estimator as estimator
from shuttled.control import safety
from shuttled.control import temperature as pid


def _best_ns(function, repeats: int, inner: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(inner):
            function()
        best = min(best, (time.perf_counter_ns() - start) / inner)
    return best


def kernel_ns_per_unit(n: int) -> float:
    rng = np.random.default_rng(0)
    # The inputs repeat from tick to tick here; a live sensor's never do. Keep the stale check
    # (it still runs) from turning the heaters off halfway through the timing.
    arrays = safety.TemperatureArrays(
        [pid.TemperatureGains()] * n, [safety.GuardSettings(stuck_samples=2**31)] * n
    )
    arrays.setpoint[:] = 37.0
    arrays.measured[:] = 36.0 + rng.random(n)
    arrays.second_sensor[:] = arrays.measured + 0.05
    block = arrays.block

    def step() -> None:
        safety.temperature_tick(block, 5.0)

    step()  # compile or load from cache
    return _best_ns(step, repeats=7, inner=max(20000 // n, 50)) / n


def estimator_ns_per_unit(n: int) -> float:
    rng = np.random.default_rng(0)
    measured = 1e6 * (1.0 + 0.05 * rng.standard_normal(n))
    volume = np.full(n, 200.0)
    settings = np.tile(estimator.EstimatorSettings().as_row(), (n, 1))
    state = estimator.new_estimator_state(n)
    density = np.zeros(n)
    growth = np.zeros(n)

    def step() -> None:
        estimator.growth_estimator(measured, volume, settings, state, 5.0, density, growth)

    step()
    return _best_ns(step, repeats=7, inner=max(20000 // n, 50)) / n


def simple_pid_ns_per_unit(n: int) -> float:
    rng = np.random.default_rng(0)
    controllers = [
        PID(60.0, 0.05, 200.0, setpoint=37.0, sample_time=None, output_limits=(0.0, 100.0))
        for _ in range(n)
    ]
    measured = [float(v) for v in 36.0 + rng.random(n)]

    def step() -> None:
        for controller, value in zip(controllers, measured, strict=True):
            controller(value, dt=5.0)

    step()
    return _best_ns(step, repeats=7, inner=max(2000 // n, 5)) / n


def main() -> None:
    result = {}
    for n in (16, 1024):
        ours = kernel_ns_per_unit(n)
        theirs = simple_pid_ns_per_unit(n)
        print(
            f"{n:5d} units: kernel {ours:8.1f} ns/unit, simple-pid {theirs:8.1f} ns/unit, "
            f"{theirs / ours:6.1f}x"
        )
        result[f"ns_per_unit_{n}"] = round(ours, 2)
        result[f"speedup_vs_simple_pid_{n}"] = round(theirs / ours, 1)
    for n in (16, 1024):
        result[f"estimator_ns_per_unit_{n}"] = round(estimator_ns_per_unit(n), 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
