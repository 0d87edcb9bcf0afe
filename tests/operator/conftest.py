"""Fixtures of the operator interface tests (the helpers are in operator_rig.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import operator_rig
import pytest
from operator_rig import Daemon, make_daemon


@pytest.fixture(autouse=True, scope="session")
def standard_nodes_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every operator server of the session starts from one cache, as `serve` does: the tests
    of the address space and its security then check the lazily decoded one."""
    operator_rig.STANDARD_NODES_CACHE = tmp_path_factory.mktemp("cache") / "nodes.cache"


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = await make_daemon(tmp_path)
    yield d
    await d.server.stop()
