"""The newcomer's path, as a user runs it: console scripts in a subprocess, JSON out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.golden_outputs import recorded, without_wall_clock

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "protocols" / "library" / "demo.yaml"
BIN = Path(sys.executable).parent


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _simulate_json(seed: int) -> list[dict]:
    result = _run(
        str(BIN / "shuttled"),
        "simulate",
        "--units",
        "2",
        "--speed",
        "max",
        "--seed",
        str(seed),
        "--protocol",
        str(DEMO),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def demo_runs() -> list[dict]:
    return _simulate_json(seed=1)


def test_demo_completes_on_every_unit_with_the_protocols_volumes(demo_runs: list[dict]) -> None:
    assert [r["unit"] for r in demo_runs] == ["U01", "U02"]
    for run in demo_runs:
        assert run["state"] == "COMPLETE", run
        assert run["protocol"].startswith("demo@1.0.0#")
        assert run["media_ml"] == pytest.approx(20.0, abs=0.01)
        assert run["temp_in_band_pct"] >= 95.0
        assert run["temp_max_abs_dev"] < 0.5
        assert 1.0 < run["duration_h"] < 4.0
        assert run["final_cells"] > 4e7
        for key in ("run_id", "temp_mean", "max_density_ratio", "alarms"):
            assert key in run


def test_same_seed_gives_identical_json_apart_from_wall_clock(demo_runs: list[dict]) -> None:
    again = _simulate_json(seed=1)
    assert without_wall_clock(demo_runs) == without_wall_clock(again)


def test_same_seed_gives_the_json_recorded_before_the_house_plan_refactor(
    demo_runs: list[dict],
) -> None:
    assert without_wall_clock(demo_runs) == recorded("demo_2_units_seed1.json")


def test_validate_accepts_the_demo_and_locates_a_misspelt_key(tmp_path: Path) -> None:
    ok = _run(str(BIN / "shuttlectl"), "validate", str(DEMO))
    assert ok.returncode == 0, ok.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(DEMO.read_text().replace("    duration: 1h", "    duraton: 1h"))
    line = next(i for i, text in enumerate(broken.read_text().splitlines(), 1) if "duraton" in text)
    bad = _run(str(BIN / "shuttlectl"), "validate", str(broken))
    assert bad.returncode == 1
    assert f"{broken}:{line}:5: " in bad.stderr
    assert "duraton" in bad.stderr and "Traceback" not in bad.stderr


def test_an_invalid_protocol_is_refused_before_anything_runs(tmp_path: Path) -> None:
    broken = tmp_path / "hot.yaml"
    broken.write_text(DEMO.read_text().replace("temperature: 37.0", "temperature: 55.0", 1))
    result = _run(str(BIN / "shuttled"), "simulate", "--units", "1", "--protocol", str(broken))
    assert result.returncode == 1
    assert f"{broken}:" in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_unit_and_a_bad_parameter_are_refused_with_a_reason() -> None:
    result = _run(
        str(BIN / "shuttled"), "simulate", "--units", "1", "--unit", "U09", "--protocol", str(DEMO)
    )
    assert result.returncode == 1 and "U09" in result.stderr
    result = _run(
        str(BIN / "shuttled"),
        "simulate",
        "--units",
        "1",
        "--protocol",
        str(DEMO),
        "--param",
        "max_density=1e12",
    )
    assert result.returncode == 1 and "max_density" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("script", ["shuttled", "shuttlectl", "shuttle-sim"])
def test_every_command_has_help_and_version(script: str) -> None:
    assert _run(str(BIN / script), "--help").returncode == 0
    version = _run(str(BIN / script), "--version")
    assert version.returncode == 0 and "0.1.0" in version.stdout


def test_density_control_dilutes_through_the_full_stack(tmp_path: Path) -> None:
    protocol = tmp_path / "dilute.yaml"
    protocol.write_text(
        "shuttle_protocol: 1\nname: dilute\nversion: 1.0.0\nphases:\n"
        "  - name: expansion\n    temperature: 37.0\n"
        "    density_control: {pump: media, max_density: 3.0e5, max_volume_ml: 250}\n"
        "    duration: 1h\n"
    )
    result = _run(
        str(BIN / "shuttled"),
        "simulate",
        "--units",
        "1",
        "--protocol",
        str(protocol),
        "--json",
        "--seed",
        "2",
    )
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout.splitlines()[-1])
    # 100 mL at 5e5/mL diluted to 90 % of 3e5/mL needs ≈ 85 mL; the cells stay in the vessel.
    assert 70.0 < run["media_ml"] < 100.0
    assert run["final_cells"] == pytest.approx(5.0e7, rel=0.1)


def test_without_a_protocol_simulate_serves_until_interrupted() -> None:
    import signal

    process = subprocess.Popen(
        [str(BIN / "shuttled"), "simulate", "--units", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()  # blocks until the instrument is up
        assert "running" in first_line
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()
