"""`shuttlectl analyze --patients N`: one protocol over N virtual patients, and what it says.

A protocol that completes for the nominal patient (`shuttlectl analyze`) may still fail the
patients whose cells grow slowly or who bring few of them. Each virtual patient is one dry run of
the digital twin (`analyze`, the daemon's own engine and control loop) with that patient's plant
and starting state (simulators/patient_variability.py); this module runs one patient
(`analyze_patient`, a top-level function so process pools and Dask workers can pickle it by name)
and turns the per-patient results into the aggregate report.

Everything here is a pure function of (protocol text, overrides, seed, patient index): results
are gathered by patient index, never by completion order, and carry no wall-clock value, so the
report is identical whether one process, a pool or a Dask cluster computed it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from protocols import load_protocol_file
from shuttled import __version__
from shuttled.simulation.analyze import analyze
from simulators.patient_variability import RANGES, sample_patient

PERCENTILES = (10, 50, 90)
# Per-patient quantities whose spread the report gives as P10/P50/P90.
SPREAD_KEYS = ("duration_h", "final_cells", "media_ml")
SAMPLED_KEYS = (*RANGES, "viable_cells")  # the viable cells seeded: seeded × viability
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class VariabilityJob:
    """What every patient's run needs: plain values, so it travels to any worker.

    The protocol goes as its text, not its path: a Dask worker on another machine has no copy
    of the caller's file, and the text is what the protocol's identity (its sha) is made of.
    """

    protocol_text: str
    protocol_name: str  # the file's name, for located error messages only
    overrides: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    patients: int = 1

    @classmethod
    def from_file(
        cls, path: Path, overrides: dict[str, float], seed: int, patients: int
    ) -> VariabilityJob:
        """The job for `path`, refused here (ProtocolInvalid, ParameterError, ValueError) as
        `analyze` would refuse it, before any patient runs anywhere."""
        if patients < 1:
            raise ValueError(f"--patients must be at least 1, got {patients}")
        protocol = load_protocol_file(path)
        protocol.resolve_parameters(overrides)
        return cls(protocol.text, path.name, dict(overrides), seed, patients)

    def key(self, index: int) -> str:
        """Dask key of patient `index`: the same inputs give the same key (pure), so a task
        lost with its worker is recomputed under its own name, and a patient submitted again
        while the cluster still holds its result is not run again."""
        digest = hashlib.sha256(
            json.dumps(
                [__version__, self.protocol_text, sorted(self.overrides.items()), self.seed],
            ).encode()
        ).hexdigest()[:16]
        return f"analyze-patient-{digest}-{index}"


def analyze_patient(
    protocol: str | os.PathLike[str],
    overrides: dict[str, float],
    seed: int,
    patient_index: int,
    protocol_name: str = "protocol.yaml",
) -> dict:
    """Run virtual patient `patient_index` of `seed` through the protocol; a plain dict back.

    `protocol` is a path (os.PathLike) or the protocol's text (str), written to a private
    temporary file named `protocol_name` so error messages name the caller's file.
    """
    patient = sample_patient(seed, patient_index)
    kwargs = {
        "seed": patient.noise_seed,  # the twin's sensor noise: one stream per patient too
        "plant": patient.plant_parameters(),
        "initial": patient.initial_conditions(),
    }
    if isinstance(protocol, os.PathLike):
        result = asyncio.run(analyze(Path(protocol), dict(overrides), **kwargs))
    else:
        with tempfile.TemporaryDirectory(prefix="shuttled-patient-") as scratch:
            path = Path(scratch) / protocol_name
            path.write_bytes(protocol.encode("utf-8"))  # the identity hashes these bytes
            result = asyncio.run(analyze(path, dict(overrides), **kwargs))
    return {
        "patient": patient_index,
        "protocol": result.protocol,
        "parameters": result.parameters,
        "final_state": result.final_state,
        "duration_h": round(result.duration_h, 3),
        "final_cells": float(f"{result.final_cells:.4g}"),
        "media_ml": round(result.media_ml, 1),
        "peak_volume_ml": round(result.peak_volume_ml, 1),
        "violations": list(result.violations),
        "sampled": patient.as_dict(),
    }


def run_job_patient(job: VariabilityJob, index: int) -> dict:
    """`analyze_patient` for one patient of `job` (what the runners submit)."""
    return analyze_patient(job.protocol_text, job.overrides, job.seed, index, job.protocol_name)


def violation_kind(message: str) -> str:
    """A violation's kind: its message with every number replaced by N, so '… after 240.00 h'
    and '… after 239.99 h' count as one kind of problem."""
    return _NUMBER.sub("N", message)


def _spread(values: list[float]) -> dict[str, float]:
    points = np.percentile(np.asarray(values, dtype=np.float64), PERCENTILES)
    return {f"p{p}": float(f"{v:.6g}") for p, v in zip(PERCENTILES, points, strict=True)}


def aggregate(job: VariabilityJob, runs: list[dict]) -> dict:
    """The report of `runs` (one per patient, in patient order): stable keys, no wall clock.

    Keys: protocol, parameters, seed, patients, complete_share, final_states (count per final
    state), duration_h / final_cells / media_ml ({p10, p50, p90} over all patients),
    violations ([{kind, count, share}] most frequent first; a patient counts once per kind),
    sampled ({name: {min, p50, max}} of the sampled patient parameters), runs (per patient).
    """
    if [run["patient"] for run in runs] != list(range(job.patients)):
        raise ValueError("the runs are not one per patient in patient order")
    states: dict[str, int] = {}
    for run in runs:
        states[run["final_state"]] = states.get(run["final_state"], 0) + 1
    kinds: dict[str, int] = {}
    for run in runs:
        for kind in sorted({violation_kind(v) for v in run["violations"]}):
            kinds[kind] = kinds.get(kind, 0) + 1
    sampled = {}
    for name in SAMPLED_KEYS:
        values = [float(run["sampled"][name]) for run in runs]
        sampled[name] = {
            "min": min(values),
            "p50": float(f"{np.percentile(values, 50):.6g}"),
            "max": max(values),
        }
    return {
        "protocol": runs[0]["protocol"],
        "parameters": runs[0]["parameters"],
        "seed": job.seed,
        "patients": job.patients,
        "complete_share": round(states.get("COMPLETE", 0) / job.patients, 4),
        "final_states": dict(sorted(states.items())),
        **{key: _spread([run[key] for run in runs]) for key in SPREAD_KEYS},
        "violations": [
            {"kind": kind, "count": count, "share": round(count / job.patients, 4)}
            for kind, count in sorted(kinds.items(), key=lambda item: (-item[1], item[0]))
        ],
        "sampled": sampled,
        "runs": runs,
    }
