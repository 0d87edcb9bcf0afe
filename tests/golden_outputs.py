"""Outputs recorded before a refactor, so a later change that alters behaviour shows up.

The files in `tests/golden/` were written by the commands named in each test, on the code before
the house-plan refactor (issue 13). A refactor must leave them identical (`wall_s`, the only
wall-clock field, aside). A change that is meant to alter what the daemon does regenerates the
file with the same command and says so in its commit.
"""

from __future__ import annotations

import json
from pathlib import Path

GOLDEN = Path(__file__).with_name("golden")


def without_wall_clock(runs: list[dict]) -> list[dict]:
    return [{key: value for key, value in run.items() if key != "wall_s"} for run in runs]


def recorded(name: str) -> object:
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))
