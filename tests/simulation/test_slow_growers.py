"""A dose that slow growers cannot reach in time shows in the share of COMPLETE runs.

slow_growers.yaml gives sixty hours to reach 9e7 viable cells. Seed 2's first four patients
bring about the same viable cells (3.5-5.4e7) but grow at different speeds: patients 1 and 3
double in 25 and 31 h after a lag of 16-17 h, patients 0 and 2 in 27 h after a 30 h lag and in
39 h. The twin must tell them apart by growth alone: patients 1 and 2 start with the same cells
(4.5e7, within 1 %), and only the fast one completes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from shuttled.simulation.variability import VariabilityJob, aggregate
from shuttled.simulation.variability_runner import run_local

SLOW_GROWERS = Path(__file__).with_name("slow_growers.yaml")


def _doublings_by_the_deadline(sampled: dict, hours: float = 60.0) -> float:
    """How many times a patient's viable cells can double in `hours`, lag and death included."""
    net_per_h = math.log(2) / sampled["doubling_time_h"] - sampled["death_per_h"]
    return max(0.0, hours - sampled["lag_h"]) * net_per_h / math.log(2)


def test_slow_growers_show_in_the_share_of_complete_runs() -> None:
    job = VariabilityJob.from_file(SLOW_GROWERS, {}, 2, 4)
    report = json.loads(json.dumps(aggregate(job, run_local(job, workers=2))))
    assert report["complete_share"] == 0.5
    runs = report["runs"]
    assert [run["final_state"] for run in runs] == ["HELD", "COMPLETE", "HELD", "COMPLETE"]
    fast, slow = runs[1]["sampled"], runs[2]["sampled"]
    assert math.isclose(fast["viable_cells"], slow["viable_cells"], rel_tol=0.01)
    assert slow["doubling_time_h"] > 1.5 * fast["doubling_time_h"]
    completed = [_doublings_by_the_deadline(r["sampled"]) for r in runs if r["violations"] == []]
    held = [_doublings_by_the_deadline(r["sampled"]) for r in runs if r["violations"]]
    assert max(held) < min(completed)  # the HELD runs are the slower growers
    assert report["violations"][0]["kind"] == "run ends HELD: phase expansion timed out after N h"
