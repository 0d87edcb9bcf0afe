"""Done-when of issue 4: every SPEC §1 fault kind in one simulation, every run COMPLETE.

The fault file (`every_fault.yaml`) keeps loss faults shorter than device_loss_hold_s and gives
the latching pump alarms a cause that goes away, so the daemon must ride through all of it by
itself: alarms raised and cleared, the pump bus cut in the middle of every media DISPENSE, and
exactly the protocol's 20 mL of medium delivered per unit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.golden_outputs import recorded, without_wall_clock

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "protocols" / "library" / "demo.yaml"
FAULTS = Path(__file__).with_name("every_fault.yaml")
BIN = Path(sys.executable).parent


def test_four_units_complete_through_every_fault_kind_with_exact_volumes() -> None:
    result = subprocess.run(
        [str(BIN / "shuttled"), "simulate", "--units", "4", "--speed", "max", "--seed", "1",
         "--protocol", str(DEMO), "--faults", str(FAULTS), "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [run["unit"] for run in runs] == ["U01", "U02", "U03", "U04"]
    for run in runs:
        assert run["state"] == "COMPLETE", run
        assert run["hold_reason"] == ""
        assert run["media_ml"] == 20.0  # the demo's feed; the dilution never had to pump
        alarms = set(run["alarms"])
        # Each loss was seen and alarmed (and, the run being COMPLETE, cleared by itself).
        assert {"BIOREACTOR_LOST", "PROBE_LOST", "PUMP_MEDIA_LOST"} <= alarms
        # The cut stopped each media pump mid-transfer on its watchdog; the remainder followed.
        assert "PUMP_MEDIA_ALARM" in alarms
    assert "TEMPERATURE_SENSOR_BAD" in runs[1]["alarms"]  # U02's NaN temperature
    # The same seed and fault file give what they gave before the house-plan refactor.
    assert without_wall_clock(runs) == recorded("every_fault_4_units_seed1.json")
    assert "PUMP_VECTOR_ALARM" in runs[2]["alarms"]  # U03's cover, cleared before its transfer
