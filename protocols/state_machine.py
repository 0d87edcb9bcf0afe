"""The per-unit run state machine (ISA-88 subset, SPEC §4), as pure data and functions.

Kept free of I/O so the daemon, the OPC UA layer and the tests share one table: a command not
in the table is refused with a reason and the state is left as it was.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ACTIVE_STATES",
    "ENDED_STATES",
    "SETTLES",
    "TRANSITIONS",
    "Command",
    "CommandRefused",
    "RunState",
    "allowed_commands",
    "apply_command",
    "complete",
    "settle",
]


class RunState(StrEnum):
    IDLE = "IDLE"
    RUNNING = "RUNNING"
    HOLDING = "HOLDING"
    HELD = "HELD"
    RESTARTING = "RESTARTING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    ABORTING = "ABORTING"
    ABORTED = "ABORTED"
    COMPLETE = "COMPLETE"


class Command(StrEnum):
    START = "START"
    HOLD = "HOLD"
    RESTART = "RESTART"
    STOP = "STOP"
    ABORT = "ABORT"
    RESET = "RESET"


S, C = RunState, Command

#: Operator (or automatic) commands: (state, command) -> the state entered.
TRANSITIONS: dict[tuple[RunState, Command], RunState] = {
    (S.IDLE, C.START): S.RUNNING,
    (S.RUNNING, C.HOLD): S.HOLDING,
    (S.HELD, C.RESTART): S.RESTARTING,
    (S.RUNNING, C.STOP): S.STOPPING,
    (S.HELD, C.STOP): S.STOPPING,
    **{
        (state, C.ABORT): S.ABORTING
        for state in (S.RUNNING, S.HOLDING, S.HELD, S.RESTARTING, S.STOPPING)
    },
    **{(state, C.RESET): S.IDLE for state in (S.COMPLETE, S.STOPPED, S.ABORTED)},
}

#: Transient states and where they go once their action (pumps stopped, ...) is done.
SETTLES: dict[RunState, RunState] = {
    S.HOLDING: S.HELD,
    S.RESTARTING: S.RUNNING,
    S.STOPPING: S.STOPPED,
    S.ABORTING: S.ABORTED,
}

ACTIVE_STATES: frozenset[RunState] = frozenset(
    {S.RUNNING, S.HOLDING, S.HELD, S.RESTARTING, S.STOPPING, S.ABORTING}
)
ENDED_STATES: frozenset[RunState] = frozenset({S.COMPLETE, S.STOPPED, S.ABORTED})


class CommandRefused(Exception):
    """A command the current state does not allow; `reason` is meant for the operator."""

    def __init__(self, state: RunState, command: Command | str, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.command = command
        self.reason = reason


def allowed_commands(state: RunState) -> list[Command]:
    """Commands accepted in `state`, in declaration order (for UIs and messages)."""
    return [command for command in Command if (state, command) in TRANSITIONS]


def _states_allowing(command: Command) -> list[RunState]:
    return [state for state in RunState if (state, command) in TRANSITIONS]


def apply_command(state: RunState, command: Command) -> RunState:
    """The state entered on `command`, or CommandRefused (the caller keeps `state`)."""
    try:
        state, command = RunState(state), Command(command)
    except ValueError as exc:
        raise CommandRefused(state, command, f"unknown state or command: {exc}") from None
    target = TRANSITIONS.get((state, command))
    if target is None:
        allowed = ", ".join(_states_allowing(command))
        reason = f"{command.value.title()} is not allowed in state {state} (allowed in: {allowed})"
        raise CommandRefused(state, command, reason)
    return target


def settle(state: RunState) -> RunState:
    """The state after a transient state's action finished; other states stay as they are."""
    return SETTLES.get(RunState(state), RunState(state))


def complete(state: RunState) -> RunState:
    """COMPLETE after the last phase ended; only a RUNNING run can complete."""
    if RunState(state) is not S.RUNNING:
        raise CommandRefused(
            RunState(state),
            "COMPLETE",
            f"a run can only complete from RUNNING, not from {state}",
        )
    return S.COMPLETE
