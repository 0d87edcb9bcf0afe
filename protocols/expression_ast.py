"""Tree of a parsed `until` condition, and its interpretation.

Nodes are frozen dataclasses so a parsed protocol can be shared between runs and compared; each
keeps the 0-based offset of its first character in the source so errors can point at a column.
Evaluation follows IEEE float rules instead of raising, because the control loop must keep
running when a signal is zero or NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

__all__ = [
    "And",
    "Arithmetic",
    "Comparison",
    "Expression",
    "Kind",
    "Name",
    "Negate",
    "Not",
    "Number",
    "Or",
    "Value",
]

Value = float | bool
Kind = Literal["number", "condition"]

ARITHMETIC_OPERATORS = ("+", "-", "*", "/")
COMPARISON_OPERATORS = ("<", "<=", ">", ">=", "==", "!=")


class Expression:
    """Base of the tree; nodes are frozen so a parsed protocol can be shared between runs."""

    offset: int
    kind: ClassVar[Kind]

    def children(self) -> tuple[Expression, ...]:
        return ()

    def walk(self) -> Iterator[Expression]:
        """Every node, parents first; the depth is bounded by the parser's limits."""
        yield self
        for child in self.children():
            yield from child.walk()

    def names(self) -> frozenset[str]:
        return frozenset(node.name for node in self.walk() if isinstance(node, Name))

    def evaluate(self, values: Mapping[str, float]) -> Value:
        """Value of the node; a missing name raises KeyError so a wiring bug is not hidden."""
        raise NotImplementedError


@dataclass(frozen=True)
class Number(Expression):
    value: float
    offset: int
    kind: ClassVar[Kind] = "number"

    def evaluate(self, values: Mapping[str, float]) -> Value:
        return self.value

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Name(Expression):
    name: str
    offset: int
    kind: ClassVar[Kind] = "number"

    def evaluate(self, values: Mapping[str, float]) -> Value:
        return float(values[self.name])

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Negate(Expression):
    operand: Expression
    offset: int
    kind: ClassVar[Kind] = "number"

    def children(self) -> tuple[Expression, ...]:
        return (self.operand,)

    def evaluate(self, values: Mapping[str, float]) -> Value:
        return -float(self.operand.evaluate(values))

    def __str__(self) -> str:
        return f"(-{self.operand})"


@dataclass(frozen=True)
class Not(Expression):
    operand: Expression
    offset: int
    kind: ClassVar[Kind] = "condition"

    def children(self) -> tuple[Expression, ...]:
        return (self.operand,)

    def evaluate(self, values: Mapping[str, float]) -> Value:
        return not self.operand.evaluate(values)

    def __str__(self) -> str:
        return f"(not {self.operand})"


def _divide(left: float, right: float) -> float:
    """IEEE division: a zero volume or growth rate must not crash the control loop."""
    if right == 0.0:
        if left == 0.0 or math.isnan(left):
            return math.nan
        return math.copysign(math.inf, left) * math.copysign(1.0, right)
    return left / right


_ARITHMETIC = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _divide,
}

_COMPARISON = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


@dataclass(frozen=True)
class Arithmetic(Expression):
    op: str
    left: Expression
    right: Expression
    offset: int
    op_offset: int
    kind: ClassVar[Kind] = "number"

    def children(self) -> tuple[Expression, ...]:
        return (self.left, self.right)

    def evaluate(self, values: Mapping[str, float]) -> Value:
        left = float(self.left.evaluate(values))
        right = float(self.right.evaluate(values))
        return float(_ARITHMETIC[self.op](left, right))

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


@dataclass(frozen=True)
class Comparison(Expression):
    op: str
    left: Expression
    right: Expression
    offset: int
    op_offset: int
    kind: ClassVar[Kind] = "condition"

    def children(self) -> tuple[Expression, ...]:
        return (self.left, self.right)

    def evaluate(self, values: Mapping[str, float]) -> Value:
        left = float(self.left.evaluate(values))
        right = float(self.right.evaluate(values))
        # A NaN reading (sensor fault) must never satisfy a condition, not even `!=`.
        if math.isnan(left) or math.isnan(right):
            return False
        return bool(_COMPARISON[self.op](left, right))

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


@dataclass(frozen=True)
class And(Expression):
    left: Expression
    right: Expression
    offset: int
    op_offset: int
    kind: ClassVar[Kind] = "condition"

    def children(self) -> tuple[Expression, ...]:
        return (self.left, self.right)

    def evaluate(self, values: Mapping[str, float]) -> Value:
        return bool(self.left.evaluate(values)) and bool(self.right.evaluate(values))

    def __str__(self) -> str:
        return f"({self.left} and {self.right})"


@dataclass(frozen=True)
class Or(Expression):
    left: Expression
    right: Expression
    offset: int
    op_offset: int
    kind: ClassVar[Kind] = "condition"

    def children(self) -> tuple[Expression, ...]:
        return (self.left, self.right)

    def evaluate(self, values: Mapping[str, float]) -> Value:
        return bool(self.left.evaluate(values)) or bool(self.right.evaluate(values))

    def __str__(self) -> str:
        return f"({self.left} or {self.right})"
