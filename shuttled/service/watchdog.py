"""systemd's watchdog, fed only while the control loop is alive; and how punctual its ticks are.

A watchdog fed by a timer of its own proves only that the event loop turns. Here WATCHDOG=1 is
sent only while the control loop has completed a tick recently, so a tick stuck on a device call
that never returns, or a starved loop, stops the pings and systemd restarts the service (with
SIGABRT first: `faulthandler` then writes every thread's stack to the journal).

Wall time, not the injected clock, is right here: systemd's timer runs on the monotonic clock
whatever speed the process clock has.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import structlog

from shuttled.service.sd_notify import notify

if TYPE_CHECKING:
    from shuttled.loop.control_loop import ControlLoop

log = structlog.get_logger("shuttled.watchdog")

STATUS_INTERVAL_S = 10.0  # STATUS= refresh when systemd has no watchdog configured


def watchdog_interval_s() -> float | None:
    """Half of `WATCHDOG_USEC` (systemd's advice), or None when no watchdog is asked of us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec), 1) / 2e6
    except ValueError:
        return None


class ServiceHealth:
    """Ticks seen, their lateness, and the WATCHDOG=1/STATUS= task built on them."""

    def __init__(self, control_period_s: float, clock_speed: float) -> None:
        self.period_s = control_period_s  # process time
        self.speed = clock_speed
        # Three missed periods (at least 2 s) is a stall; one slow device call is not.
        self.stall_after_s = max(3.0 * control_period_s / clock_speed, 2.0)
        self.lateness_ms: deque[float] = deque(maxlen=100_000)
        self._last_tick = time.monotonic()
        self._origin = float("nan")
        self._origin_ticks = 0

    def begin(self, loop: ControlLoop) -> None:
        """Call right before `run_until`: its ticks are scheduled every period from now."""
        self._origin = loop.clock.now()
        self._origin_ticks = loop.ticks
        self._last_tick = time.monotonic()

    def on_tick(self, loop: ControlLoop) -> None:
        self._last_tick = time.monotonic()
        scheduled = self._origin + (loop.ticks - self._origin_ticks) * self.period_s
        started = loop._last_tick_at  # when the tick read the clock (set by tick())
        self.lateness_ms.append(max(started - scheduled, 0.0) / self.speed * 1000.0)

    def stalled_for(self) -> float:
        """Seconds since the last tick beyond what is normal; 0 when healthy."""
        since = time.monotonic() - self._last_tick
        return since if since > self.stall_after_s else 0.0

    def lateness_summary(self) -> dict[str, float]:
        if not self.lateness_ms:
            return {"ticks": 0}
        values = np.fromiter(self.lateness_ms, float)
        return {
            "ticks": len(values),
            "p50_ms": round(float(np.percentile(values, 50)), 3),
            "p99_ms": round(float(np.percentile(values, 99)), 3),
            "max_ms": round(float(values.max()), 3),
        }

    async def run(self, status: Callable[[], str]) -> None:
        """Forever: WATCHDOG=1 (only while healthy) and STATUS= at systemd's interval."""
        interval = watchdog_interval_s()
        while True:
            stalled = self.stalled_for()
            if stalled:
                log.error("control loop stalled: withholding WATCHDOG=1", stalled_s=round(stalled))
                notify(f"STATUS=control loop stalled for {stalled:.0f} s")
            elif interval is not None:
                notify("WATCHDOG=1", f"STATUS={status()}")
            else:
                notify(f"STATUS={status()}")
            await asyncio.sleep(interval or STATUS_INTERVAL_S)
