"""Suite-wide settings.

`SHUTTLED_TEST_SCRYPT_N` (shuttled/records/users.py) is the one test-only knob of the daemon:
new password hashes cost 2^10 instead of the production 2^17, so the hundreds of accounts and
sign-ins the suite makes take milliseconds, not half a second each. It is set in the environment,
so the console scripts the tests start as subprocesses inherit it. Tests of the password cost
itself remove it (tests/service/test_password_cost.py proves the production cost is 2^17).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("SHUTTLED_TEST_SCRYPT_N", str(2**10))

# The longest test files, started first: with two workers (scripts/test) a four-minute soak that
# began last would run alone at the end. Measured with `--durations`; order within a file kept.
SLOWEST_FIRST = (
    "tests/soak/test_soak.py",
    "tests/analyze/test_analyze.py",
    "tests/service/test_crash_torture.py",
    "tests/resilience/test_simulate_every_fault.py",
    "tests/service/test_crash_resume.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the slowest files to the front; the sort is stable, so every other test keeps its
    place (and every worker collects the same order, as pytest-xdist requires)."""
    rank = {path: index for index, path in enumerate(SLOWEST_FIRST)}
    root = config.rootpath

    def place(item: pytest.Item) -> int:
        return rank.get(item.path.relative_to(root).as_posix(), len(rank))

    items.sort(key=place)
