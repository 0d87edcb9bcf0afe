"""Why an operation was refused, in the terms OPC UA status codes need (its own module so the
operations and the protocol lifecycle rules can both raise it without importing each other)."""

from __future__ import annotations


class OperationRefused(Exception):
    """A refused request; `kind` says why, in the terms OPC UA status codes need."""

    STATE = "state"  # BadInvalidState
    ARGUMENT = "argument"  # BadInvalidArgument

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
