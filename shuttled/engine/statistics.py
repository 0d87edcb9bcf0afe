"""Per-run quality figures for the summary: temperature in band, density ratio, media used.

Temperature statistics count only time after warm-up: after each setpoint change, samples are
ignored until the measurement first enters the ±0.2 °C band, because a 15 K warm-up is the
heater doing its job, not a deviation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TEMPERATURE_BAND_K = 0.2


@dataclass
class RunStatistics:
    samples_in_band: int = 0
    samples_counted: int = 0
    temperature_sum: float = 0.0
    max_abs_deviation: float = 0.0
    max_density_ratio: float = 0.0
    harvested_cells: float = 0.0
    _setpoint: float = math.nan
    _warmed_up: bool = False

    def add_temperature(self, setpoint: float | None, measured: float) -> None:
        if setpoint is None or math.isnan(measured):
            return
        if setpoint != self._setpoint:
            self._setpoint = setpoint
            self._warmed_up = False
        deviation = abs(measured - setpoint)
        if not self._warmed_up:
            if deviation > TEMPERATURE_BAND_K:
                return
            self._warmed_up = True
        self.samples_counted += 1
        self.samples_in_band += deviation <= TEMPERATURE_BAND_K
        self.temperature_sum += measured
        self.max_abs_deviation = max(self.max_abs_deviation, deviation)

    def add_density(self, density: float, max_density: float | None) -> None:
        if max_density and not math.isnan(density):
            self.max_density_ratio = max(self.max_density_ratio, density / max_density)

    def add_harvest(self, density: float, volume_ml: float) -> None:
        if not math.isnan(density) and volume_ml > 0:
            self.harvested_cells += density * volume_ml

    @property
    def temp_in_band_pct(self) -> float:
        if not self.samples_counted:
            return 0.0
        return 100.0 * self.samples_in_band / self.samples_counted

    @property
    def temp_mean(self) -> float:
        if not self.samples_counted:
            return math.nan
        return self.temperature_sum / self.samples_counted
