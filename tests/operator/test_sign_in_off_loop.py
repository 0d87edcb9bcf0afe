"""A sign-in's scrypt check runs off the event loop (operator_server/sign_in_off_loop.py).

At the production cost a password check takes about half a second; on the event loop it would
hold up the control tick that long for every sign-in, and an attacker's wrong passwords would
do it at will. Here the accounts are hashed at the production cost (2^17) and the loop's
responsiveness is measured while right, wrong and unknown sign-ins are checked.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from asyncua.ua.uaerrors import UaError
from operator_rig import connect, make_daemon

from shuttled.records.users import SCRYPT_N, TEST_COST_ENV

LOOP_STEP_S = 0.01


async def _longest_stall(during: asyncio.Task[object]) -> float:
    """The longest the event loop went without running this coroutine while `during` ran."""
    longest, last = 0.0, time.perf_counter()
    while not during.done():
        await asyncio.sleep(LOOP_STEP_S)  # a probe of the loop's latency, not a wait
        now = time.perf_counter()
        longest, last = max(longest, now - last - LOOP_STEP_S), now
    return longest


async def test_sign_ins_at_the_production_cost_leave_the_event_loop_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TEST_COST_ENV, str(SCRYPT_N))
    daemon = await make_daemon(tmp_path)

    async def sign_ins() -> None:
        client = await connect(daemon.endpoint, "otto")  # right
        await client.disconnect()
        for user, password in (("otto", "not otto's"), ("nobody", "whatever")):
            with pytest.raises(UaError):
                await connect(daemon.endpoint, user, password=password)

    try:
        started = time.perf_counter()
        attempts = asyncio.create_task(sign_ins())
        stall = await _longest_stall(attempts)
        await attempts
        took = time.perf_counter() - started
    finally:
        await daemon.server.stop()
    assert took > 3 * 0.2  # three checks at the production cost really ran
    assert stall < 0.15, f"the event loop stalled {stall:.3f} s during a sign-in"
