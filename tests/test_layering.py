"""The house plan holds: imports only go down the layers (docs/architecture.md).

The contracts live in pyproject.toml ([tool.importlinter]) and are checked by import-linter, the
tool made for it. These tests run it as CI does, prove that it would notice a violation (a
simulator importing the daemon, the very dependency the house-plan refactor removed), and check
two rules it cannot express: no private name of `drivers/` is used outside it, and no module
grows past 400 lines.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("shuttled", "drivers", "protocols", "simulators", "firmware_stubs")
MAX_MODULE_LINES = 400


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(cwd / "pyproject.toml"), "--no-cache"],
        capture_output=True, text=True, timeout=120, cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)},
    )  # fmt: skip


def test_every_layering_contract_is_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_a_simulator_importing_the_daemon_breaks_a_contract(tmp_path: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    plant = tmp_path / "simulators" / "plant.py"
    plant.write_text("from shuttled.config import DaemonConfig  # noqa\n" + plant.read_text())
    result = _lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout[-4000:]
    assert "The lower layers never import the daemon BROKEN" in result.stdout
    assert "simulators.plant -> shuttled.config" in result.stdout


def _private_driver_names(path: Path) -> list[str]:
    """`from drivers.x import _y` and `drivers.x._y`: what only drivers/ may touch."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("drivers"):
            found += [f"{path}:{node.lineno}: {alias.name}" for alias in node.names
                      if alias.name.startswith("_")]  # fmt: skip
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and ast.unparse(node.value).startswith("drivers.")):  # fmt: skip
            found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_private_name_of_the_drivers_is_used_outside_them() -> None:
    outside = [p for package in PACKAGES if package != "drivers"
               for p in (ROOT / package).rglob("*.py")]  # fmt: skip
    assert outside
    assert [hit for path in outside for hit in _private_driver_names(path)] == []


def test_the_private_name_check_finds_one(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("from drivers.pump_serial import PumpBus, _PortError\n")
    assert _private_driver_names(module) == [f"{module}:1: _PortError"]


def test_no_module_is_longer_than_the_house_style_allows() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for package in (*PACKAGES, "tests", "benchmarks")
        for path in (ROOT / package).rglob("*.py")
        if ".node" not in path.parts
        and (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}
