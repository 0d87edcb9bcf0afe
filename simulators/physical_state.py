"""The virtual instrument's physical state on disk, so a simulated power cut loses what a real one
loses and keeps what a real one keeps (`shuttle-sim --state FILE`).

When the power goes, the liquid stays in the vessel with its cells, and what each pump moved has
moved; the pump modules' counters, though, are volatile (SPEC §7: cumulative since power-up), and
the controller comes back with its heater off. So the file holds the plant's state rows, per
pump the volume it moved since the file was created (`PhysicalState.pump_totals_ul`: the pump's
counter plus what its earlier lives moved), and the cartridge installed in each unit (it does not
leave its unit in an outage, so a restarted simulator reports the one a `cartridge_swap` or
`--cartridge` put there, and a restore wins over `--cartridge`). At start an existing file is
restored: plant rows as they were, pumps idle with their counters at zero, totals carried on.

The file is written after every physics step, in the same event-loop turn as the step, before a
pump could answer a STATUS from the new counters: nothing a device ever reported is lost with the
simulator, so a restarted simulator agrees with everything the daemon saw. What moved after the
last step (at most one physics step) is lost, as if the power had gone at that step. The file is
replaced atomically (never seen half-written) but not fsynced: it survives the simulator being
killed, not the test machine losing power. The plant's clock does not run while the simulator is
down (the liquid does not cool during the outage), and sensor noise and probe drift start again.

The same file is the bench's read-only view of what really moved, for tests that must check the
daemon's transfers against something other than the daemon (`read_state`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulators import plant
from simulators.cartridges import cartridge_problem
from simulators.instrument import PUMP_SPECS, VirtualInstrument

FORMAT = 1


class StateFileInvalid(Exception):
    """The state file cannot be restored onto this instrument; the message names file and why."""


@dataclass(frozen=True)
class PhysicalState:
    """What a state file says: per unit the plant's state row, per `UNIT/pump` the µL moved."""

    units: list[str]
    rows: list[list[float]]
    pump_totals_ul: dict[str, float]
    cartridges: list[str] | None = None  # None: a file from before cartridges were kept

    def volume_ml(self, unit: str) -> float:
        return self.rows[self.units.index(unit)][plant.VOLUME_ML]

    def moved_ml(self, unit: str, pump: str) -> float:
        return self.pump_totals_ul[f"{unit}/{pump}"] / 1000.0


def read_state(path: Path) -> PhysicalState:
    """Parse a state file; raises StateFileInvalid with the reason (never a traceback for users)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StateFileInvalid(f"{path}: cannot read the state file: {error}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StateFileInvalid(f"{path}: not a shuttle-sim state file (format {FORMAT})")
    try:
        units = [str(u) for u in data["units"]]
        rows = [[float(x) for x in row] for row in data["plant"]]
        totals = {str(k): float(v) for k, v in data["pump_totals_ul"].items()}
        cartridges = data.get("cartridges")
        if cartridges is not None:
            cartridges = [str(c) for c in cartridges]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise StateFileInvalid(f"{path}: malformed state file: {error!r}") from None
    if len(rows) != len(units) or any(len(row) != plant.STATE_COLUMNS for row in rows):
        raise StateFileInvalid(
            f"{path}: expected {len(units)} plant rows of {plant.STATE_COLUMNS} values"
        )
    if cartridges is not None and (len(cartridges) != len(units)
                                   or any(cartridge_problem(c) for c in cartridges)):
        raise StateFileInvalid(f"{path}: expected {len(units)} valid cartridge ids")
    return PhysicalState(units, rows, totals, cartridges)


def check_state_file(path: Path, units: list[str]) -> PhysicalState | None:
    """Before anything starts: the file can be written, and an existing one fits `units`."""
    if not path.parent.is_dir():
        raise StateFileInvalid(f"{path}: no such directory {path.parent}")
    if not path.exists():
        return None
    state = read_state(path)
    if state.units != units:
        raise StateFileInvalid(
            f"{path}: holds units {', '.join(state.units)}, the instrument has {', '.join(units)}"
        )
    if set(state.pump_totals_ul) != {f"{u}/{spec.name}" for u in units for spec in PUMP_SPECS}:
        raise StateFileInvalid(f"{path}: its pumps are not this instrument's pumps")
    return state


class StateFile:
    """Keeps one instrument's physical state in `path`: restore at start, save after each step."""

    def __init__(self, instrument: VirtualInstrument, path: Path) -> None:
        self.instrument = instrument
        self.path = path
        self._pumps = {f"{u}/{p}": pump for (u, p), pump in instrument.pump_firmware.items()}
        self._moved_before_ul = dict.fromkeys(self._pumps, 0.0)

    def restore(self) -> bool:
        """Put the instrument back as the file left it; False when there is no file yet."""
        instrument = self.instrument
        state = check_state_file(self.path, instrument.unit_ids)
        if state is None:
            return False
        instrument.state[:] = np.array(state.rows)
        self._moved_before_ul = dict(state.pump_totals_ul)
        if state.cartridges is not None:
            instrument.arrays.cartridges[:] = state.cartridges
        # What the controller serves until the first physics step publishes with noise.
        instrument.arrays.volume_ml[:] = instrument.state[:, plant.VOLUME_ML]
        instrument.arrays.measured_temperature[:] = instrument.state[:, plant.SENSOR_TEMPERATURE]
        return True

    def pump_totals_ul(self) -> dict[str, float]:
        return {
            key: before + self._pumps[key].dispensed_ul
            for key, before in self._moved_before_ul.items()
        }

    def save(self) -> None:
        data = {
            "format": FORMAT,
            "units": self.instrument.unit_ids,
            "plant": self.instrument.state.tolist(),
            "pump_totals_ul": self.pump_totals_ul(),
            "cartridges": list(self.instrument.arrays.cartridges),
        }
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(data), encoding="utf-8")
        os.replace(partial, self.path)

    async def after_step(self, _now: float) -> None:
        """The clock's listener, added after the instrument's own: saves the step just taken."""
        self.save()
