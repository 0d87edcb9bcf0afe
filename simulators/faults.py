"""Fault files (SPEC.md §1) and the schedule that plays them in simulated time.

A fault file is a YAML list; each item names a fault, when it starts (`at`, simulated time since
the instrument started) and, for faults that last, for how long (`duration`):

    - {at: 2h, fault: opcua_down, duration: 5m}
    - {at: 8h, fault: cold_bolus, unit: U01, volume_ml: 50, temperature: 4.0}
    - {at: 9h, fault: cartridge_swap, unit: U02, cartridge: CRT-0099, duration: 10m}

Every problem is reported at once as `FILE:LINE:COL: message`, like protocol validation, so an
engineer fixes a file in one round trip and never sees a traceback.

The schedule is pure: it turns faults into start and end events ordered by simulated time (ties
in file order), and the virtual instrument applies them inside `advance_to`, so the same file and
seed give the same run however fast the machine is. Tests script faults with `schedule.add()` or
`VirtualInstrument.inject()`.
"""

from __future__ import annotations

import heapq
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from protocols.durations import parse_duration
from simulators.cartridges import cartridge_problem

BUSES = ("pumps", "probes")
SENSORS = ("probe", "temperature")
PUMPS = ("media", "vector", "harvest")

# Per fault kind: keys it needs and keys it may have (besides `at` and `fault`).
_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "opcua_down": (frozenset({"duration"}), frozenset()),
    "serial_cut": (frozenset({"bus", "duration"}), frozenset()),
    "garbage": (frozenset({"bus", "rate", "duration"}), frozenset()),
    "sensor_stuck": (frozenset({"unit", "duration"}), frozenset({"sensor"})),
    "sensor_nan": (frozenset({"unit", "duration"}), frozenset({"sensor"})),
    "sensor_spike": (frozenset({"unit", "duration"}), frozenset({"sensor"})),
    # The alarm latches until CLEAR; `duration` is how long its cause (a jammed rotor, an open
    # cover) persists, during which CLEAR is refused. Without it the cause is momentary.
    "pump_stall": (frozenset({"unit", "pump"}), frozenset({"duration"})),
    "cover_open": (frozenset({"unit", "pump"}), frozenset({"duration"})),
    "heater_fail": (frozenset({"unit", "duration"}), frozenset()),
    "cold_bolus": (frozenset({"unit", "volume_ml", "temperature"}), frozenset()),
    # Without `duration` the new ambient temperature stays.
    "ambient_step": (frozenset({"temperature"}), frozenset({"duration"})),
    # Another cartridge in the unit (SPEC §12: the daemon must hold the run). With `duration`
    # the original one is put back after it, which is how its recovery is tried.
    "cartridge_swap": (frozenset({"unit", "cartridge"}), frozenset({"duration"})),
}
FAULT_KINDS = tuple(_KEYS)
MAX_VOLUME_ML = 1000.0  # SPEC §1: a 1 L vessel


@dataclass(frozen=True)
class Fault:
    """One fault; fields a kind does not use stay None. `line` locates it in its file."""

    kind: str
    at_s: float = 0.0
    duration_s: float | None = None
    unit: str | None = None
    bus: str | None = None
    pump: str | None = None
    sensor: str | None = None  # None: the probe and the temperature sensor of the unit
    rate: float | None = None
    volume_ml: float | None = None
    temperature: float | None = None
    cartridge: str | None = None  # cartridge_swap: the id of the cartridge now installed
    line: int = 0

    def __post_init__(self) -> None:
        if self.kind not in _KEYS:
            raise ValueError(f"unknown fault {self.kind!r}; known: {', '.join(FAULT_KINDS)}")


@dataclass(frozen=True, order=True)
class FaultFileError:
    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class FaultFileInvalid(Exception):
    """Every problem of one fault file, each located."""

    def __init__(self, errors: list[FaultFileError]) -> None:
        self.errors = sorted(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


@dataclass(frozen=True)
class FaultEvent:
    """A fault starting (`starting`) or ending, at simulated time `at_s`."""

    at_s: float
    starting: bool
    fault: Fault


@dataclass
class FaultSchedule:
    """Start and end events of faults in simulated-time order, ties in the order they were added."""

    _heap: list[tuple[float, int, FaultEvent]] = field(default_factory=list)
    _counter: int = 0

    @classmethod
    def of(cls, faults: list[Fault]) -> FaultSchedule:
        schedule = cls()
        for fault in faults:
            schedule.add(fault)
        return schedule

    def add(self, fault: Fault) -> None:
        """Schedule `fault` at its `at_s` and, if it lasts, its end `duration_s` later."""
        self._push(FaultEvent(fault.at_s, True, fault))
        if fault.duration_s is not None:
            self._push(FaultEvent(fault.at_s + fault.duration_s, False, fault))

    def _push(self, event: FaultEvent) -> None:
        heapq.heappush(self._heap, (event.at_s, self._counter, event))
        self._counter += 1

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, until_s: float) -> list[FaultEvent]:
        """Every event at or before `until_s`, in order."""
        due = []
        while self._heap and self._heap[0][0] <= until_s:
            due.append(heapq.heappop(self._heap)[2])
        return due

    def __len__(self) -> int:
        return len(self._heap)


# --- parsing ------------------------------------------------------------------------------------


class _Checker:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.errors: list[FaultFileError] = []

    def error(self, where: tuple[int, int], message: str) -> None:
        self.errors.append(FaultFileError(self.filename, where[0], where[1], message))


def _key_loc(item: CommentedMap, key: str) -> tuple[int, int]:
    line, col = item.lc.key(key)
    return line + 1, col + 1


def _value_loc(item: CommentedMap, key: str) -> tuple[int, int]:
    line, col = item.lc.value(key)
    return line + 1, col + 1


def load_fault_text(
    text: str,
    filename: str = "<faults>",
    unit_ids: list[str] | None = None,
) -> list[Fault]:
    """Parse a fault file; raises FaultFileInvalid with every problem found.

    With `unit_ids`, a fault naming a unit the instrument does not have is an error too.
    """
    checker = _Checker(filename)
    yaml = YAML(typ="rt")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            document = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        checker.error(where, f"YAML syntax error: {exc.problem or exc.context or 'invalid YAML'}")
        raise FaultFileInvalid(checker.errors) from None
    except Exception as exc:  # reader errors (bad bytes) carry no mark
        checker.error((1, 1), f"YAML syntax error: {str(exc).splitlines()[0]}")
        raise FaultFileInvalid(checker.errors) from None
    if document is None:
        return []
    if not isinstance(document, CommentedSeq):
        checker.error((1, 1), "a fault file is a list of faults, e.g. '- {at: 2h, fault: ...}'")
        raise FaultFileInvalid(checker.errors)
    faults = []
    for index, item in enumerate(document):
        line, col = document.lc.item(index)
        fault = _read_fault(checker, item, (line + 1, col + 1), unit_ids)
        if fault is not None:
            faults.append(fault)
    if checker.errors:
        raise FaultFileInvalid(checker.errors)
    return faults


def load_fault_file(path: str | os.PathLike[str], unit_ids: list[str] | None = None) -> list[Fault]:
    name = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FaultFileInvalid([FaultFileError(name, 1, 1, f"cannot read: {reason}")]) from None
    return load_fault_text(text, name, unit_ids)


def _read_fault(
    checker: _Checker, item: Any, where: tuple[int, int], unit_ids: list[str] | None
) -> Fault | None:
    if not isinstance(item, CommentedMap):
        checker.error(where, "each fault is a mapping such as {at: 2h, fault: opcua_down, ...}")
        return None
    before = len(checker.errors)
    kind = item.get("fault")
    if "fault" not in item:
        checker.error(where, f"missing key 'fault' (one of: {', '.join(FAULT_KINDS)})")
        return None
    if kind not in _KEYS:
        checker.error(
            _value_loc(item, "fault"),
            f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}",
        )
        return None
    required, optional = _KEYS[kind]
    allowed = required | optional | {"at", "fault"}
    for key in item:
        if key not in allowed:
            checker.error(
                _key_loc(item, key),
                f"unknown key {key!r} for {kind}; allowed: {', '.join(sorted(allowed))}",
            )
    for key in sorted((required | {"at"}) - set(item)):
        checker.error(where, f"{kind} needs '{key}'")
    values: dict[str, Any] = {}
    for key in item:
        if key in allowed and key != "fault":
            values[key] = _read_value(checker, item, key, kind, unit_ids)
    if len(checker.errors) > before:
        return None
    return Fault(
        kind=kind,
        at_s=values["at"],
        duration_s=values.get("duration"),
        unit=values.get("unit"),
        bus=values.get("bus"),
        pump=values.get("pump"),
        sensor=values.get("sensor"),
        rate=values.get("rate"),
        volume_ml=values.get("volume_ml"),
        temperature=values.get("temperature"),
        cartridge=values.get("cartridge"),
        line=where[0],
    )


def _read_value(
    checker: _Checker, item: CommentedMap, key: str, kind: str, unit_ids: list[str] | None
) -> Any:
    value = item[key]
    where = _value_loc(item, key)
    if key in ("at", "duration"):
        try:
            seconds = parse_duration(value if isinstance(value, str) else repr(value))
        except ValueError as exc:
            checker.error(where, f"{key}: {exc}")
            return None
        if key == "duration" and seconds <= 0:
            checker.error(where, "duration must be positive")
        return seconds
    if key == "cartridge":
        problem = cartridge_problem(value)
        if problem is not None:
            checker.error(where, f"cartridge: {problem}")
        return value
    choices = {"bus": BUSES, "pump": PUMPS, "sensor": SENSORS}.get(key)
    if key == "unit":
        choices = tuple(unit_ids) if unit_ids is not None else None
    if key in ("unit", "bus", "pump", "sensor"):
        if not isinstance(value, str):
            checker.error(where, f"{key} must be a name, not {value!r}")
        elif choices is not None and value not in choices:
            checker.error(
                where, f"unknown {key} {value!r}; this instrument has: " + ", ".join(choices)
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        checker.error(where, f"{key} must be a number, not {value!r}")
        return None
    number = float(value)
    if key == "rate" and not 0.0 < number <= 1.0:
        checker.error(where, f"rate is the share of frames corrupted: 0 < rate <= 1, not {value}")
    elif key == "volume_ml" and not 0.0 < number <= MAX_VOLUME_ML:
        checker.error(where, f"volume_ml must be in (0, {MAX_VOLUME_ML:g}] mL, not {value}")
    elif key == "temperature" and not -20.0 <= number <= 80.0:
        checker.error(where, f"temperature must be within -20 to 80 °C, not {value}")
    return number
