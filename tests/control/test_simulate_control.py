"""Control quality through the full stack: `shuttled simulate --json` in a subprocess.

The virtual instrument starts every unit at 0.5e6 cells/mL in 100 mL; this protocol's limit is
4e5/mL, so density control must first bring an over-dense inoculum under the limit (that start is
not counted in `max_density_ratio`, see shuttled/engine/statistics.py) and then keep it there,
through OPC UA, the serial pumps and probes, the estimator and the engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHUTTLED = Path(sys.executable).parent / "shuttled"

PROTOCOL = """\
shuttle_protocol: 1
name: density-e2e
version: 1.0.0
description: Warm-up, then density control below the inoculum's density
phases:
  - name: warm-up
    temperature: 37.0
    until: temperature >= 36.8
    timeout: 1h
    on_timeout: hold
  - name: expansion
    temperature: 37.0
    density_control: {pump: media, max_density: 4.0e5, max_volume_ml: 400}
    duration: 3h
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    protocol = tmp_path_factory.mktemp("protocol") / "density-e2e.yaml"
    protocol.write_text(PROTOCOL)
    command = [str(SHUTTLED), "simulate", "--units", "2", "--speed", "max", "--seed", "3"]
    result = subprocess.run(
        [*command, "--protocol", str(protocol), "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_temperature_stays_in_band_after_warm_up(runs: list[dict]) -> None:
    assert len(runs) == 2
    for run in runs:
        assert run["state"] == "COMPLETE", run
        assert run["temp_in_band_pct"] == 100.0
        assert run["temp_max_abs_dev"] <= 0.15
        assert run["temp_mean"] == pytest.approx(37.0, abs=0.02)
        assert run["alarms"] == []


def test_density_is_brought_under_the_limit_and_kept_there(runs: list[dict]) -> None:
    for run in runs:
        # 100 mL at ≈ 5e5/mL to 0.9 × 4e5/mL needs ≈ 39 mL; nothing near the 400 mL cap.
        assert 35.0 <= run["media_ml"] <= 60.0
        assert 0.8 <= run["max_density_ratio"] <= 1.1
