"""Per-run quality figures for the summary: temperature in band, density ratio, media used.

Temperature statistics count only time after warm-up: after each setpoint change, samples are
ignored until the measurement first comes within ±0.1 K of the setpoint (issue 6's definition of
a finished warm-up), because a 15 K warm-up is the heater doing its job, not a deviation. Ending
warm-up at the edge of the ±0.2 °C band instead would count the last minutes of the approach as
deviations of up to 0.2 K and make `temp_max_abs_dev` describe the warm-up, not the regulation.

`max_density_ratio` (estimated density over the phase's `max_density` during density control)
likewise counts only once density control has had the density at or under its limit: a phase
that starts above the limit (the inoculum is denser than the protocol allows, or a new phase
lowers the limit) first needs its catch-up dilution, and how far above the limit it started says
nothing about how well density is regulated. That start is kept apart as
`initial_density_ratio`. A new limit re-arms the rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TEMPERATURE_BAND_K = 0.2
WARMED_UP_WITHIN_K = 0.1


@dataclass
class RunStatistics:
    samples_in_band: int = 0
    samples_counted: int = 0
    temperature_sum: float = 0.0
    max_abs_deviation: float = 0.0
    max_density_ratio: float = 0.0
    initial_density_ratio: float = 0.0
    harvested_cells: float = 0.0
    _setpoint: float = math.nan
    _warmed_up: bool = False
    _density_limit: float = math.nan
    _density_regulated: bool = False

    def add_temperature(self, setpoint: float | None, measured: float) -> None:
        if setpoint is None or math.isnan(measured):
            return
        if setpoint != self._setpoint:
            self._setpoint = setpoint
            self._warmed_up = False
        deviation = abs(measured - setpoint)
        if not self._warmed_up:
            if deviation > WARMED_UP_WITHIN_K:
                return
            self._warmed_up = True
        self.samples_counted += 1
        self.samples_in_band += deviation <= TEMPERATURE_BAND_K
        self.temperature_sum += measured
        self.max_abs_deviation = max(self.max_abs_deviation, deviation)

    def add_density(self, density: float, max_density: float | None) -> None:
        if not max_density or math.isnan(density):
            return
        if max_density != self._density_limit:
            self._density_limit = max_density
            self._density_regulated = False
        ratio = density / max_density
        if not self._density_regulated:
            if ratio > 1.0:
                self.initial_density_ratio = max(self.initial_density_ratio, ratio)
                return
            self._density_regulated = True
        self.max_density_ratio = max(self.max_density_ratio, ratio)

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
