"""A closed loop of the control kernels and the plant model, in-process and seeded.

What the daemon's control tick does, without devices: measure (the sensor temperature with
Pt100-like noise, the density with the probe's 5 % multiplicative noise), run the guarded
temperature kernel and the growth estimator, decide dilutions with the density-control law and
pump them at the dilution rate, then advance the plant by one control period at 1 s steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from shuttled.control import growth_estimator as estimator
from shuttled.control import safety
from shuttled.control import temperature as pid
from shuttled.control.density_control import dilution_volume_ml
from shuttled.engine.unit_run import DILUTION_RATE_ML_MIN, DILUTION_TARGET, MIN_DILUTION_ML
from simulators import plant

PERIOD_S = 5.0
TEMPERATURE_NOISE_K = 0.02
DENSITY_NOISE = 0.05
MEDIUM_C = 37.0


@dataclass
class Trace:
    temperature: list[float] = field(default_factory=list)  # liquid, what the cells feel
    sensed: list[float] = field(default_factory=list)  # what the controller was given
    heater: list[float] = field(default_factory=list)
    density: list[float] = field(default_factory=list)  # true
    estimate: list[float] = field(default_factory=list)
    growth: list[float] = field(default_factory=list)
    volume: list[float] = field(default_factory=list)

    def array(self, name: str) -> np.ndarray:
        return np.array(getattr(self, name))


class ClosedLoop:
    def __init__(
        self,
        *,
        seed: int = 0,
        volume_ml: float = 200.0,
        temperature: float = 22.0,
        density: float = 0.5e6,
        age_h: float = 0.0,
        setpoint: float = 37.0,
        max_density: float = math.nan,
        max_volume_ml: float = 1000.0,
        noise: bool = True,
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.noise = noise
        self.state = plant.InitialConditions(temperature, volume_ml, density).as_row()[None, :]
        self.state = self.state.copy()
        self.state[0, plant.AGE_H] = age_h
        self.params = plant.PlantParameters().as_row()[None, :]
        self.setpoint = np.array([setpoint])
        self.temperature = safety.TemperatureArrays(
            [pid.TemperatureGains()], [safety.GuardSettings()]
        )
        self.heater = self.temperature.heater
        self.flags = self.temperature.flags
        self.est_settings = estimator.EstimatorSettings().as_row()[None, :]
        self.est_state = estimator.new_estimator_state(1)
        self.density = np.full(1, math.nan)
        self.growth = np.full(1, math.nan)
        self.max_density = max_density
        self.max_volume_ml = max_volume_ml
        self.pending_ml = 0.0  # dilution still to pump
        self.dilutions = 0
        self.trace = Trace()

    def step(self, bolus_ml: float = 0.0, bolus_c: float = 4.0) -> None:
        temperature_noise = self.rng.normal(0.0, TEMPERATURE_NOISE_K) if self.noise else 0.0
        density_noise = self.rng.normal(0.0, DENSITY_NOISE) if self.noise else 0.0
        sensed = self.state[:, plant.SENSOR_TEMPERATURE] + temperature_noise
        probe = self.state[:, plant.DENSITY] * max(1.0 + density_noise, 0.0)
        self.temperature.setpoint[:] = self.setpoint
        self.temperature.measured[:] = sensed
        safety.temperature_tick(self.temperature.block, PERIOD_S)
        volume = self.state[:, plant.VOLUME_ML].copy()
        estimator.growth_estimator(
            probe, volume, self.est_settings, self.est_state, PERIOD_S, self.density, self.growth
        )
        inflow = self._dilute(volume[0])
        inflow_c = MEDIUM_C
        if bolus_ml > 0.0:
            inflow_c = (inflow * MEDIUM_C + bolus_ml * bolus_c) / (inflow + bolus_ml)
            inflow += bolus_ml
        plant.plant_step(
            self.state,
            self.params,
            self.heater / 100.0,
            np.array([inflow]),
            np.array([inflow_c]),
            np.zeros(1),
            np.ones(1, dtype=np.bool_),
            1.0,
            int(PERIOD_S),
        )
        t = self.trace
        t.temperature.append(float(self.state[0, plant.TEMPERATURE]))
        t.sensed.append(float(sensed[0]))
        t.heater.append(float(self.heater[0]))
        t.density.append(float(self.state[0, plant.DENSITY]))
        t.estimate.append(float(self.density[0]))
        t.growth.append(float(self.growth[0]))
        t.volume.append(float(self.state[0, plant.VOLUME_ML]))

    def _dilute(self, volume: float) -> float:
        """The engine's use of the law: decide when idle, then pump at the dilution rate."""
        if math.isnan(self.max_density):
            return 0.0
        if self.pending_ml <= 0.0:
            self.pending_ml = dilution_volume_ml(
                float(self.density[0]),
                float(self.growth[0]),
                volume,
                self.max_density,
                self.max_volume_ml,
                DILUTION_RATE_ML_MIN,
                PERIOD_S,
                DILUTION_TARGET,
                MIN_DILUTION_ML,
            )
            self.dilutions += self.pending_ml > 0.0
        pumped = min(self.pending_ml, DILUTION_RATE_ML_MIN * PERIOD_S / 60.0)
        self.pending_ml -= pumped
        return pumped

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / PERIOD_S)):
            self.step()

    def time_s(self) -> np.ndarray:
        return PERIOD_S * np.arange(1, len(self.trace.temperature) + 1)
