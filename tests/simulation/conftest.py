"""The patient-variability tests' shared reference: one local analysis, computed once."""

from __future__ import annotations

import json

import pytest

from shuttled.simulation.variability import VariabilityJob, aggregate
from shuttled.simulation.variability_runner import run_local
from tests.simulation.variability_case import PATIENTS, SEED, SHORT


@pytest.fixture(scope="session")
def local_report() -> dict:
    """short_expansion.yaml over PATIENTS patients of SEED on a local pool of two processes,
    as the `--json` object (through JSON, as a command-line caller would read it)."""
    job = VariabilityJob.from_file(SHORT, {}, SEED, PATIENTS)
    return json.loads(json.dumps(aggregate(job, run_local(job, workers=2))))
