"""What a capacitance (viable cell density) probe reports for a true density.

Capacitance probes measure the permittivity of intact cell membranes. Three imperfections matter
to a density controller and are modelled here:

* multiplicative noise, ≈ 5 % of the reading (issue 3; vendor data sheets quote 2–5 % for
  mammalian cells at working densities);
* a noise floor: the signal of fewer than ≈ 1×10⁶ cells/mL is small against the medium's own
  conductivity, so readings there are poor; modelled as additive Gaussian noise of
  `floor_sd` cells/mL (assumption: 5×10⁴, i.e. 10 % at 5×10⁵ cells/mL, 5 % at 1×10⁶);
* slow gain drift from electrode fouling and polarisation after a one-point calibration:
  gain = 1 + r·t, with a per-probe rate r drawn once from N(0, `drift_sd_per_day`) (assumption:
  0.5 %/day, so a 14-day batch ends within a few percent of the truth, as users recalibrate
  capacitance probes against off-line counts about weekly).

Readings never go negative: the transmitter clamps at zero, as real ones do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ProbeParameters:
    relative_sd: float = 0.05
    floor_sd: float = 5.0e4
    drift_sd_per_day: float = 0.005


def drift_rates(parameters: ProbeParameters, units: int, seed: int) -> np.ndarray:
    """Each probe's gain drift per day; a stream of its own so sensor noise stays unchanged."""
    return np.random.default_rng([seed, 1]).normal(0.0, parameters.drift_sd_per_day, units)


def readings(
    true_density: np.ndarray,
    drift_per_day: np.ndarray,
    elapsed_s: float,
    parameters: ProbeParameters,
    rng: np.random.Generator,
) -> np.ndarray:
    """Reported densities for every probe at `elapsed_s` after calibration."""
    n = true_density.shape[0]
    gain = 1.0 + drift_per_day * (elapsed_s / 86400.0)
    multiplicative = np.maximum(1.0 + rng.normal(0.0, parameters.relative_sd, n), 0.0)
    additive = rng.normal(0.0, parameters.floor_sd, n)
    return np.maximum(true_density * gain * multiplicative + additive, 0.0)
