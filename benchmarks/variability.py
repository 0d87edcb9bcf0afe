"""Virtual patients per second of `analyze --patients`, on 1 and on 2 local workers (SPEC §11).

Runs the local runner of `shuttlectl analyze FILE --patients N` (shuttled/simulation/
variability_runner.py: a process pool, one dry run of the digital twin per patient) on the same
N patients twice, once with one worker process and once with two, and reports patients per
second of wall time for each and their ratio. The wall time includes starting the pool (its fork
server imports the daemon once), as a user's command would pay it; the comparison is the ideal
scaling, 2.0 on two idle cores. Both runs must give the same report (checked), so the speed-up
never comes from doing less.

Default: `car-t-14d.yaml`, 32 patients (SPEC §11; each is a dry run of about a week of
process, about ten seconds of CPU). Prints notes on stderr and one JSON object as the last line:
`{"patients_per_s_1", "patients_per_s_2", "scaling_2", "patients", "protocol", "wall_s_1",
"wall_s_2", "complete_share"}`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from shuttled.service.log_setup import configure_logging
from shuttled.simulation.variability import VariabilityJob, aggregate
from shuttled.simulation.variability_runner import run_local

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "protocols" / "library" / "car-t-14d.yaml"


def timed(job: VariabilityJob, workers: int) -> tuple[float, dict]:
    started = time.perf_counter()
    runs = run_local(job, workers=workers)
    return time.perf_counter() - started, aggregate(job, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", type=Path, default=PROTOCOL)
    parser.add_argument("--patients", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    configure_logging("error")
    job = VariabilityJob.from_file(args.protocol, {}, args.seed, args.patients)
    print(
        f"{args.patients} patients of {args.protocol.name} (seed {args.seed}) on 1, then 2 "
        f"worker processes; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
        file=sys.stderr,
    )
    wall_1, report_1 = timed(job, 1)
    print(f"1 worker: {wall_1:.1f} s", file=sys.stderr)
    wall_2, report_2 = timed(job, 2)
    print(f"2 workers: {wall_2:.1f} s", file=sys.stderr)
    if report_1 != report_2:
        sys.exit("the two runs disagree: the benchmark measures nothing comparable")
    result = {
        "patients_per_s_1": round(args.patients / wall_1, 4),
        "patients_per_s_2": round(args.patients / wall_2, 4),
        "scaling_2": round(wall_1 / wall_2, 3),
        "patients": args.patients,
        "protocol": report_1["protocol"],
        "wall_s_1": round(wall_1, 2),
        "wall_s_2": round(wall_2, 2),
        "complete_share": report_1["complete_share"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
