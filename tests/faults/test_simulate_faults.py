"""`shuttled simulate --faults` and `shuttle-sim --faults`, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "protocols" / "library" / "demo.yaml"
BIN = Path(sys.executable).parent

# Faults the current daemon rides through (device-loss holds are another issue's work): the
# room warms, a short burst of line noise on the probes, 10 mL of 4 °C medium into U01 after
# warm-up, a bubble on U01's density probe.
MILD = """\
- {at: 30m, fault: ambient_step, temperature: 25.0}
- {at: 40m, fault: garbage, bus: probes, rate: 0.05, duration: 1m}
- {at: 50m, fault: cold_bolus, unit: U01, volume_ml: 10, temperature: 4.0}
- {at: 70m, fault: sensor_spike, unit: U01, sensor: probe, duration: 30s}
"""


def _simulate(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "shuttled"), "simulate", "--units", "2", "--speed", "max", "--seed", "1",
         "--protocol", str(DEMO), "--json", *extra],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )  # fmt: skip


def _runs(result: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {run["unit"]: run for run in lines}


@pytest.fixture(scope="module")
def with_and_without(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    faults = tmp_path_factory.mktemp("faults") / "mild.yaml"
    faults.write_text(MILD)
    return _runs(_simulate("--faults", str(faults))), _runs(_simulate())


def test_runs_complete_through_mild_faults_and_the_faults_show(
    with_and_without: tuple[dict, dict],
) -> None:
    faulted, clean = with_and_without
    assert all(run["state"] == "COMPLETE" for run in faulted.values())
    # The cold bolus is the largest temperature deviation of U01's run, about 2 K at once.
    assert faulted["U01"]["temp_max_abs_dev"] > 1.0 > 5 * clean["U01"]["temp_max_abs_dev"]
    # The warmer room changes how U02's controller works even without a bolus.
    assert faulted["U02"]["temp_max_abs_dev"] != clean["U02"]["temp_max_abs_dev"]
    assert faulted["U01"]["final_cells"] != clean["U01"]["final_cells"]


def test_a_bad_fault_file_is_refused_with_located_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {at: 1h, fault: cold_bolus, unit: U09, volume_ml: 10, temperature: 4}\n")
    result = _simulate("--faults", str(bad))
    assert result.returncode == 1
    assert f"{bad}:1:" in result.stderr and "unknown unit 'U09'" in result.stderr
    assert "Traceback" not in result.stderr
    sim = subprocess.run(
        [str(BIN / "shuttle-sim"), "--units", "2", "--faults", str(bad)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert sim.returncode == 1 and "unknown unit 'U09'" in sim.stderr
    assert "Traceback" not in sim.stderr
