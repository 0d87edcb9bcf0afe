"""Density control: how much fresh medium to add now so density stays at or under its limit.

Called every tick for a unit whose phase has `density_control` and no dilution running. The law:

* Predict the density at the moment a dilution ordered now would have been pumped in: one control
  period plus the pumping time at the dilution rate, growing at the estimated rate (never
  assuming shrinkage: a dying culture is no reason to wait). Acting on the prediction rather
  than the present keeps the density under the limit instead of catching it above.
* If that prediction exceeds `max_density`, dilute to `target_fraction` of the limit:
  V_add = V·(X_pred/(f·X_max) − 1). The margin (f = 0.9) is the hysteresis that keeps the pump
  from chattering on the estimate's residual noise; at T-cell growth rates it means one dilution
  every few hours.
* Never beyond `max_volume_ml`: only what fits is added, and below `min_ml` nothing is (the pump
  cannot meter a few drops and the engine reports the cap instead).

The pump's rate limit enters through `rate_ml_min`, which the caller bounds by the pump's
maximum. `dilution_law` is the per-unit law. It is `register_jitable`: the batched
`density_control` compiles it in and runs it over every unit in one call, while Python calls it as
the plain function it is, so `density_control.py_func` is a reference that runs no compiled code
(with an `njit` law it would call the law's machine code, and the bit-identity test would compare
the compiled arithmetic with itself). `dilution_volume_ml` is the same law compiled on its own,
for the engine, which calls it from Python once per unit and tick.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numba.extending import register_jitable


@register_jitable
def dilution_law(
    density: float,
    growth_per_h: float,
    volume_ml: float,
    max_density: float,
    max_volume_ml: float,
    rate_ml_min: float,
    period_s: float,
    target_fraction: float,
    min_ml: float,
) -> float:
    """Millilitres of medium to add now (0 when none is needed, possible or meterable)."""
    if not (density > 0.0 and volume_ml > 0.0 and max_density > 0.0 and rate_ml_min > 0.0):
        return 0.0  # NaN or missing readings: never dose blind
    growth = growth_per_h if growth_per_h > 0.0 else 0.0
    target = target_fraction * max_density
    pumping_s = 60.0 * max(volume_ml * (density / target - 1.0), 0.0) / rate_ml_min
    predicted = density * math.exp(growth * (period_s + pumping_s) / 3600.0)
    if predicted <= max_density:
        return 0.0
    wanted = volume_ml * (predicted / target - 1.0)
    volume = min(wanted, max_volume_ml - volume_ml)
    return volume if volume >= min_ml else 0.0


# The engine's per-tick call from Python stays compiled: a call costs 0.25–0.45 µs, the
# interpreted law 0.35–1 µs (more when it doses). The law itself is not `njit` for the reference's
# sake (see the module docstring).
dilution_volume_ml = njit(cache=True)(dilution_law)


@njit(cache=True)
def density_control(
    density: np.ndarray,
    growth_per_h: np.ndarray,
    volume_ml: np.ndarray,
    max_density: np.ndarray,
    max_volume_ml: np.ndarray,
    rate_ml_min: np.ndarray,
    period_s: float,
    target_fraction: float,
    min_ml: float,
    dilution_ml: np.ndarray,
) -> None:
    """`dilution_law` for every unit; a NaN `max_density` means no density control."""
    for i in range(density.shape[0]):
        dilution_ml[i] = dilution_law(
            density[i],
            growth_per_h[i],
            volume_ml[i],
            max_density[i],
            max_volume_ml[i],
            rate_ml_min[i],
            period_s,
            target_fraction,
            min_ml,
        )
