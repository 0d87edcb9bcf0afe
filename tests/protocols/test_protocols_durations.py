"""Durations: units are mandatory, messages are for operators."""

from __future__ import annotations

import pytest

from protocols import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("90m", 5400.0),
        ("1.5h", 5400.0),
        ("10d", 864000.0),
        ("24h", 86400.0),
        (" 2h ", 7200.0),
        (".5h", 1800.0),
        ("1e1s", 10.0),
        ("0s", 0.0),
    ],
)
def test_valid_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("24", "has no unit"),
        ("1.5", "has no unit"),
        ("10x", "unknown duration unit 'x'"),
        ("10 days", "unknown duration unit 'days'"),
        ("h", "invalid duration"),
        ("", "invalid duration"),
        ("-1h", "invalid duration"),
        ("1h30m", "invalid duration"),
        ("1e999h", "too large"),
    ],
)
def test_invalid_durations(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(text)


def test_non_text_is_refused() -> None:
    with pytest.raises(ValueError, match="must be text"):
        parse_duration(24)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"), [(86400, "1d"), (5400, "90m"), (30, "30s"), (2.5, "2.5s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
