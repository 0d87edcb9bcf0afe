"""The Kalman growth estimator: bit-identity, tracking under 5 % noise, dilution, outliers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shuttled.control import growth_estimator as est

DT = 5.0


class Estimator:
    def __init__(self, n: int = 1, kernel=None) -> None:
        self.settings = np.tile(est.EstimatorSettings().as_row(), (n, 1))
        self.state = est.new_estimator_state(n)
        self.density = np.zeros(n)
        self.growth = np.zeros(n)
        self.kernel = kernel or est.growth_estimator

    def __call__(self, measured, volume) -> tuple[float, float]:
        self.kernel(
            np.atleast_1d(np.asarray(measured, dtype=float)),
            np.atleast_1d(np.asarray(volume, dtype=float)),
            self.settings,
            self.state,
            DT,
            self.density,
            self.growth,
        )
        return float(self.density[0]), float(self.growth[0])


def _culture(hours: float, mu: float, seed: int, x0: float = 1e6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = DT * np.arange(int(hours * 3600 / DT))
    true = x0 * np.exp(mu * t / 3600.0)
    return true, true * (1.0 + 0.05 * rng.standard_normal(t.size))


def test_numba_kernel_is_bit_identical_to_its_python_reference() -> None:
    # The reference runs `_dilution_log_factor` as Python too (register_jitable), so this
    # compares two implementations (test_references_run_no_compiled_code.py).
    n = 16
    traces = []
    for kernel in (est.growth_estimator, est.growth_estimator.py_func):
        rng = np.random.default_rng(9)
        e = Estimator(n, kernel)
        volume = np.full(n, 100.0)
        trace = []
        for _ in range(2000):
            measured = 1e6 * (1.0 + 0.05 * rng.standard_normal(n))
            measured[rng.random(n) > 0.97] = np.nan
            measured[rng.random(n) > 0.99] *= 3.0  # bubbles
            volume += np.where(rng.random(n) > 0.99, 10.0, 0.0)
            e(measured, volume)
            trace.append(np.concatenate([e.density, e.growth, e.state.ravel()]))
        traces.append(np.array(trace))
    assert np.array_equal(traces[0], traces[1], equal_nan=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tracks_density_within_2_percent_and_growth_within_0_005_per_h(seed: int) -> None:
    mu = math.log(2.0) / 24.0
    true, measured = _culture(24.0, mu, seed)
    e = Estimator()
    densities, growths = [], []
    for y in measured:
        d, g = e(y, 200.0)
        densities.append(d)
        growths.append(g)
    settled = slice(len(true) // 2, None)  # after 12 h
    error = np.array(densities)[settled] / true[settled] - 1.0
    assert np.abs(error).max() < 0.02
    assert np.abs(np.array(growths)[settled] - mu).max() < 0.005


def test_reports_nothing_until_the_estimate_is_good_to_2_percent() -> None:
    e = Estimator()
    reported = [e(1e6, 100.0)[0] for _ in range(20)]
    first = next(i for i, d in enumerate(reported) if not math.isnan(d))
    assert 3 <= first <= 8


def test_a_feed_is_a_dilution_not_cell_death() -> None:
    mu = 0.03
    true, measured = _culture(12.0, mu, seed=4)
    e = Estimator()
    volume = 100.0
    for k, y in enumerate(measured):
        if k >= len(measured) // 2:  # 50 mL fed at 10 mL/min: density falls by a third
            volume = min(volume + 10.0 * DT / 60.0, 150.0)
            y = y * 100.0 / volume
        density, growth = e(y, volume)
    assert density / (true[-1] * 100.0 / 150.0) == pytest.approx(1.0, abs=0.02)
    assert growth == pytest.approx(mu, abs=0.005)
    # Only the noise's own 4σ tail (a few in 8640 readings) is gated, never the feed itself.
    assert e.state[0, est.REJECTED_TOTAL] <= 4


def test_outliers_are_rejected_and_a_lasting_jump_re_initialises_the_level() -> None:
    e = Estimator()
    rng = np.random.default_rng(2)
    for _ in range(500):
        e(1e6 * (1.0 + 0.05 * rng.standard_normal()), 100.0)
    before, _ = e(1e6, 100.0)
    after, _ = e(3e6, 100.0)  # a bubble on the electrode
    assert after == pytest.approx(before, rel=1e-3)
    assert e.state[0, est.REJECTED_TOTAL] == 1
    settings = est.EstimatorSettings()
    reports = [e(0.5e6, 100.0)[0] for _ in range(settings.reinit_after_rejects + 10)]
    assert reports[-1] == pytest.approx(0.5e6, rel=0.01)


def test_no_reading_keeps_predicting_from_the_growth_rate() -> None:
    mu = 0.03
    _, measured = _culture(24.0, mu, seed=5)
    e = Estimator()
    for y in measured:
        density, _ = e(y, 100.0)
    for _ in range(int(1800 / DT)):  # half an hour without the probe
        predicted, _ = e(math.nan, 100.0)
    assert predicted / density == pytest.approx(math.exp(mu * 0.5), rel=0.01)
