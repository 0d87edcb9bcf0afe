"""When a run's checkpoint is written: on every meaningful change, and at least once a minute.

Writing every tick would fsync every control period for every unit; writing only on state
changes would lose a long phase's elapsed time. So a checkpoint is written whenever anything but
the elapsed time changed (a state, a phase, a step, a transfer's baseline — always before the
instrument acts on it), and otherwise once per `REFRESH_S` of process time. Only the first kind
is fsynced on its own: a refresh that a power cut rolls back costs at most a minute of a phase's
elapsed time, and it is written without waiting for the disk (`Journal._transaction`).
"""

from __future__ import annotations

from typing import Any

from shuttled.engine.checkpoint import checkpoint_of
from shuttled.engine.unit_run import UnitRun
from shuttled.records.journal import Journal

REFRESH_S = 60.0
_CLOCK_FIELDS = ("phase_elapsed_s",)


class RunPersistence:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._saved: dict[str, dict[str, Any]] = {}
        self._saved_at: dict[str, float] = {}

    def persist(self, runs: list[UnitRun], now: float, force: bool = False) -> int:
        """Save the checkpoints that need saving, in one transaction; returns how many."""
        due: dict[str, dict[str, Any]] = {}
        durable = force
        for run in runs:
            data = checkpoint_of(run)
            if force or self._changed(run.unit_id, data, now):
                due[run.unit_id] = data
                durable = durable or self._meaningful(run.unit_id, data)
        self.journal.save_checkpoints(due, now, durable=durable)
        for unit, data in due.items():
            self._saved[unit] = data
            self._saved_at[unit] = now
        return len(due)

    def _changed(self, unit: str, data: dict[str, Any], now: float) -> bool:
        saved = self._saved.get(unit)
        if saved is None or now - self._saved_at[unit] >= REFRESH_S:
            return True
        return self._meaningful(unit, data)

    def _meaningful(self, unit: str, data: dict[str, Any]) -> bool:
        """Anything but the elapsed time differs from what was last saved (or nothing was)."""
        saved = self._saved.get(unit)
        if saved is None:
            return True
        # One comparison of whole dicts (done in C, every tick for every unit), with the saved
        # clock fields replaced by the current ones so that only the rest can differ.
        compared = dict(saved)
        for key in _CLOCK_FIELDS:
            compared[key] = data[key]
        return compared != data
