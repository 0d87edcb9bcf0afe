"""The `until` language: precedence, every operator, located errors, evaluation, no eval."""

from __future__ import annotations

import math

import pytest

from protocols import (
    SIGNALS,
    And,
    Arithmetic,
    Comparison,
    ExpressionSyntaxError,
    Name,
    Negate,
    Not,
    Number,
    Or,
    check_expression,
    parse_expression,
)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("a + b * c", "(a + (b * c))"),
        ("a * b + c", "((a * b) + c)"),
        ("a - b - c", "((a - b) - c)"),
        ("a / b / c", "((a / b) / c)"),
        ("-a * b", "((-a) * b)"),
        ("--a", "(-(-a))"),
        ("a + b < c * d", "((a + b) < (c * d))"),
        ("a < b and c > d", "((a < b) and (c > d))"),
        ("a < b or c > d and e == f", "((a < b) or ((c > d) and (e == f)))"),
        ("not a < b and c != d", "((not (a < b)) and (c != d))"),
        ("not not a <= b", "(not (not (a <= b)))"),
        ("(a + b) * c >= 1e9", "(((a + b) * c) >= 1000000000.0)"),
        ("(a < b or c < d) and e > f", "(((a < b) or (c < d)) and (e > f))"),
    ],
)
def test_precedence(text: str, canonical: str) -> None:
    assert str(parse_expression(text)) == canonical


def test_tree_shape_and_offsets() -> None:
    expr = parse_expression("temperature >= 36.8 and not density < 2.5e-3")
    assert isinstance(expr, And)
    assert expr.offset == 0 and expr.op_offset == 20
    left, right = expr.left, expr.right
    assert left == Comparison(">=", Name("temperature", 0), Number(36.8, 15), 0, 12)
    assert isinstance(right, Not) and right.offset == 24
    inner = right.operand
    assert isinstance(inner, Comparison)
    assert inner.right == Number(2.5e-3, 38)
    assert isinstance(parse_expression("-x"), Negate)
    assert isinstance(parse_expression("a or b"), Or)
    assert isinstance(parse_expression("a / b"), Arithmetic)


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e9", 1e9), ("2.5e-3", 2.5e-3), ("1E+3", 1000.0), (".5", 0.5), ("7.", 7.0), ("42", 42.0)],
)
def test_numbers(text: str, value: float) -> None:
    assert parse_expression(text) == Number(value, 0)


VALUES = {"a": 6.0, "b": 3.0, "zero": 0.0, "nan": math.nan}


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("a + b", 9.0),
        ("a - b", 3.0),
        ("a * b", 18.0),
        ("a / b", 2.0),
        ("-a", -6.0),
        ("a < b", False),
        ("a <= 6", True),
        ("a > b", True),
        ("b >= 3", True),
        ("a == 6", True),
        ("a != 6", False),
        ("a > b and b > 1", True),
        ("a < b and b > 1", False),
        ("a < b or b > 1", True),
        ("a < b or b < 1", False),
        ("not a < b", True),
        ("a / zero", math.inf),
        ("-a / zero", -math.inf),
        ("a / -zero", -math.inf),
        ("nan > 1", False),
        ("nan < 1", False),
        ("nan == nan", False),
        ("nan != 1", False),
        ("a / zero > 1e300", True),
    ],
)
def test_evaluate(text: str, result: float | bool) -> None:
    value = parse_expression(text).evaluate(VALUES)
    assert value == result
    assert type(value) is type(result)


def test_zero_by_zero_is_nan() -> None:
    assert math.isnan(parse_expression("zero / zero").evaluate(VALUES))  # type: ignore[arg-type]


def test_missing_value_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        parse_expression("missing > 1").evaluate(VALUES)


def test_names() -> None:
    expr = parse_expression("total_cells >= target and (density < 1 or -x > y / 2)")
    assert expr.names() == frozenset({"total_cells", "target", "density", "x", "y"})
    assert parse_expression("1 < 2").names() == frozenset()


@pytest.mark.parametrize(
    ("text", "offset", "fragment"),
    [
        ("", 0, "empty expression"),
        ("   ", 0, "empty expression"),
        ("a >", 3, "unexpected end of expression"),
        ("a > > b", 4, "expected a number, a name or '('"),
        ("(a > b", 6, "expected ')'"),
        ("a > b)", 5, "expected an operator or the end"),
        ("a b", 2, "expected an operator or the end"),
        ("a = b", 2, "use '=='"),
        ("a && b", 2, "use 'and'"),
        ("a || b", 2, "use 'or'"),
        ("!a", 0, "use 'not'"),
        ("a < b < c", 6, "cannot be chained"),
        ("1e", 0, "invalid number '1e'"),
        ("1.2.3 > a", 0, "invalid number"),
        ("3x > 1", 0, "invalid number '3x'"),
        ("1e999 > a", 0, "too large"),
        ("a > 'x'", 4, "unexpected character"),
        ("a ** 2", 3, "expected a number"),
        ("and", 0, "expected a number, a name or '('"),
        ("a > not", 4, "found 'not'"),
        ("__import__('os')", 11, "unexpected character"),
        ("__import__(os)", 10, "function calls are not part"),
        ("open(x) > 1", 4, "function calls"),
        ("a.b > 1", 1, "unexpected character '.'"),
        ("x[0] > 1", 1, "unexpected character '['"),
        ("lambda: 1", 6, "unexpected character ':'"),
        ("(" * 50 + "a" + ")" * 50, 40, "nested deeper"),
        ("a" * 1001, 1000, "too long"),
    ],
)
def test_syntax_errors(text: str, offset: int, fragment: str) -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        parse_expression(text)
    assert info.value.offset == offset
    assert fragment in info.value.message


def test_never_python_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a valid-looking condition must not reach eval/exec."""
    import builtins

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert parse_expression("density * volume_ml >= 1e9").evaluate(
        {"density": 1e7, "volume_ml": 100.0}
    )


def test_check_unknown_names_and_types() -> None:
    expr = parse_expression("temprature >= max_density + 1")
    problems = check_expression(expr, ["max_density"])
    assert len(problems) == 1
    offset, message = problems[0]
    assert offset == 0
    assert message.startswith("unknown name 'temprature' (signals: temperature, density,")
    assert "parameters: max_density)" in message
    assert message.endswith("did you mean 'temperature'?")


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("temperature >= 36.8", []),
        ("not (density > 1 or volume_ml < 2)", []),
        ("temperature", [(0, "the condition must be true or false")]),
        ("density * 2", [(0, "the condition must be true or false")]),
        ("(density > 1) + 1 > 0", [(1, "operand of '+' must be a number")]),
        ("-(density > 1) < 0", [(2, "operand of '-' must be a number")]),
        ("(density > 1) > 0", [(1, "operand of '>' must be a number")]),
        ("density and volume_ml > 1", [(0, "operand of 'and' must be a condition")]),
        ("density > 1 or 2", [(15, "operand of 'or' must be a condition")]),
        ("not density", [(4, "operand of 'not' must be a condition")]),
    ],
)
def test_check_types(text: str, problems: list[tuple[int, str]]) -> None:
    found = check_expression(parse_expression(text), [])
    assert len(found) == len(problems), found
    for (offset, message), (expected_offset, start) in zip(found, problems, strict=True):
        assert offset == expected_offset
        assert message.startswith(start)


def test_every_signal_is_known() -> None:
    text = " and ".join(f"{name} > 0" for name in SIGNALS)
    assert check_expression(parse_expression(text), []) == []
    assert len(SIGNALS) == 8


def test_nodes_are_frozen_and_hashable() -> None:
    expr = parse_expression("a > 1")
    with pytest.raises(AttributeError):
        expr.offset = 3  # type: ignore[misc]
    assert hash(expr) == hash(parse_expression("a > 1"))
