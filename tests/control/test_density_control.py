"""The density-control law: bit-identity of the batched kernel, and its cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shuttled.control.density_control import density_control, dilution_law, dilution_volume_ml


def law(density, growth=math.nan, volume=100.0, limit=2e6, cap=300.0, rate=10.0) -> float:
    return dilution_volume_ml(density, growth, volume, limit, cap, rate, 5.0, 0.9, 1.0)


def test_batched_kernel_is_bit_identical_to_its_reference_and_to_the_per_unit_law() -> None:
    rng = np.random.default_rng(0)
    n = 64
    args = (
        2e6 * (0.5 + rng.random(n)),
        np.where(rng.random(n) > 0.2, 0.05 * rng.random(n) - 0.01, np.nan),
        100.0 + 500.0 * rng.random(n),
        np.where(rng.random(n) > 0.1, 2e6, np.nan),
        np.full(n, 500.0),
        np.full(n, 10.0),
    )
    outputs = []
    for kernel in (density_control, density_control.py_func):
        out = np.zeros(n)
        kernel(*args, 5.0, 0.9, 1.0, out)
        outputs.append(out)
    # The reference runs the law as Python (test_references_run_no_compiled_code.py); the
    # engine's compiled per-unit call is the same law compiled on its own.
    assert np.array_equal(outputs[0], outputs[1])
    assert dilution_volume_ml.py_func is dilution_law
    per_unit = [law(*(a[i] for a in args[:1]), *(a[i] for a in args[1:])) for i in range(n)]
    assert np.array_equal(outputs[0], np.array(per_unit))
    assert (outputs[0] > 0).any() and (outputs[0] == 0).any()


def test_without_growth_it_dilutes_only_above_the_limit_back_to_90_percent() -> None:
    assert law(1.99e6) == 0.0
    assert law(2.7e6) == pytest.approx(50.0)  # 100 mL · (2.7/1.8 − 1)


def test_with_growth_it_acts_before_the_limit_is_crossed() -> None:
    # 1.999e6 growing 3 %/h passes 2e6 within the 5 s period plus the ~11 mL pumping time.
    assert law(1.999e6, growth=0.03) > 0.0
    assert law(1.9e6, growth=0.03) == 0.0
    assert law(1.999e6, growth=-0.1) == 0.0  # dying cultures are not diluted ahead of time


def test_the_volume_cap_and_missing_readings() -> None:
    assert law(4e6, volume=280.0) == pytest.approx(20.0)  # only what fits
    assert law(4e6, volume=299.5) == 0.0  # not meterable
    assert law(math.nan) == 0.0
    assert law(4e6, volume=math.nan) == 0.0
    assert law(4e6, limit=math.nan) == 0.0
