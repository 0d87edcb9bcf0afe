"""Where crash torture kills the daemon: seeded, reproducible moments of a protocol's run.

A protocol's timeline is the process time it takes when nothing interrupts it: its waiting
phases (their `duration`) and its transfers (`volume_ml / rate_ml_min`), in order. A moment is a
place on that timeline — a share of a transfer, or a point of a waiting phase — and is reached
when what the operator interface shows says the run got there: the phase in CurrentStepName, the
planned time left in EstimatedRemaining (which only waiting phases count), or for a transfer the
vessel's volume having moved by that share. A kill then lands a random part of a control period
later, so kills fall anywhere in the tick: while reading, computing, journaling or commanding.

Besides the places on the timeline, some kills come at the moments a restart is most fragile:
while the run is held just after the daemon came back (`held`), and right after the operator's
Restart, before or while the remainder of a transfer is commanded (`restarting`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from protocols.model import Protocol

INITIAL_VOLUME_ML = 100.0  # SPEC §1: every simulated unit starts with 100 mL
OUT_OF_VESSEL = frozenset({"harvest"})
TIMELINE, HELD, RESTARTING = "timeline", "held", "restarting"
# Uniform moments stop this long before the end, so a kill lands before the run completes (a
# late one still kills a daemon whose run is COMPLETE, which must survive that too).
END_MARGIN_S = 20.0


@dataclass(frozen=True)
class Window:
    """One stretch of the timeline: a waiting phase, or one transfer."""

    phase_index: int
    phase: str
    length_s: float
    remaining_after_s: float  # EstimatedRemaining once this window is over
    pump: str | None = None  # a transfer's pump; None for a waiting phase
    volume_ml: float = 0.0
    start_volume_ml: float = INITIAL_VOLUME_ML  # the vessel when the transfer starts
    sign: float = 1.0  # +1 into the vessel, -1 out of it


def timeline(protocol: Protocol) -> list[Window]:
    """The windows of a protocol whose phases either wait or transfer, never both."""
    durations = [phase.duration_s or 0.0 for phase in protocol.phases]
    windows: list[Window] = []
    volume = INITIAL_VOLUME_ML
    for index, phase in enumerate(protocol.phases):
        after = sum(durations[index + 1 :], 0.0)
        if phase.steps and (phase.duration_s or phase.until is not None):
            raise ValueError(f"phase {phase.name} both waits and transfers")
        if not phase.steps:
            if phase.duration_s is None:
                raise ValueError(f"phase {phase.name} has no duration")
            windows.append(Window(index, phase.name, phase.duration_s, after))
        for step in phase.steps:
            if step.volume_ml is None:
                raise ValueError(f"phase {phase.name}: `volume: all` has no fixed volume")
            sign = -1.0 if step.pump in OUT_OF_VESSEL else 1.0
            windows.append(Window(
                index, phase.name, step.volume_ml / step.rate_ml_min * 60.0, after,
                step.pump, step.volume_ml, volume, sign,
            ))  # fmt: skip
            volume += sign * step.volume_ml
    return windows


@dataclass(frozen=True)
class Moment:
    """One kill: where (`kind`, and for the timeline a window and a share of it) and how far
    into the control period after the moment was seen (`jitter`, 0–1 of a period)."""

    kind: str
    jitter: float
    window: Window | None = None
    share: float = 0.0

    def reached(self, seen: Mapping[str, object], phase_index: Mapping[str, int]) -> bool:
        """Whether the operator interface's values `seen` show the run at or past this moment."""
        window = self.window
        if window is None:
            return True
        step = seen.get("CurrentStepName")
        at = phase_index.get(str(step).split(" / ")[0], -1) if isinstance(step, str) else -1
        if at != window.phase_index:
            return at > window.phase_index
        if window.pump is None:
            left = seen.get("EstimatedRemaining")
            planned = window.remaining_after_s + (1.0 - self.share) * window.length_s
            return isinstance(left, float) and left <= planned
        volume = seen.get("Volume")
        if not isinstance(volume, float) or math.isnan(volume):
            return self.share == 0.0
        moved = window.sign * (volume - window.start_volume_ml)
        return moved >= self.share * window.volume_ml - 1e-6

    def describe(self) -> str:
        if self.window is None:
            return f"{self.kind} (+{self.jitter:.2f} period)"
        what = f"transfer {self.window.pump}" if self.window.pump else "wait"
        return (
            f"{self.window.phase} {what} at {self.share:.0%} (+{self.jitter:.2f} period)"
        )


def kill_plan(windows: list[Window], kills: int, seed: int) -> list[Moment]:
    """`kills` moments in the order they come, the same for the same seed.

    About a tenth each are `held` and `restarting` kills; of the rest, half are placed relative
    to the transfers (the first and last 5 % of each, where a segment is opened and closed, and
    anywhere between), half uniformly over the whole timeline but its last `END_MARGIN_S`.
    """
    rng = random.Random(seed)
    transfers = [w for w in windows if w.pump is not None]
    fragile = max(1, kills // 10) if kills >= 10 else 0
    placed_count = kills - 2 * fragile
    relative = placed_count // 2
    placed: list[tuple[Window, float]] = []
    edges = [(0.0, 0.05), (0.95, 1.0), (0.0, 1.0)]
    for i in range(relative):
        window = transfers[i % len(transfers)]
        low, high = edges[(i // len(transfers)) % len(edges)]
        placed.append((window, rng.uniform(low, high)))
    total = sum(w.length_s for w in windows)
    for _ in range(placed_count - relative):
        at = rng.uniform(0.0, total - END_MARGIN_S)
        for window in windows:
            if at < window.length_s or window is windows[-1]:
                placed.append((window, min(at / window.length_s, 1.0)))
                break
            at -= window.length_s
    order = {id(w): i for i, w in enumerate(windows)}
    placed.sort(key=lambda ws: (order[id(ws[0])], ws[1]))
    plan = [Moment(TIMELINE, rng.random(), w, share) for w, share in placed]
    for kind in [HELD] * fragile + [RESTARTING] * fragile:
        plan.insert(rng.randrange(1, len(plan) + 1), Moment(kind, rng.random()))
    return plan
