"""Fixtures of the operator interface tests (the helpers are in operator_rig.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from operator_rig import Daemon, make_daemon


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = await make_daemon(tmp_path)
    yield d
    await d.server.stop()
