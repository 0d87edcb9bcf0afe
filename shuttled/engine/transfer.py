"""Progress of one transfer, measured by the pump's own cumulative counter.

Transfers are not idempotent: a feed repeated after a glitch overfills the vessel and dilutes the
batch. So progress is never "command sent" but "what the pump says it moved since we started",
summed over every segment (a hold, a restart, a daemon restart each start a new segment), and only
the remainder is ever commanded again.

The counter counts since the pump's power-up (SPEC §7): a power cut sets it back to zero, and
with it what the open segment had moved. So every reading of an open segment is kept with the
run's checkpoint (`segment_counter_ul`), and a counter found below it closes the segment at that
last reading: what was counted stays counted. Only what the pump moved after its last reading
before the cut — at most a control period of flow — is not known to anyone, and is moved again.
"""

from __future__ import annotations

from dataclasses import dataclass

from shuttled.engine.actions import Dispense, PumpView

# A pump counts whole tacho pulses (a fraction of a µL); anything closer than this is delivered.
DELIVERY_TOLERANCE_UL = 1.0


@dataclass
class TransferProgress:
    pump: str
    target_ul: float
    rate_ul_min: float
    delivered_before_ul: float = 0.0  # delivered in earlier, closed segments
    segment_baseline_ul: float | None = None  # pump counter when the open segment was commanded
    segment_counter_ul: float | None = None  # pump counter at the open segment's last reading
    kind: str = "transfer"  # or "dilution" (density control)

    def delivered_ul(self, view: PumpView | None) -> float:
        if self.segment_baseline_ul is None or view is None:
            return self.delivered_before_ul
        return self.delivered_before_ul + max(view.dispensed_ul - self.segment_baseline_ul, 0.0)

    def remaining_ul(self, view: PumpView | None) -> float:
        return max(self.target_ul - self.delivered_ul(view), 0.0)

    def is_done(self, view: PumpView | None) -> bool:
        return self.remaining_ul(view) <= DELIVERY_TOLERANCE_UL

    def close_segment(self, view: PumpView | None) -> None:
        """Fold the open segment into the delivered total (the pump stopped or was stopped)."""
        self.delivered_before_ul = self.delivered_ul(view)
        self.segment_baseline_ul = None
        self.segment_counter_ul = None

    def follow(self, view: PumpView) -> float | None:
        """Keep a fresh reading of the open segment's counter. A counter below the last reading
        restarted (the pump lost power): the segment is closed at that reading, and what it had
        counted (µL) is returned; None when the counter went on as it should."""
        if self.segment_baseline_ul is None:
            return None
        last = self.segment_counter_ul
        if last is None:
            last = self.segment_baseline_ul
        if view.dispensed_ul >= last:
            self.segment_counter_ul = view.dispensed_ul
            return None
        counted = last - self.segment_baseline_ul
        self.delivered_before_ul += counted
        self.segment_baseline_ul = None
        self.segment_counter_ul = None
        return counted

    def next_command(self, view: PumpView) -> Dispense:
        """Command only what remains, from the pump's counter as it is now."""
        if self.segment_baseline_ul is not None:
            self.close_segment(view)
        self.segment_baseline_ul = self.segment_counter_ul = view.dispensed_ul
        return Dispense(self.pump, self.remaining_ul(view), self.rate_ul_min)
