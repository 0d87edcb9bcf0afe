"""The one injected clock that every process-timed part of shuttled reads.

It lives with the drivers, below both the daemon and the simulators, because both keep time by
it and neither may import the other (docs/architecture.md).

Process time (what a protocol's `24h` means) is decoupled from wall time so that the same engine,
drivers and control loop can run a 14-day protocol in real time on an instrument or in a minute on
the virtual instrument. Nothing else in the daemon calls `time.time()` or `asyncio.sleep()` to
decide *when* something happens in the process; it asks the clock.

Three modes share one interface:

* ``RealClock(speed=1)``: process time is wall time (the service).
* ``RealClock(speed=60)``: scaled, 60 s of process time per wall second (demos, `shuttle-sim`).
* ``VirtualClock``: as fast as possible. Sleeping advances process time at once, after the
  listeners (the plant physics) have caught up, so results depend only on the seed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

AdvanceListener = Callable[[float], Awaitable[None]]


class Clock(Protocol):
    """What the daemon needs of time: the present and a way to wait for a future moment."""

    def now(self) -> float:
        """Seconds of process time since the clock's epoch."""
        ...

    async def sleep_until(self, t: float) -> None:
        """Return once process time has reached `t`."""
        ...

    def add_advance_listener(self, listener: AdvanceListener) -> None:
        """Call `listener(now)` each time the clock wakes a sleeper (keeps the plant in step)."""
        ...

    def to_epoch(self, t: float) -> float:
        """UTC seconds for process time `t`, for timestamps people and historians read."""
        ...


class _ListenerMixin:
    def __init__(self, start: float, epoch: float | None) -> None:
        self._listeners: list[AdvanceListener] = []
        # Process time maps one to one onto calendar time from the moment the clock was made: a
        # simulated run's telemetry reads as if it had run in real time starting now.
        self._epoch_offset = (time.time() if epoch is None else epoch) - start

    def to_epoch(self, t: float) -> float:
        return self._epoch_offset + t

    def add_advance_listener(self, listener: AdvanceListener) -> None:
        self._listeners.append(listener)

    async def _notify(self, now: float) -> None:
        for listener in self._listeners:
            await listener(now)


class RealClock(_ListenerMixin):
    """Wall time, optionally scaled by `speed` (process seconds per wall second).

    `epoch`: the UTC time that process time `start` stands for (default: now). The service passes
    `start=epoch=time.time()`, so its process time is UTC and survives a restart.
    """

    def __init__(self, speed: float = 1.0, start: float = 0.0, epoch: float | None = None) -> None:
        super().__init__(start, epoch)
        if not speed > 0:
            raise ValueError(f"clock speed must be positive, got {speed!r}")
        self.speed = speed
        self._start_process = start
        self._start_wall = time.monotonic()

    def now(self) -> float:
        return self._start_process + (time.monotonic() - self._start_wall) * self.speed

    async def sleep_until(self, t: float) -> None:
        delay = (t - self.now()) / self.speed
        if delay > 0:
            await asyncio.sleep(delay)
        await self._notify(self.now())


class VirtualClock(_ListenerMixin):
    """Process time that jumps to each requested moment: the as-fast-as-possible mode.

    Only one task may drive a virtual clock (the control loop); concurrent sleepers would make the
    order of wake-ups depend on the event loop rather than on the process, which would break
    determinism. Other tasks read `now()`.
    """

    def __init__(self, start: float = 0.0, epoch: float | None = None) -> None:
        super().__init__(start, epoch)
        self._now = start

    def now(self) -> float:
        return self._now

    async def sleep_until(self, t: float) -> None:
        if t > self._now:
            self._now = t
        await self._notify(self._now)
        # Let I/O that became ready (replies on sockets and pseudo-terminals) run before the next
        # step, as it would during a real control period.
        await asyncio.sleep(0)


def make_clock(speed: float | None) -> RealClock | VirtualClock:
    """`None` means as fast as possible (`--speed max`)."""
    return VirtualClock() if speed is None else RealClock(speed=speed)
