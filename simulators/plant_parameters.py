"""The constants of one unit's plant, with their sources, and the state a unit starts in.

Kept apart from the kernels in plant.py because nothing here is compiled: numba bakes module
constants into its cached machine code and notices a change only in the kernel's own file, so the
column indices and the physical constants the kernels read stay in plant.py, and only these
plain-Python builders of the kernels' input rows live here. `PlantParameters.as_row` gives the
columns in field order, which plant.py's parameter column indices follow
(tests/simulators/test_plant.py checks that the two agree).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PlantParameters:
    """One unit's physical and biological constants.

    Sources and assumptions:
    heater_w 15 W and ua_w_per_k 0.6 W/K: assumption for a 1 L single-use cartridge in an
    incubator-less housing, chosen so a 200 mL fill warms 22 → 37 °C in ≈ 25 min at full power.
    vessel_j_per_k 160 J/K: ≈ 100 g of polymer and sensor housings at ≈ 1.6 J/(g·K) (assumption).
    sensor_tau_s 20 s: typical Pt100 in a thermowell, 10–30 s (vendor data sheets).
    mu_max_per_h ln2/24 h: T-cell doubling ≈ 24 h at the optimum (literature 13–24 h).
    t_min/t_opt/t_max 25/37/42 °C: cardinal temperatures of mammalian cells (assumption; T cells
    stop proliferating near 25 °C and suffer heat stress above ≈ 41 °C).
    density_max 3e7 cells/mL: practical ceiling of T-cell suspension culture (issue 3).
    death_per_h 0.002: ≈ 5 % loss per day of viability without nutrient stress (assumption).
    lag_h 12 h: activation lag after CD3/CD28 stimulation (assumption; 12–36 h reported).
    glucose_k_mm 0.5 mM: Monod constant for glucose; mammalian cell lines report 0.1–1 mM
    (assumption within that range).
    lactate_k_mm 30 mM: lactate concentration that halves growth; T-cell proliferation is
    markedly impaired at 20–40 mM (assumption within the reported range).
    glucose_uptake_pmol_per_cell_h 0.08: activated T cells take up ≈ 0.05–0.1 pmol/cell/h
    (assumption; gives ≈ 4 mM/day at 2×10⁶ cells/mL, as seen in CAR-T expansions).
    lactate_yield 1.6 mol/mol: aerobic glycolysis of activated T cells converts most glucose to
    lactate (theoretical maximum 2; 1.5–1.8 typical for proliferating lymphocytes; assumption).
    medium_glucose_mm 11.1 mM: 2 g/L, the glucose of RPMI 1640 and of common serum-free T-cell
    media (assumption for the medium in the bags).
    starvation_death_per_h 0.02: extra death rate once glucose is exhausted, ≈ 40 % per day
    (assumption).
    """

    heater_w: float = 15.0
    ua_w_per_k: float = 0.6
    ambient_c: float = 22.0
    vessel_j_per_k: float = 160.0
    sensor_tau_s: float = 20.0
    mu_max_per_h: float = math.log(2.0) / 24.0
    t_min: float = 25.0
    t_opt: float = 37.0
    t_max: float = 42.0
    density_max: float = 3.0e7
    death_per_h: float = 0.002
    lag_h: float = 12.0
    glucose_k_mm: float = 0.5
    lactate_k_mm: float = 30.0
    glucose_uptake_pmol_per_cell_h: float = 0.08
    lactate_yield: float = 1.6
    medium_glucose_mm: float = 11.1
    starvation_death_per_h: float = 0.02

    def as_row(self) -> np.ndarray:
        return np.array(list(asdict(self).values()), dtype=np.float64)


@dataclass(frozen=True)
class InitialConditions:
    """SPEC §1: a unit starts at 22 °C with 100 mL of medium at 0.5×10⁶ viable cells/mL.

    The medium is fresh: glucose at the medium's concentration, no lactate yet.
    """

    temperature: float = 22.0
    volume_ml: float = 100.0
    density: float = 0.5e6
    glucose_mm: float = 11.1
    lactate_mm: float = 0.0

    def as_row(self) -> np.ndarray:
        return np.array(
            [
                self.temperature,
                self.temperature,
                self.volume_ml,
                self.density,
                0.0,
                self.glucose_mm,
                self.lactate_mm,
                1.0,  # exp(−0/τ_lag): the whole lag to go
                0.0,
            ],
            dtype=np.float64,
        )


def steady_state_temperature(params: PlantParameters, duty: float) -> float:
    """Closed form of the thermal balance at a fixed heater duty (for tests and feed-forward)."""
    return params.ambient_c + params.heater_w * duty / params.ua_w_per_k
