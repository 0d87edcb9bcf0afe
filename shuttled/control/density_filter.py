"""Filtered viable density and growth rate from a noisy capacitance probe.

The protocol's `density`, `total_cells`, `growth_rate` and `doubling_time_h` signals come from
here. The probe's noise is multiplicative (~5 %), so the filter works on log density; growth is
the smoothed slope of that log. Feeding dilutes the culture by a known factor (V_before/V_after),
which is applied to the estimate directly so a feed is not mistaken for cell death.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LOG_DENSITY_TAU_S = 1200.0
GROWTH_TAU_S = 7200.0
OUTLIER_LOG_JUMP = 0.5  # a reading 65 % off the estimate is a bubble or a glitch, not biology


@dataclass
class DensityEstimate:
    log_density: float = math.nan
    growth_rate_per_h: float = math.nan
    last_time: float = math.nan
    last_volume_ml: float = math.nan
    rejected: int = 0

    @property
    def density(self) -> float:
        return math.exp(self.log_density) if not math.isnan(self.log_density) else math.nan

    def update(self, now: float, measured: float | None, volume_ml: float) -> None:
        """Fold in one reading (None or non-positive: keep predicting from the growth rate)."""
        diluted = not math.isnan(self.last_volume_ml) and volume_ml > self.last_volume_ml > 0
        if diluted and not math.isnan(self.log_density):
            self.log_density += math.log(self.last_volume_ml / volume_ml)
        if not math.isnan(volume_ml):
            self.last_volume_ml = volume_ml
        dt = 0.0 if math.isnan(self.last_time) else now - self.last_time
        self.last_time = now
        if not math.isnan(self.growth_rate_per_h) and dt > 0:
            self.log_density += self.growth_rate_per_h * dt / 3600.0
        if measured is None or not measured > 0 or not math.isfinite(measured):
            return
        observed = math.log(measured)
        if math.isnan(self.log_density):
            self.log_density = observed
            return
        innovation = observed - self.log_density
        if abs(innovation) > OUTLIER_LOG_JUMP:
            self.rejected += 1
            return
        gain = dt / (LOG_DENSITY_TAU_S + dt)
        self.log_density += gain * innovation
        slope_per_h = innovation / max(LOG_DENSITY_TAU_S, dt) * 3600.0
        previous = 0.0 if math.isnan(self.growth_rate_per_h) else self.growth_rate_per_h
        growth_gain = dt / (GROWTH_TAU_S + dt)
        self.growth_rate_per_h = previous + growth_gain * slope_per_h
