"""Password guessing is throttled per host: after repeated failures the host is refused without
a password check (which would cost the event loop 50 ms of scrypt each time)."""

from __future__ import annotations

from pathlib import Path

import pytest
from asyncua import ua
from asyncua.ua.uaerrors import UaStatusCodeError
from operator_rig import ACCOUNTS, connect, make_daemon

from shuttled.operator_server import sign_in_throttle
from shuttled.operator_server.sign_in_throttle import SignInThrottle


class FakeWallClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_host_is_locked_after_repeated_failures_and_released_later() -> None:
    clock = FakeWallClock()
    throttle = SignInThrottle(clock)
    for _ in range(sign_in_throttle.MAX_FAILURES - 1):
        assert not throttle.failed("10.0.0.7")
    assert not throttle.locked("10.0.0.7")
    assert throttle.failed("10.0.0.7")
    assert throttle.locked("10.0.0.7") and not throttle.locked("10.0.0.8")
    clock.t += sign_in_throttle.LOCKOUT_S
    assert not throttle.locked("10.0.0.7")
    assert not throttle.failed("10.0.0.7")  # a fresh count after the lock


def test_old_failures_and_a_success_start_the_count_again() -> None:
    clock = FakeWallClock()
    throttle = SignInThrottle(clock)
    for _ in range(sign_in_throttle.MAX_FAILURES - 1):
        throttle.failed("h")
    clock.t += sign_in_throttle.WINDOW_S
    assert not throttle.failed("h")  # the earlier ones are outside the window
    for _ in range(sign_in_throttle.MAX_FAILURES - 2):
        throttle.failed("h")
    throttle.succeeded("h")
    assert not throttle.failed("h")


async def test_guessing_over_opc_ua_locks_the_host_even_for_the_right_password(
    tmp_path: Path,
) -> None:
    daemon = await make_daemon(tmp_path)
    user, (_, password) = next(iter(ACCOUNTS.items()))
    try:
        for _ in range(sign_in_throttle.MAX_FAILURES):
            with pytest.raises(UaStatusCodeError):
                await connect(daemon.endpoint, user, "a guess")
        with pytest.raises(UaStatusCodeError) as refused:
            await connect(daemon.endpoint, user, password)
        assert refused.value.code in (
            ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadIdentityTokenRejected
        )
    finally:
        await daemon.server.stop()
