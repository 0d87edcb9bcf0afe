"""Helpers of the report tests; the fixture is in conftest.py."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO = ROOT / "protocols" / "library" / "demo.yaml"


@dataclass
class DemoReport:
    directory: Path
    journal: Path
    run_id: str
    html: str
    stdout: str


def run_demo(base: Path) -> DemoReport:
    """`shuttled simulate` of the demo with --report, as a user runs it."""
    result = subprocess.run(
        [str(BIN / "shuttled"), "simulate", "--units", "1", "--protocol", str(DEMO),
         "--report", str(base / "reports"), "--data-dir", str(base / "data"), "--json"],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    reports = sorted((base / "reports").glob("*.html"))
    assert [p.name for p in reports] == ["CS-SIM-U01-0001.html"]
    return DemoReport(base / "reports", base / "data" / "journal.sqlite3", "CS-SIM-U01-0001",
                      reports[0].read_text(encoding="utf-8"), result.stdout)
