"""`shuttlectl analyze` of `car-t-14d.yaml` (SPEC §11), against the code before it was made faster.

The dry run of a protocol on the digital twin: the daemon's own engine, control loop and kernels
on one virtual unit, with in-process transports and the virtual clock, for 182 simulated hours
(≈ 131 000 control ticks at the default 5 s period). The comparison is the same command run by the
code as it was before issue 19 part 2 (`--baseline-ref`, default BASELINE_REF), checked out in a
temporary git worktree and run with the same interpreter and packages, in the same run of this
script, runs of the two taking turns. Both must print the same JSON, byte for byte: the faster
code predicts exactly what the older one did.

Wall times are of the whole command, from exec to exit (interpreter start and imports included),
with warm caches: each side runs once unmeasured first, which also fills numba's cache for the
worktree. Prints one JSON object as its last line: `analyze_s` (median of the measured runs),
`baseline_s`, `speedup`, `json_identical`, and the simulated hours and time per control tick.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "protocols" / "library" / "car-t-14d.yaml"
BASELINE_REF = "8366a4b2dcdb3018a0e4b6e110ee7c81c1b89838"  # the code before issue 19 part 2
CONTROL_PERIOD_S = 5.0  # the daemon's default; analyze never changes it
GOAL_SPEEDUP = 5.0


def run_analyze(tree: Path, protocol: Path) -> tuple[float, str]:
    """`shuttlectl analyze PROTOCOL --json` as `tree`'s code runs it: wall seconds and stdout."""
    env = dict(os.environ, PYTHONPATH=str(tree))  # ahead of the venv's editable install
    start = time.perf_counter()
    finished = subprocess.run(
        [sys.executable, "-m", "shuttled.cli.ctl", "analyze", str(protocol), "--json"],
        capture_output=True, text=True, cwd=tree, env=env, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if finished.returncode not in (0, 1) or not finished.stdout.startswith("{"):
        sys.stderr.write(finished.stderr[-4000:])
        raise SystemExit(f"analyze in {tree} failed (exit {finished.returncode})")
    return wall, finished.stdout


def add_worktree(ref: str, where: Path) -> None:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), ref],
        check=True, capture_output=True, text=True,
    )  # fmt: skip


def remove_worktree(where: Path) -> None:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
        check=False, capture_output=True, text=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline-ref",
        default=BASELINE_REF,
        help="git commit of the code to compare with (default: before issue 19)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="measured runs of each side after the warm-up (default 3)",
    )
    parser.add_argument("--protocol", type=Path, default=PROTOCOL)
    args = parser.parse_args()
    protocol = args.protocol.resolve()  # the same file for both: the same protocol identity

    with tempfile.TemporaryDirectory(prefix="analyze-baseline-") as scratch:
        baseline = Path(scratch) / "tree"
        add_worktree(args.baseline_ref, baseline)
        try:
            sides = {"baseline": baseline, "current": ROOT}
            outputs: dict[str, set[str]] = {side: set() for side in sides}
            walls: dict[str, list[float]] = {side: [] for side in sides}
            for side, tree in sides.items():  # warm-up: numba's cache, the page cache
                wall, output = run_analyze(tree, protocol)
                outputs[side].add(output)
                print(f"warm-up {side}: {wall:.2f} s", file=sys.stderr)
            for repeat in range(args.repeats):
                order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
                for side in order:  # taking turns, so a busy moment hits both alike
                    wall, output = run_analyze(sides[side], protocol)
                    outputs[side].add(output)
                    walls[side].append(wall)
                    print(f"{side}: {wall:.2f} s", file=sys.stderr)
        finally:
            remove_worktree(baseline)

    for side, seen in outputs.items():
        if len(seen) != 1:
            raise SystemExit(f"{side} printed different results from one run to the next")
    (current_output,) = outputs["current"]
    (baseline_output,) = outputs["baseline"]
    analysis = json.loads(current_output)
    current_s = statistics.median(walls["current"])
    baseline_s = statistics.median(walls["baseline"])
    ticks = analysis["duration_h"] * 3600.0 / CONTROL_PERIOD_S
    result = {
        "analyze_s": round(current_s, 2),
        "baseline_s": round(baseline_s, 2),
        "speedup": round(baseline_s / current_s, 2),
        "json_identical": current_output == baseline_output,
        "simulated_h": analysis["duration_h"],
        "us_per_tick": round(current_s / ticks * 1e6, 1),
        "baseline_us_per_tick": round(baseline_s / ticks * 1e6, 1),
        "final_state": analysis["final_state"],
        "baseline_ref": args.baseline_ref,
        "repeats": args.repeats,
        "caches": "warm",
        "goal_met": baseline_s / current_s >= GOAL_SPEEDUP and current_output == baseline_output,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
