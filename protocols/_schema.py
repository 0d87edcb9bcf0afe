"""Schema-walking helpers for the loader: locations, typed field readers, key checks.

ruamel.yaml's round-trip loader keeps a 0-based line/column for every key, value and list item;
everything here turns those into 1-based locations and collects errors instead of raising, so
one pass reports every problem in the file. Any lookup that can fail on odd YAML (merge keys,
aliases, complex keys) falls back to the nearest enclosing location rather than crashing.
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)

from protocols.durations import parse_duration
from protocols.errors import ProtocolError

__all__ = ["Checker", "Loc", "describe", "is_number"]

Loc = tuple[int, int]
_LINE_BREAK = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")


def is_number(value: object) -> bool:
    """YAML booleans are ints in Python (and ScalarBoolean for anchored ones): never numbers."""
    return isinstance(value, int | float) and not isinstance(value, bool | ScalarBoolean)


def describe(value: object) -> str:
    """How a wrong value is named in a message: what the author wrote, in YAML terms."""
    if isinstance(value, bool | ScalarBoolean):
        return "true" if value else "false"
    if value is None:
        return "an empty value"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return repr(shown)
    if is_number(value):
        return f"the number {value}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, datetime.date):
        return f"the date {value}"
    return f"a {type(value).__name__}"


def _lc(pair: object) -> Loc | None:
    if isinstance(pair, Sequence) and len(pair) >= 2:
        line, col = pair[0], pair[1]
        if isinstance(line, int) and isinstance(col, int):
            return line + 1, col + 1
    return None


def start_of(node: object, default: Loc = (1, 1)) -> Loc:
    try:
        return node.lc.line + 1, node.lc.col + 1  # type: ignore[attr-defined]
    except Exception:
        return default


def key_at(mapping: object, key: object) -> Loc:
    try:
        return _lc(mapping.lc.key(key)) or start_of(mapping)  # type: ignore[attr-defined]
    except Exception:
        return start_of(mapping)


def value_at(mapping: object, key: object) -> Loc:
    try:
        return _lc(mapping.lc.value(key)) or key_at(mapping, key)  # type: ignore[attr-defined]
    except Exception:
        return key_at(mapping, key)


def item_at(seq: object, index: int) -> Loc:
    try:
        return _lc(seq.lc.item(index)) or start_of(seq)  # type: ignore[attr-defined]
    except Exception:
        return start_of(seq)


class Checker:
    """Collects located errors for one file and reads typed fields out of YAML mappings."""

    def __init__(self, filename: str, text: str) -> None:
        self.filename = filename
        self.lines = _LINE_BREAK.split(text)
        self.errors: list[ProtocolError] = []

    def error(self, loc: Loc, message: str) -> None:
        self.errors.append(ProtocolError(self.filename, loc[0], loc[1], message))

    # ------------------------------------------------------------------------- structure

    def mapping(self, value: object, loc: Loc, what: str) -> CommentedMap | None:
        if isinstance(value, CommentedMap):
            return value
        self.error(loc, f"{what} must be a mapping of keys to values, not {describe(value)}")
        return None

    def sequence(self, value: object, loc: Loc, what: str) -> CommentedSeq | None:
        if isinstance(value, CommentedSeq):
            return value
        self.error(loc, f"{what} must be a list (items starting with '-'), not {describe(value)}")
        return None

    def check_keys(
        self,
        mapping: CommentedMap,
        allowed: Iterable[str],
        required: Iterable[str],
        context: str = "",
        missing_at: Loc | None = None,
    ) -> None:
        """Unknown keys (with a spelling hint) and missing required ones."""
        allowed = tuple(allowed)
        for key in mapping:
            if key in allowed:
                continue
            message = f"unknown key {describe(key)}{context}"
            close = difflib.get_close_matches(key, allowed, n=1) if isinstance(key, str) else []
            if close:
                message += f"; did you mean '{close[0]}'?"
            else:
                message += f" (allowed: {', '.join(allowed)})"
            self.error(key_at(mapping, key), message)
        for key in required:
            if key not in mapping:
                self.error(
                    missing_at or start_of(mapping), f"missing required key '{key}'{context}"
                )

    # -------------------------------------------------------------------------- scalars

    def text(self, mapping: CommentedMap, key: str) -> str | None:
        value = mapping[key]
        if isinstance(value, str):
            return str(value)
        self.error(value_at(mapping, key), f"{key} must be text, not {describe(value)}")
        return None

    def number(self, mapping: CommentedMap, key: str, unit: str = "") -> float | None:
        """A finite YAML int or float; strings such as '37' are refused, not coerced."""
        value = mapping[key]
        loc = value_at(mapping, key)
        if not is_number(value):
            self.error(loc, f"{key} must be a number{unit}, not {describe(value)}")
            return None
        try:
            number = float(value)  # type: ignore[arg-type]
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            self.error(loc, f"{key} must be a finite number, not {value}")
            return None
        return number

    def positive(self, mapping: CommentedMap, key: str, unit: str = "") -> float | None:
        number = self.number(mapping, key, unit)
        if number is not None and number <= 0:
            self.error(value_at(mapping, key), f"{key} must be positive, not {number:g}")
            return None
        return number

    def duration(self, mapping: CommentedMap, key: str) -> float | None:
        """Seconds of a `90m`-style duration; a bare number is refused since units are required."""
        value = mapping[key]
        loc = value_at(mapping, key)
        if is_number(value):
            self.error(loc, f"{key} needs a unit: write e.g. '{value}h' or '{value}m', not {value}")
            return None
        if not isinstance(value, str):
            self.error(
                loc, f"{key} must be a duration such as '90m' or '24h', not {describe(value)}"
            )
            return None
        try:
            seconds = parse_duration(str(value))
        except ValueError as exc:
            self.error(loc, f"{key}: {exc}")
            return None
        if seconds <= 0:
            self.error(loc, f"{key} must be positive, not {describe(value)}")
            return None
        return seconds

    # ------------------------------------------------------------- positions in a scalar

    def offset_in_value(self, mapping: CommentedMap, key: str, offset: int) -> Loc:
        """File location of a character inside a string value (for expression errors).

        Walks the source from the value's start, skipping the quote, block indicator,
        indentation and folded line breaks; falls back to the value's start when the source
        and the value disagree (escape sequences), so a location is always returned.
        """
        start = value_at(mapping, key)
        value = mapping[key]
        try:
            line, col = start[0] - 1, start[1] - 1
            if isinstance(value, LiteralScalarString | FoldedScalarString):
                line, col = line + 1, 0
            elif isinstance(value, SingleQuotedScalarString | DoubleQuotedScalarString):
                col += 1
            found = self._walk(str(value), offset, line, col)
        except Exception:
            found = None
        return found or start

    def _walk(self, value: str, offset: int, line: int, col: int) -> Loc | None:
        offset = max(0, min(offset, len(value)))
        i = 0
        while True:
            if line >= len(self.lines):
                return None
            source = self.lines[line]
            at_end = col >= len(source)
            if i >= offset:
                target = value[offset] if offset < len(value) else ""
                if not at_end and (source[col] == target or source[col] not in " \t"):
                    return line + 1, col + 1
                if at_end and not target:
                    return line + 1, col + 1
            if at_end:
                line, col = line + 1, 0
                if i < offset and value[i] in " \n":
                    i += 1
                continue
            if i < offset and source[col] == value[i]:
                i, col = i + 1, col + 1
            elif source[col] in " \t":
                col += 1
            elif i < offset and value[i] in " \n":
                i += 1
            else:
                return None
