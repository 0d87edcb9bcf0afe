"""Soak, CI-sized: a simulated day on 16 units through the full stack with every fault kind.

`shuttled simulate`'s own code path (OPC UA to the simulated controller, pseudo-terminal serial
buses, the journal on disk, the operator server) runs `soak-1d.yaml` on 16 units while
`every_fault_1d.yaml` breaks the instrument in each way SPEC §1 lists. At the end:

- no run is lost: all 16 COMPLETE, each with the protocol's vector volume exactly, and the
  journal says so for every run it started;
- memory is flat: the resident size once everything is warm (hour 4) grows by less than
  `MAX_GROWTH_MIB` by the end (measured: 8 MiB, a one-time 6 MiB step mid-day then flat); a
  leak of 100 bytes per unit per control tick would add 20 MiB over the 19 hours;
- the journal is sound: SQLite's integrity check, and the audit chain verified by
  `shuttlectl audit verify --journal` as an auditor would run it.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from shuttled.simulation.simulate import SimulateOptions, simulate

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
UNITS = 16
WARM_AT_H = 4  # imports, kernels, caches, the first transfer: all done by then
MAX_GROWTH_MIB = 16.0
PAGE = os.sysconf("SC_PAGE_SIZE")


def _resident_mib() -> float:
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * PAGE / 2**20


@pytest.mark.timeout(1200)
async def test_a_day_on_sixteen_units_through_every_fault_loses_nothing(tmp_path: Path) -> None:
    resident: dict[int, float] = {}

    def sample_every_hour(now: float) -> None:
        hour = int(now // 3600)
        if hour not in resident:
            resident[hour] = _resident_mib()

    options = SimulateOptions(
        units=UNITS,
        protocols=[HERE / "soak-1d.yaml"],
        faults=HERE / "every_fault_1d.yaml",
        seed=11,
        data_dir=tmp_path,
        tick_observers=[sample_every_hour],
    )
    summaries = await simulate(options, Console(file=io.StringIO()))

    assert [s.unit for s in summaries] == [f"U{i:02d}" for i in range(1, UNITS + 1)]
    for summary in summaries:
        assert summary.state == "COMPLETE", summary
        assert summary.hold_reason == ""
    alarms = set().union(*(set(s.alarms) for s in summaries))
    assert {"BIOREACTOR_LOST", "PROBE_LOST", "PUMP_VECTOR_LOST", "PUMP_HARVEST_LOST"} <= alarms

    journal = tmp_path / "journal.sqlite3"
    with sqlite3.connect(journal) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        final = dict(db.execute("SELECT unit, final_state FROM runs").fetchall())
        checkpoints = db.execute("SELECT data FROM checkpoints").fetchall()
    assert final == {s.unit: "COMPLETE" for s in summaries}
    for (data,) in checkpoints:
        saved = json.loads(data)
        assert saved["state"] == "COMPLETE"
        assert saved["delivered_ul"]["vector"] == pytest.approx(10000.0, abs=1.0)

    verified = subprocess.run(
        [str(BIN / "shuttlectl"), "audit", "verify", "--journal", str(journal)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr

    last_hour = max(resident)
    assert last_hour >= 22
    growth = resident[last_hour] - resident[WARM_AT_H]
    print(f"resident MiB by hour: {json.dumps({h: round(m, 1) for h, m in resident.items()})}")
    assert growth < MAX_GROWTH_MIB, resident
