"""`shuttlectl analyze`: the digital twin predicts what `shuttled simulate` then does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.golden_outputs import recorded

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO = ROOT / "protocols" / "library" / "demo.yaml"
CAR_T = ROOT / "protocols" / "library" / "car-t-14d.yaml"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT)


def _analyze(path: Path, *params: str) -> tuple[int, dict]:
    args = [str(BIN / "shuttlectl"), "analyze", str(path), "--json"]
    for param in params:
        args += ["--param", param]
    result = _run(*args)
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout)


def _simulate(path: Path, *params: str) -> dict:
    args = [
        str(BIN / "shuttled"),
        "simulate",
        "--units",
        "1",
        "--seed",
        "3",
        "--json",
        "--protocol",
        str(path),
    ]
    for param in params:
        args += ["--param", param]
    result = _run(*args)
    return json.loads(result.stdout.splitlines()[-1])


def test_the_demo_forecast_matches_the_simulation() -> None:
    code, forecast = _analyze(DEMO)
    assert code == 0 and forecast["violations"] == []
    assert forecast == recorded("analyze_demo_seed0.json")  # as before the house-plan refactor
    assert [p["name"] for p in forecast["phases"]] == ["warm-up", "feed", "expansion", "harvest"]
    assert forecast["media_ml"] == pytest.approx(20.0, abs=0.01)
    assert forecast["peak_volume_ml"] == pytest.approx(125.0, abs=1.0)
    simulated = _simulate(DEMO)
    assert forecast["duration_h"] == pytest.approx(simulated["duration_h"], rel=0.05)


def test_a_shortened_car_t_process_is_predicted_within_5_percent() -> None:
    # car-t-14d with a small dose: the same phases and density control, two and a half days.
    code, forecast = _analyze(CAR_T, "target_cells=1.5e8")
    assert code == 0, forecast["violations"]
    assert [p["name"] for p in forecast["phases"]] == [
        "activation",
        "transduction",
        "expansion",
        "harvest",
    ]
    simulated = _simulate(CAR_T, "target_cells=1.5e8")
    assert simulated["state"] == "COMPLETE"
    assert forecast["duration_h"] == pytest.approx(simulated["duration_h"], rel=0.05)
    assert forecast["final_cells"] == pytest.approx(simulated["final_cells"], rel=0.1)


def test_a_starving_process_is_reported_as_a_violation() -> None:
    code, forecast = _analyze(CAR_T, "max_density=3e6")
    assert code == 1
    assert forecast["final_state"] == "HELD"
    assert any("timed out" in v for v in forecast["violations"])


def test_bad_input_is_refused_with_a_reason(tmp_path: Path) -> None:
    code = _run(str(BIN / "shuttlectl"), "analyze", str(DEMO), "--param", "max_density=1")
    assert code.returncode == 1 and "max_density" in code.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("shuttle_protocol: 1\nname: x\n")
    result = _run(str(BIN / "shuttlectl"), "analyze", str(broken))
    assert result.returncode == 1 and f"{broken}:" in result.stderr
    assert "Traceback" not in result.stderr
