"""The kernels' pure-Python references run no compiled code.

Each numba kernel's bit-identity test compares it with its reference, `kernel.py_func`. That only
means something if the reference is a second implementation: a reference that calls an `njit`
helper runs the helper's machine code, and the test then compares the compiled arithmetic with
itself. So the helpers are `register_jitable` (compiled inline into the kernels, plain Python to
the interpreter), and here every reference is walked for anything it can call that is a numba
dispatcher: the names its code loads (globals, closure cells, attribute chains such as
`pid.pid_law`), in its nested code objects too, recursing into every plain Python function found.
The walker is itself shown to flag each way a compiled helper can be reached, and the helpers are
shown to run as Python frames when a reference runs.
"""

from __future__ import annotations

import builtins
import dis
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import pytest
from numba import njit
from numba.core.dispatcher import Dispatcher
from numba.core.registry import CPUDispatcher

from shuttled.control import density_control, growth_estimator, safety
from shuttled.control import temperature as pid
from simulators import plant

_MISSING = object()
_GLOBAL_LOADS = {"LOAD_GLOBAL", "LOAD_NAME"}
_CELL_LOADS = {"LOAD_DEREF", "LOAD_CLASSDEREF"}
_ATTRIBUTE_LOADS = {"LOAD_ATTR", "LOAD_METHOD"}


class Reach(NamedTuple):
    """What a function can call: the plain functions walked, and every compiled one reached."""

    functions: set[str]  # __qualname__ of each plain Python function walked
    compiled: list[str]  # "caller -> … -> name" for each numba dispatcher reachable


def _loaded(function: types.FunctionType) -> Iterator[tuple[str, Any]]:
    """(name, value) of everything the function's code, nested code included, loads by name."""
    namespace = function.__globals__
    cells = dict(
        zip(
            function.__code__.co_freevars,
            (cell.cell_contents for cell in function.__closure__ or ()),
            strict=True,
        )
    )

    def resolve(name: str) -> Any:
        return namespace.get(name, getattr(builtins, name, _MISSING))

    seen: set[str] = set()
    codes = [function.__code__]
    while codes:
        code = codes.pop()
        codes.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
        # Every global the code names, whatever bytecode loads it.
        for name in code.co_names:
            value = resolve(name)
            if value is not _MISSING and name not in seen:
                seen.add(name)
                yield name, value
        # Attribute chains on loaded values (`pid.pid_law`, `safety.pid.pid_law`) and cells.
        path, value = "", _MISSING
        for instruction in dis.get_instructions(code):
            name = instruction.argval
            if instruction.opname in _GLOBAL_LOADS:
                path, value = name, resolve(name)
            elif instruction.opname in _CELL_LOADS and name in cells:
                path, value = name, cells[name]
            elif instruction.opname in _ATTRIBUTE_LOADS and value is not _MISSING:
                path, value = f"{path}.{name}", getattr(value, name, _MISSING)
            else:
                value = _MISSING
            if value is not _MISSING and path not in seen:
                seen.add(path)
                yield path, value


def reach(function: Callable[..., Any]) -> Reach:
    """Walk `function` and every plain Python function it can call, recording numba dispatchers."""
    reached = Reach(set(), [])
    walked: set[types.CodeType] = set()
    stack: list[tuple[Any, str]] = [(function, function.__qualname__)]
    while stack:
        current, trail = stack.pop()
        if current.__code__ in walked:
            continue
        walked.add(current.__code__)
        reached.functions.add(current.__qualname__)
        for name, value in _loaded(current):
            if isinstance(value, (CPUDispatcher, Dispatcher)):
                reached.compiled.append(f"{trail} -> {name}")
            elif isinstance(value, types.MethodType):
                stack.append((value.__func__, f"{trail} -> {name}"))
            elif isinstance(value, types.FunctionType):
                stack.append((value, f"{trail} -> {name}"))
    return reached


KERNELS = {
    "temperature_pid": pid.temperature_pid,
    "temperature_tick": safety.temperature_tick,
    "density_control": density_control.density_control,
    "growth_estimator": growth_estimator.growth_estimator,
    "plant_step": plant.plant_step,
}
# The helpers each reference must be seen to reach (a walker that reached nothing would pass).
HELPERS = {
    "temperature_pid": {
        "pid_unit",
        "disable_unit",
        "pid_law",
        "_feed_forward",
        "feed_forward_duty",
        "at_least",
        "at_most",
    },
    "temperature_tick": {
        "check_measurement",
        "over_temperature_trip",
        "_regulate_with_feed_forward",
        "pid_law",
        "feed_forward_duty",
        "at_least",
        "at_most",
    },
    "density_control": {"dilution_law"},
    "growth_estimator": {"_dilution_log_factor"},
    "plant_step": {
        "sync_lag",
        "step_constants",
        "advance_unit",
        "glucose_factor",
        "cardinal_temperature_factor",
        "_exp_small",
        "_expm1_small",
    },
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_the_reference_can_call_no_numba_dispatcher(name: str) -> None:
    kernel = KERNELS[name]
    assert isinstance(kernel, CPUDispatcher)  # the kernel itself is compiled
    reached = reach(kernel.py_func)
    assert reached.compiled == []
    assert HELPERS[name] <= reached.functions


# --- The check fails where it should: every way a reference could reach compiled code. ---


@njit
def _compiled_square(x: float) -> float:
    return x * x


def _plain_helper(x: float) -> float:
    return _compiled_square(x) + 1.0


@njit
def _kernel_with_an_njit_helper(x: float) -> float:
    """The pattern this file guards against: the kernel's py_func calls the helper compiled."""
    return _compiled_square(x)


def test_the_check_flags_an_njit_helper_called_by_a_reference() -> None:
    assert reach(_kernel_with_an_njit_helper.py_func).compiled == [
        "_kernel_with_an_njit_helper -> _compiled_square"
    ]

    def local_reference(x: float) -> float:
        return 2.0 * _compiled_square(x)

    assert reach(local_reference).compiled == [
        "test_the_check_flags_an_njit_helper_called_by_a_reference.<locals>.local_reference"
        " -> _compiled_square"
    ]


def test_the_check_flags_compiled_code_behind_a_plain_helper_a_module_or_a_closure() -> None:
    def through_a_helper(x: float) -> float:
        return _plain_helper(x)

    def through_a_module(x: float) -> float:
        return density_control.dilution_volume_ml(x, 0.0, 100.0, 2e6, 300.0, 10.0, 5.0, 0.9, 1.0)

    square = _compiled_square

    def through_a_closure(x: float) -> float:
        return square(x)

    def in_a_comprehension(xs: list[float]) -> list[float]:
        return [_compiled_square(x) for x in xs]

    assert [trail.split(" -> ", 1)[1] for trail in reach(through_a_helper).compiled] == [
        "_plain_helper -> _compiled_square"
    ]
    assert [trail.split(" -> ", 1)[1] for trail in reach(through_a_module).compiled] == [
        "density_control.dilution_volume_ml"
    ]
    assert [trail.split(" -> ", 1)[1] for trail in reach(through_a_closure).compiled] == ["square"]
    assert reach(in_a_comprehension).compiled  # the comprehension's own code object


def test_the_check_passes_register_jitable_helpers_as_plain_python() -> None:
    def calls_the_plant_law(x: float) -> float:
        return plant._exp_small(x) + pid.at_least(x, 0.0)

    reached = reach(calls_the_plant_law)
    assert reached.compiled == []
    assert {"_exp_small", "at_least"} <= reached.functions


# --- And when a reference runs, its helpers run as Python frames. ---


def _run_temperature_pid() -> None:
    gains = np.tile(pid.TemperatureGains().as_row(), (2, 1))
    state = np.zeros((2, pid.STATE_COLUMNS))
    out = np.zeros(2)
    for setpoint in (37.0, 36.0):  # the pre-load, then its shift on a setpoint change
        pid.temperature_pid.py_func(
            np.full(2, setpoint), np.full(2, 36.5), np.array([True, False]), gains, state, 5.0, out
        )


def _run_temperature_tick() -> None:
    arrays = safety.TemperatureArrays([pid.TemperatureGains()] * 2, [safety.GuardSettings()] * 2)
    arrays.setpoint[:] = 37.0
    for measured in (36.0, 36.1):  # the first tick takes the feed-forward pass
        arrays.measured[:] = measured
        safety.temperature_tick.py_func(arrays.block, 5.0)


def _run_density_control() -> None:
    def column(value: float) -> np.ndarray:
        return np.full(1, value)

    args = (column(3e6), column(0.03), column(100.0), column(2e6), column(300.0), column(10.0))
    density_control.density_control.py_func(*args, 5.0, 0.9, 1.0, np.zeros(1))


def _run_growth_estimator() -> None:
    settings = growth_estimator.EstimatorSettings().as_row()[None, :]
    state = growth_estimator.new_estimator_state(1)
    growth_estimator.growth_estimator.py_func(
        np.full(1, 1e6), np.full(1, 100.0), settings, state, 5.0, np.zeros(1), np.zeros(1)
    )


def _run_plant_step() -> None:
    state = plant.InitialConditions().as_row()[None, :].copy()
    state[0, plant.AGE_H] = 24.0  # a caller set the age: the lag is re-derived (`sync_lag`)
    params = plant.PlantParameters().as_row()[None, :]
    one = np.ones(1)
    plant.plant_step.py_func(
        state, params, 0.5 * one, one, 37.0 * one, 0.0 * one, one.astype(np.bool_), 1.0, 5
    )


RUNS = {
    "temperature_pid": _run_temperature_pid,
    "temperature_tick": _run_temperature_tick,
    "density_control": _run_density_control,
    "growth_estimator": _run_growth_estimator,
    "plant_step": _run_plant_step,
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_running_the_reference_runs_its_helpers_as_python(name: str) -> None:
    """A compiled helper leaves no Python frame; every helper of the reference must leave one."""
    frames: set[str] = set()

    def profile(frame: types.FrameType, event: str, arg: object) -> None:
        if event == "call":
            frames.add(frame.f_code.co_name)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        RUNS[name]()
    finally:
        sys.setprofile(previous)
    assert HELPERS[name] <= frames
