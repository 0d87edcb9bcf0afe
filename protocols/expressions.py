"""The `until` condition language of protocol files (SPEC §3).

Conditions come from files written by people and are evaluated inside the control loop, so they
are parsed into a small typed tree and interpreted here; Python `eval` is never involved. Every
node keeps the 0-based offset of its first character so the loader can point at the exact column
of a problem inside the YAML file.

Grammar (loosest binding first)::

    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := "-" unary | primary
    primary    := NUMBER | NAME | "(" or_expr ")"
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from protocols.expression_ast import (
    COMPARISON_OPERATORS,
    And,
    Arithmetic,
    Comparison,
    Expression,
    Kind,
    Name,
    Negate,
    Not,
    Number,
    Or,
)

__all__ = [
    "SIGNALS",
    "And",
    "Arithmetic",
    "Comparison",
    "Expression",
    "ExpressionSyntaxError",
    "Name",
    "Negate",
    "Not",
    "Number",
    "Or",
    "check_expression",
    "parse_expression",
]

#: Process values the engine provides to every condition, in the order they are documented.
SIGNALS: tuple[str, ...] = (
    "temperature",
    "density",
    "volume_ml",
    "total_cells",
    "growth_rate",
    "doubling_time_h",
    "phase_time_h",
    "run_time_h",
)

KEYWORDS = frozenset({"and", "or", "not"})
MAX_LENGTH = 1000
MAX_NESTING = 40


class ExpressionSyntaxError(ValueError):
    """A condition that cannot be parsed; `offset` lets the caller point at the exact column."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset

    def __str__(self) -> str:
        return f"{self.message} (at offset {self.offset})"


# --------------------------------------------------------------------------------------- AST


# --------------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class Token:
    kind: Literal["number", "name", "op", "end"]
    text: str
    offset: int


_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = ("<=", ">=", "==", "!=", "<", ">", "+", "-", "*", "/", "(", ")")


def tokenize(text: str) -> list[Token]:
    """Split a condition into tokens; anything outside the language is refused right here."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char in " \t\r\n":
            pos += 1
            continue
        number = _NUMBER.match(text, pos)
        if number:
            end = number.end()
            if end < len(text) and (text[end].isalnum() or text[end] in "._"):
                bad = re.match(r"[\w.]*", text[pos:]).group()  # type: ignore[union-attr]
                raise ExpressionSyntaxError(f"invalid number {bad!r}", pos)
            tokens.append(Token("number", number.group(), pos))
            pos = end
            continue
        name = _NAME.match(text, pos)
        if name:
            tokens.append(Token("name", name.group(), pos))
            pos = name.end()
            continue
        operator = next((op for op in _OPERATORS if text.startswith(op, pos)), None)
        if operator is None:
            hint = " (use '==' to compare)" if char == "=" else ""
            if char == "&":
                hint = " (use 'and')"
            elif char == "|":
                hint = " (use 'or')"
            elif char == "!":
                hint = " (use 'not' or '!=')"
            raise ExpressionSyntaxError(f"unexpected character {char!r}{hint}", pos)
        tokens.append(Token("op", operator, pos))
        pos += len(operator)
    tokens.append(Token("end", "", len(text)))
    return tokens


# ------------------------------------------------------------------------------------ parser


def _describe(token: Token) -> str:
    return "the end of the expression" if token.kind == "end" else repr(token.text)


class _Parser:
    """Recursive descent over the token list; prefix operators are looped to bound the stack."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.pos]

    def accept(self, *texts: str) -> Token | None:
        token = self.current
        if token.kind in ("op", "name") and token.text in texts:
            self.pos += 1
            return token
        return None

    def parse(self) -> Expression:
        if self.current.kind == "end":
            raise ExpressionSyntaxError("empty expression", 0)
        node = self.or_expr()
        if self.current.kind != "end":
            found = _describe(self.current)
            raise ExpressionSyntaxError(
                f"expected an operator or the end of the expression, found {found}",
                self.current.offset,
            )
        return node

    def or_expr(self) -> Expression:
        node = self.and_expr()
        while token := self.accept("or"):
            node = Or(node, self.and_expr(), node.offset, token.offset)
        return node

    def and_expr(self) -> Expression:
        node = self.not_expr()
        while token := self.accept("and"):
            node = And(node, self.not_expr(), node.offset, token.offset)
        return node

    def not_expr(self) -> Expression:
        nots: list[Token] = []
        while token := self.accept("not"):
            nots.append(token)
        node = self.comparison()
        for token in reversed(nots):
            node = Not(node, token.offset)
        return node

    def comparison(self) -> Expression:
        node = self.sum()
        if token := self.accept(*COMPARISON_OPERATORS):
            node = Comparison(token.text, node, self.sum(), node.offset, token.offset)
            if again := self.accept(*COMPARISON_OPERATORS):
                raise ExpressionSyntaxError(
                    f"comparisons cannot be chained ({again.text!r}); combine them with 'and'",
                    again.offset,
                )
        return node

    def sum(self) -> Expression:
        node = self.product()
        while token := self.accept("+", "-"):
            node = Arithmetic(token.text, node, self.product(), node.offset, token.offset)
        return node

    def product(self) -> Expression:
        node = self.unary()
        while token := self.accept("*", "/"):
            node = Arithmetic(token.text, node, self.unary(), node.offset, token.offset)
        return node

    def unary(self) -> Expression:
        signs: list[Token] = []
        while token := self.accept("-"):
            signs.append(token)
        node = self.primary()
        for token in reversed(signs):
            node = Negate(node, token.offset)
        return node

    def primary(self) -> Expression:
        token = self.current
        if token.kind == "number":
            self.pos += 1
            value = float(token.text)
            if not math.isfinite(value):
                raise ExpressionSyntaxError(f"number {token.text} is too large", token.offset)
            return Number(value, token.offset)
        if token.kind == "name" and token.text not in KEYWORDS:
            self.pos += 1
            if self.current.kind == "op" and self.current.text == "(":
                raise ExpressionSyntaxError(
                    f"function calls are not part of the condition language ({token.text}(...))",
                    self.current.offset,
                )
            return Name(token.text, token.offset)
        if opening := self.accept("("):
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise ExpressionSyntaxError(
                    f"parentheses nested deeper than {MAX_NESTING} levels", opening.offset
                )
            node = self.or_expr()
            if not self.accept(")"):
                raise ExpressionSyntaxError(
                    f"expected ')' to close the '(' at offset {opening.offset}, "
                    f"found {_describe(self.current)}",
                    self.current.offset,
                )
            self.depth -= 1
            return node
        if token.kind == "end":
            raise ExpressionSyntaxError(
                "unexpected end of expression: expected a number, a name or '('", token.offset
            )
        raise ExpressionSyntaxError(
            f"expected a number, a name or '(', found {_describe(token)}", token.offset
        )


def parse_expression(text: str) -> Expression:
    """Parse a condition; every failure is an ExpressionSyntaxError with the offending offset."""
    if not isinstance(text, str):
        raise ExpressionSyntaxError("a condition must be text", 0)
    if len(text) > MAX_LENGTH:
        raise ExpressionSyntaxError(
            f"expression is too long ({len(text)} characters, at most {MAX_LENGTH})", MAX_LENGTH
        )
    return _Parser(tokenize(text)).parse()


# ------------------------------------------------------------------------------ static check


def _kind_word(kind: Kind) -> str:
    return "a number" if kind == "number" else "a condition"


def _operand_errors(node: Expression) -> list[tuple[int, str]]:
    """Operands of the wrong kind, e.g. `(a > b) + 1` or `not density`."""
    errors: list[tuple[int, str]] = []
    if isinstance(node, Arithmetic | Comparison | Negate):
        symbol = "-" if isinstance(node, Negate) else node.op
        for child in node.children():
            if child.kind != "number":
                errors.append(
                    (child.offset, f"operand of '{symbol}' must be a number, not a condition")
                )
    elif isinstance(node, And | Or | Not):
        word = {And: "and", Or: "or", Not: "not"}[type(node)]
        for child in node.children():
            if child.kind != "condition":
                errors.append(
                    (
                        child.offset,
                        f"operand of '{word}' must be a condition such as "
                        f"'density > 1e6', not a number",
                    )
                )
    return errors


def check_expression(expr: Expression, known_names: Iterable[str]) -> list[tuple[int, str]]:
    """Problems a syntactically valid condition can still have, as (offset, message) pairs.

    `known_names` are the protocol's parameter names; the SIGNALS are always known. The result
    is sorted by offset so messages come out in reading order.
    """
    parameters = sorted(set(known_names) - set(SIGNALS))
    known = set(SIGNALS) | set(parameters)
    errors: list[tuple[int, str]] = []
    for node in expr.walk():
        if isinstance(node, Name) and node.name not in known:
            listing = (
                f"signals: {', '.join(SIGNALS)}; "
                f"parameters: {', '.join(parameters) if parameters else 'none'}"
            )
            message = f"unknown name '{node.name}' ({listing})"
            close = difflib.get_close_matches(node.name, sorted(known), n=1)
            if close:
                message += f"; did you mean '{close[0]}'?"
            errors.append((node.offset, message))
        errors.extend(_operand_errors(node))
    if expr.kind != "condition":
        errors.append(
            (
                expr.offset,
                "the condition must be true or false, e.g. a comparison such as "
                "'temperature >= 36.8', not a number",
            )
        )
    return sorted(errors, key=lambda item: item[0])
