"""The injected clock: virtual time jumps and keeps listeners in step; real time scales."""

from __future__ import annotations

import pytest

from drivers.clock import RealClock, VirtualClock, make_clock


async def test_virtual_clock_jumps_to_the_requested_time_and_notifies_listeners() -> None:
    clock = VirtualClock()
    seen: list[float] = []

    async def listener(now: float) -> None:
        seen.append(now)

    clock.add_advance_listener(listener)
    await clock.sleep_until(3600.0)
    await clock.sleep_until(10.0)  # the past: time never goes backwards
    assert clock.now() == 3600.0
    assert seen == [3600.0, 3600.0]


async def test_scaled_real_clock_runs_faster_than_the_wall() -> None:
    clock = RealClock(speed=1000.0)
    start = clock.now()
    await clock.sleep_until(start + 20.0)  # 20 ms of wall time
    assert clock.now() >= start + 20.0


def test_speed_must_be_positive_and_max_means_virtual() -> None:
    with pytest.raises(ValueError, match="positive"):
        RealClock(speed=0)
    assert isinstance(make_clock(None), VirtualClock)
    assert isinstance(make_clock(60.0), RealClock)
