"""Durations as written in protocol files (`90m`, `1.5h`, `10d`, `30s`).

Units are mandatory: a bare `24` in a GMP batch record is ambiguous (hours? minutes?), so it is
rejected rather than guessed.
"""

from __future__ import annotations

import math
import re

__all__ = ["UNIT_SECONDS", "format_duration", "parse_duration"]

UNIT_SECONDS: dict[str, float] = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_DURATION = re.compile(
    r"(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>[a-zA-Z]*)"
)


def parse_duration(text: str) -> float:
    """Return the duration in seconds; ValueError carries a message fit for an operator."""
    if not isinstance(text, str):
        raise ValueError(f"a duration must be text such as '90m', '1.5h' or '10d', not {text!r}")
    stripped = text.strip()
    match = _DURATION.fullmatch(stripped)
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: expected a number followed by s, m, h or d "
            "(e.g. '90m', '1.5h', '10d')"
        )
    unit = match.group("unit")
    if not unit:
        raise ValueError(f"duration {text!r} has no unit: add s, m, h or d (e.g. '{stripped}h')")
    if unit not in UNIT_SECONDS:
        raise ValueError(f"unknown duration unit {unit!r} in {text!r}: use s, m, h or d")
    seconds = float(match.group("number")) * UNIT_SECONDS[unit]
    if not math.isfinite(seconds):
        raise ValueError(f"duration {text!r} is too large")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds back in the largest unit that keeps the value readable (for messages)."""
    for unit in ("d", "h", "m"):
        size = UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds >= 3600:
        return f"{seconds / 3600:g}h"
    return f"{seconds:g}s"
