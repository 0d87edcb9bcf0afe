"""Fuzzing: no input may make the loader or the expression parser raise anything unexpected."""

from __future__ import annotations

import math
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import (
    LIBRARY_DIR,
    Expression,
    ExpressionSyntaxError,
    Protocol,
    ProtocolInvalid,
    load_protocol_text,
    parse_expression,
)

DEMO = (LIBRARY_DIR / "demo.yaml").read_text(encoding="utf-8")
# PROTOCOLS_FUZZ_EXAMPLES=5000 for a deeper run; the default keeps the suite fast.
FAST = settings(
    max_examples=int(os.environ.get("PROTOCOLS_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

YAML_BITS = st.sampled_from(
    [":", "-", " ", "\n", "  ", "[", "]", "{", "}", ",", "'", '"', "#", "&a", "*a", "!!str",
     "<<", "|", ">", "?", "true", "null", "1e9", "-1", "0", ".nan", "24h", "x", "until",
     "timeout", "phases", "name", "temperature", "steps", "transfer", "volume: all"]
)  # fmt: skip


def check_loader(text: str) -> None:
    try:
        result = load_protocol_text(text)
    except ProtocolInvalid as exc:
        assert exc.errors
        for error in exc.errors:
            assert error.line >= 1 and error.col >= 1 and error.message
            assert not error.message.startswith("internal error"), error
    else:
        assert isinstance(result, Protocol)


@FAST
@given(st.text(max_size=300))
def test_loader_random_text(text: str) -> None:
    check_loader(text)


@FAST
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(DEMO)),
            st.integers(min_value=0, max_value=12),
            st.one_of(YAML_BITS, st.text(max_size=6)),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_loader_mutated_demo(edits: list[tuple[int, int, str]]) -> None:
    text = DEMO
    for position, cut, insert in edits:
        position = min(position, len(text))
        text = text[:position] + insert + text[position + cut :]
    check_loader(text)


EXPR_BITS = st.sampled_from(
    ["a", "density", "1e9", "2.5e-3", "0", " ", "(", ")", "+", "-", "*", "/", "<", "<=", ">",
     ">=", "==", "!=", "=", "!", "and", "or", "not", "1e", ".", "'", "__import__", "nan"]
)  # fmt: skip


def check_expression_text(text: str) -> None:
    try:
        expression = parse_expression(text)
    except ExpressionSyntaxError as exc:
        assert 0 <= exc.offset <= len(text)
        return
    assert isinstance(expression, Expression)
    values = dict.fromkeys(expression.names(), 1.0)
    result = expression.evaluate(values)
    assert isinstance(result, bool | float)
    # The canonical rendering parses back to the same meaning.
    again = parse_expression(str(expression)).evaluate(values)
    assert again == result or (
        isinstance(result, float) and isinstance(again, float) and math.isnan(result)
        and math.isnan(again)
    )  # fmt: skip


@FAST
@given(st.text(max_size=80))
def test_expression_random_text(text: str) -> None:
    check_expression_text(text)


@FAST
@given(st.lists(EXPR_BITS, max_size=25).map(" ".join))
def test_expression_token_soup(text: str) -> None:
    check_expression_text(text)
