"""One demo run with --report for the whole package: the simulation is the slow part."""

from __future__ import annotations

import pytest
from report_rig import DemoReport, run_demo


@pytest.fixture(scope="session")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> DemoReport:
    return run_demo(tmp_path_factory.mktemp("demo-report"))
