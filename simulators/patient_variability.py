"""Virtual patients: how one autologous batch differs from the next, with sources.

The plant constants in plant_parameters.py describe one nominal patient. Autologous CAR-T
manufacturing starts from each patient's own T cells, and those differ a great deal: heavily
pretreated patients bring fewer, less fit cells that activate later and expand more slowly
(Fraietta et al. 2018, Nat Med 24:563; Das et al. 2019, Cancer Discov 9:492), and a few percent of
enrolled patients in the pivotal trials received no product because it could not be made to
specification (ZUMA-1, Neelapu et al. 2017, NEJM 377:2531; JULIET, Schuster et al. 2019, NEJM
380:45; ELIANA, Maude et al. 2018, NEJM 378:439). A protocol that completes for the nominal patient
must be judged over that spread, which is what `shuttlectl analyze --patients N` does.

Every distribution is below with its parameters and its source, and docs/patient_variability.md
says the same for people. Where the literature gives a range rather than a distribution, the
shape and its parameters are assumptions chosen to reproduce that range, and are marked so. The
median of each distribution is the nominal plant's value where the plant already has a sourced
one, so the median patient is the patient `shuttlectl analyze` has always simulated.

Determinism: patient i of seed S has the same parameters wherever and in whatever order it is
sampled, and whatever the number of patients. Each draw comes from its own stream,
`SeedSequence(S, spawn_key=(PATIENT, i, k))` for the patient's k-th quantity (the stream that
`SeedSequence(S).spawn(3)[PATIENT].spawn(n)[i].spawn(m)[k]` gives for any n > i, m > k, without
depending on n or on any shared generator), so a quantity added later changes no other.
Truncated distributions are sampled by the inverse of their distribution function from one
uniform draw, not by rejection, so every quantity costs exactly one draw and lies inside its
physical range by construction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from statistics import NormalDist

import numpy as np

from simulators.plant_parameters import InitialConditions, PlantParameters

# First element of every spawn key: which family of streams a draw belongs to.
PATIENT, SITE, NOISE = 0, 1, 2
# Sites that manufacture: a patient is made at one of them, and shares its ambient temperature
# and media lot with the other patients there (a fixed number, so patient i's site does not
# depend on how many patients are sampled).
SITES = 4
VESSEL_START_ML = 100.0  # SPEC §1: a unit starts with 100 mL of medium

_STANDARD = NormalDist()


@dataclass(frozen=True)
class Truncated:
    """A normal distribution of `transform⁻¹(x)` cut to [low, high] (in the units of x).

    kind "normal": x ~ N(mu, sigma); "lognormal": ln x ~ N(ln median, sigma), with `mu` the
    median; "logitnormal": logit x ~ N(logit mu, sigma), for fractions, with `mu` the median.
    """

    kind: str
    mu: float
    sigma: float
    low: float
    high: float

    def _forward(self, x: float) -> float:
        if self.kind == "lognormal":
            return math.log(x)
        if self.kind == "logitnormal":
            return math.log(x / (1.0 - x))
        return x

    def _back(self, z: float) -> float:
        if self.kind == "lognormal":
            return math.exp(z)
        if self.kind == "logitnormal":
            return 1.0 / (1.0 + math.exp(-z))
        return z

    def sample(self, uniform: float) -> float:
        """Inverse-CDF draw: `uniform` in [0, 1) maps into [low, high] monotonically."""
        centre = self._forward(self.mu)
        lo = _STANDARD.cdf((self._forward(self.low) - centre) / self.sigma)
        hi = _STANDARD.cdf((self._forward(self.high) - centre) / self.sigma)
        p = min(max(lo + uniform * (hi - lo), 1e-12), 1.0 - 1e-12)
        value = self._back(centre + self.sigma * _STANDARD.inv_cdf(p))
        return min(max(value, self.low), self.high)  # rounding at the very edges only


# --- per patient --------------------------------------------------------------------------------

SEEDED_CELLS = Truncated("lognormal", 5.5e7, 0.30, 2.0e7, 1.2e8)
"""Total (viable + dead) selected T cells seeded into the cartridge.

Processes seed a fixed target (SPEC §1: 5×10⁷ viable cells in 100 mL; CliniMACS Prodigy T-cell
processes seed about 1×10⁸ selected cells: Zhu et al. 2018, Cytotherapy 20:394; Castella et al.
2019, Front Immunol 10:2361), but the count at seeding scatters around it (counting error, losses
in selection) and lymphopenic, heavily pretreated patients fall short (Allen et al. 2017,
Transfusion 57:1133: apheresis CD3⁺ yield follows the peripheral CD3⁺ count). Lognormal,
median 5.5×10⁷ (× the median viability ≈ 5×10⁷ viable, the nominal seeding), σ 0.30 (P10–P90
≈ 3.7–8.1×10⁷), truncated 2×10⁷–1.2×10⁸: the spread is an assumption."""

VIABILITY = Truncated("logitnormal", 0.91, 0.7, 0.70, 0.98)
"""Viable fraction of the seeded cells.

Fresh apheresis products are typically above 90 % viable; cryopreserved or shipped starting
material and products of heavily pretreated patients are lower (Allen et al. 2017). 70 % is the
usual lower acceptance limit for CAR-T starting material and product viability (assumption: the
common specification, not one product's label). Logit-normal, median 91 %, σ 0.7 on the logit
scale, truncated 70–98 %: an assumption fitting that range."""

DOUBLING_TIME_H = Truncated("lognormal", 24.0, 0.40, 14.0, 96.0)
"""Doubling time at the growth optimum (μ_max = ln 2 / t_d) of the activated T cells.

Bulk expansion of activated T cells doubles about once a day (plant_parameters.py: 13–24 h at the
optimum), and patient material spans from fit, naive-rich cells to cells of chemotherapy-exposed
patients that barely expand (Fraietta et al. 2018; Das et al. 2019); a few percent of patients'
products fail to reach dose (ZUMA-1, JULIET, ELIANA). Lognormal, median 24 h (the nominal
plant), σ 0.40 (P10–P90 ≈ 14.4–40 h before truncation), truncated 14–96 h (96 h: a culture that
hardly expands): shape and σ are assumptions reproducing that spread."""

LAG_H = Truncated("lognormal", 20.0, 0.35, 12.0, 48.0)
"""Activation lag τ_lag after CD3/CD28 stimulation (the plant's time constant of 1 − e^(−t/τ)).

Stimulated T cells enter their first division after about 1–2 days (Gett & Hodgkin 2000, Nat
Immunol 1:239, and the plant's note: 12–36 h reported); less fit patient cells are slower.
Lognormal, median 20 h, σ 0.35, truncated 12–48 h (12 h: the nominal plant, the fast end):
an assumption within the reported range."""

DEATH_PER_H = Truncated("lognormal", 0.002, 0.50, 0.0005, 0.01)
"""Death rate of the viable cells without nutrient stress.

The nominal 0.002/h (≈ 5 % a day) is itself an assumption (plant_parameters.py); patient
material differs in fitness (Fraietta et al. 2018). Lognormal, median 0.002/h, σ 0.5,
truncated 0.0005–0.01/h (1–21 % a day): an assumption."""

# --- per site -----------------------------------------------------------------------------------

SITE_AMBIENT_C = Truncated("normal", 21.0, 1.5, 17.0, 26.0)
"""A site's room temperature around the instrument.

Cleanrooms and GMP laboratories are held at about 18–24 °C (EU GMP Annex 1 sets no value; 20 ± 2
°C is a common design basis): normal, mean 21 °C, σ 1.5, truncated 17–26 °C: an assumption."""

RUN_AMBIENT_DEVIATION_C = Truncated("normal", 0.0, 0.5, -1.5, 1.5)
"""Day-to-day deviation of one run's room temperature from its site's (assumption)."""

SITE_MEDIUM_GLUCOSE_MM = Truncated("normal", 11.1, 0.35, 10.0, 12.2)
"""Glucose of the media lot a site uses (fresh medium in the bags and in the cartridge).

Nominal 11.1 mM (2 g/L, RPMI 1640 and common serum-free T-cell media); lot-to-lot spread of a
few percent: normal, σ 0.35 mM (≈ 3 %), truncated ±10 %: an assumption (vendors specify their
media's glucose within a tolerance they rarely publish)."""

PATIENT_DISTRIBUTIONS = {
    "seeded_cells": SEEDED_CELLS,
    "viability": VIABILITY,
    "doubling_time_h": DOUBLING_TIME_H,
    "lag_h": LAG_H,
    "death_per_h": DEATH_PER_H,
}
SITE_DISTRIBUTIONS = {
    "ambient_c": SITE_AMBIENT_C,
    "medium_glucose_mm": SITE_MEDIUM_GLUCOSE_MM,
}


def _uniform(seed: int, *key: int) -> float:
    """One uniform draw of the stream `SeedSequence(seed, spawn_key=key)`: nothing shared."""
    return float(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key)).random())


@dataclass(frozen=True)
class Site:
    index: int
    ambient_c: float
    medium_glucose_mm: float


def sample_site(seed: int, index: int) -> Site:
    """Site `index` of seed `seed`: its room temperature and media lot."""
    draws = {
        name: dist.sample(_uniform(seed, SITE, index, k))
        for k, (name, dist) in enumerate(SITE_DISTRIBUTIONS.items())
    }
    return Site(index, **draws)


@dataclass(frozen=True)
class VirtualPatient:
    """One virtual patient's batch: its cells, the site that makes it, the twin's noise seed."""

    index: int
    site: int
    seeded_cells: float
    viability: float
    doubling_time_h: float
    lag_h: float
    death_per_h: float
    ambient_c: float
    medium_glucose_mm: float
    noise_seed: int

    @property
    def viable_cells(self) -> float:
        return self.seeded_cells * self.viability

    def plant_parameters(self, nominal: PlantParameters | None = None) -> PlantParameters:
        """The nominal plant with this patient's biology and this site's room and medium."""
        return replace(
            nominal or PlantParameters(),
            mu_max_per_h=math.log(2.0) / self.doubling_time_h,
            lag_h=self.lag_h,
            death_per_h=self.death_per_h,
            ambient_c=self.ambient_c,
            medium_glucose_mm=self.medium_glucose_mm,
        )

    def initial_conditions(self) -> InitialConditions:
        """The cartridge at seeding: at room temperature, fresh medium, this patient's cells.

        The plant counts viable cells only (its density is what a capacitance probe sees), so
        the dead share of the seeded cells simply is not there.
        """
        return InitialConditions(
            temperature=self.ambient_c,
            volume_ml=VESSEL_START_ML,
            density=self.viable_cells / VESSEL_START_ML,
            glucose_mm=self.medium_glucose_mm,
        )

    def as_dict(self) -> dict[str, float | int]:
        """Plain values for reports and JSON (rounded: they are inputs, not measurements)."""
        values = asdict(self)
        values["viable_cells"] = self.viable_cells
        return {k: v if isinstance(v, int) else float(f"{v:.6g}") for k, v in values.items()}


def sample_patient(seed: int, index: int) -> VirtualPatient:
    """Patient `index` of seed `seed`: the same wherever it is drawn, whatever N is."""
    if index < 0:
        raise ValueError("a patient index is not negative")
    draws = {
        name: dist.sample(_uniform(seed, PATIENT, index, k))
        for k, (name, dist) in enumerate(PATIENT_DISTRIBUTIONS.items())
    }
    site = sample_site(seed, min(int(_uniform(seed, PATIENT, index, 100) * SITES), SITES - 1))
    deviation = RUN_AMBIENT_DEVIATION_C.sample(_uniform(seed, PATIENT, index, 101))
    noise = np.random.SeedSequence(seed, spawn_key=(NOISE, index)).generate_state(1)[0]
    return VirtualPatient(
        index=index,
        site=site.index,
        ambient_c=site.ambient_c + deviation,
        medium_glucose_mm=site.medium_glucose_mm,
        noise_seed=int(noise) & 0x7FFFFFFF,
        **draws,
    )


def sample_patients(seed: int, count: int) -> list[VirtualPatient]:
    return [sample_patient(seed, i) for i in range(count)]


# Physical ranges a sampled patient always lies in (for tests and reports).
RANGES = {
    **{name: (d.low, d.high) for name, d in PATIENT_DISTRIBUTIONS.items()},
    "ambient_c": (
        SITE_AMBIENT_C.low + RUN_AMBIENT_DEVIATION_C.low,
        SITE_AMBIENT_C.high + RUN_AMBIENT_DEVIATION_C.high,
    ),
    "medium_glucose_mm": (SITE_MEDIUM_GLUCOSE_MM.low, SITE_MEDIUM_GLUCOSE_MM.high),
}
