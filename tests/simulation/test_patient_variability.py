"""`shuttlectl analyze --patients N`: virtual patients, their runs and the aggregate report.

Sampling is checked for what reproducibility needs (patient i of seed S is the same whatever N,
wherever it is drawn) and for physical ranges; the runs use a short protocol
(short_expansion.yaml, eight simulated hours) on a local process pool, so the whole file costs
a few seconds. Dask is tested in test_variability_dask.py against the same local result.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from shuttled.reports.variability_html import render_variability
from shuttled.simulation.variability import analyze_patient, violation_kind
from simulators.patient_variability import (
    PATIENT_DISTRIBUTIONS,
    RANGES,
    SITES,
    sample_patient,
    sample_patients,
)
from tests.simulation.variability_case import PATIENTS, SEED, SHORT

ROOT = Path(__file__).resolve().parents[2]
SHUTTLECTL = str(Path(sys.executable).parent / "shuttlectl")


def test_patient_i_is_the_same_whatever_the_number_of_patients() -> None:
    assert sample_patients(7, 5)[3] == sample_patients(7, 10)[3] == sample_patient(7, 3)
    assert sample_patient(7, 3) != sample_patient(8, 3)  # the seed matters
    assert len({p.noise_seed for p in sample_patients(7, 50)}) == 50  # own noise per patient


def test_sampled_patients_lie_in_their_physical_ranges() -> None:
    patients = sample_patients(3, 300)
    for name, (low, high) in RANGES.items():
        values = [getattr(p, name) for p in patients]
        assert all(low <= v <= high for v in values), name
        if name in PATIENT_DISTRIBUTIONS:  # site values: only SITES of them
            assert max(values) - min(values) > 0.2 * (high - low), f"{name} barely varies"
    assert {p.site for p in patients} == set(range(SITES))
    for p in patients:  # the plant and starting state follow from the draws
        plant = p.plant_parameters()
        assert plant.mu_max_per_h == pytest.approx(math.log(2) / p.doubling_time_h)
        assert (plant.lag_h, plant.ambient_c) == (p.lag_h, p.ambient_c)
        start = p.initial_conditions()
        assert start.density * start.volume_ml == pytest.approx(p.seeded_cells * p.viability)
        assert start.glucose_mm == plant.medium_glucose_mm and start.temperature == p.ambient_c


def test_patients_of_one_site_share_its_room_and_media_lot() -> None:
    by_site: dict[int, set[float]] = {}
    for p in sample_patients(5, 40):
        by_site.setdefault(p.site, set()).add(p.medium_glucose_mm)
    assert all(len(lots) == 1 for lots in by_site.values())


def test_violations_are_grouped_by_kind() -> None:
    assert violation_kind("run ends HELD: phase expansion timed out after 240.00 h") == (
        "run ends HELD: phase expansion timed out after N h"
    )
    assert violation_kind("volume reaches 1e+03 mL, above the vessel's 900 mL") == (
        "volume reaches N mL, above the vessel's N mL"
    )


def test_a_dose_some_patients_cannot_reach_shows_in_the_complete_share(local_report) -> None:
    report = local_report
    assert 0 < report["complete_share"] < 1
    assert report["final_states"] == {"COMPLETE": 1, "HELD": 3}
    assert [run["patient"] for run in report["runs"]] == list(range(PATIENTS))
    target = report["parameters"]["target_cells"]
    for run in report["runs"]:  # HELD exactly where the cells stayed short of the dose
        reached = run["final_state"] == "COMPLETE"
        assert reached == (run["final_cells"] >= target * 0.98), run
        assert reached == (run["violations"] == [])
    assert report["violations"] == [
        {"kind": "run ends HELD: phase expansion timed out after N h", "count": 3, "share": 0.75}
    ]
    assert report["duration_h"]["p90"] == pytest.approx(8.0, abs=0.01)
    for name, spread in report["sampled"].items():
        assert spread["min"] <= spread["p50"] <= spread["max"], name


def test_one_patient_alone_gives_what_it_gave_in_the_pool(local_report) -> None:
    alone = analyze_patient(SHORT, {}, SEED, 2)
    assert json.loads(json.dumps(alone)) == local_report["runs"][2]


def test_the_html_report_is_self_contained(local_report) -> None:
    html = render_variability(local_report)
    assert html.count("<svg") == 8 and 'data-histogram="Doubling time"' in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    assert "25.0 %" in html  # the COMPLETE share


def _shuttlectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHUTTLECTL, "analyze", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)  # fmt: skip


def test_bad_input_is_a_clear_error_without_traceback() -> None:
    zero = _shuttlectl(str(SHORT), "--patients", "0")
    assert zero.returncode == 2 and "--patients: expected at least 1, got 0" in zero.stderr
    refused = _shuttlectl(str(SHORT), "--patients", "2", "--scheduler", "tcp://127.0.0.1:1")
    assert refused.returncode == 3, refused.stderr
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:1'" in refused.stderr
    missing = _shuttlectl("no-such-protocol.yaml", "--patients", "2")
    assert missing.returncode == 1 and "file not found" in missing.stderr
    for result in (zero, refused, missing):
        assert "Traceback" not in result.stderr and result.stdout == ""
