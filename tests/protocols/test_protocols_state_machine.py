"""ISA-88 run states: every (state, command) pair is either the table's result or refused."""

from __future__ import annotations

import itertools

import pytest

from protocols import (
    ACTIVE_STATES,
    ENDED_STATES,
    SETTLES,
    TRANSITIONS,
    Command,
    CommandRefused,
    RunState,
    allowed_commands,
    apply_command,
    complete,
    settle,
)

S, C = RunState, Command

# SPEC §4, written out independently of the implementation's table.
EXPECTED = {
    (S.IDLE, C.START): S.RUNNING,
    (S.RUNNING, C.HOLD): S.HOLDING,
    (S.HELD, C.RESTART): S.RESTARTING,
    (S.RUNNING, C.STOP): S.STOPPING,
    (S.HELD, C.STOP): S.STOPPING,
    (S.RUNNING, C.ABORT): S.ABORTING,
    (S.HOLDING, C.ABORT): S.ABORTING,
    (S.HELD, C.ABORT): S.ABORTING,
    (S.RESTARTING, C.ABORT): S.ABORTING,
    (S.STOPPING, C.ABORT): S.ABORTING,
    (S.COMPLETE, C.RESET): S.IDLE,
    (S.STOPPED, C.RESET): S.IDLE,
    (S.ABORTED, C.RESET): S.IDLE,
}


def test_table_matches_spec() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(
    ("state", "command"),
    list(itertools.product(RunState, Command)),
    ids=lambda value: str(value),
)
def test_every_pair(state: RunState, command: Command) -> None:
    if (state, command) in EXPECTED:
        assert apply_command(state, command) is EXPECTED[(state, command)]
        return
    current = state
    with pytest.raises(CommandRefused) as info:
        current = apply_command(current, command)
    assert current is state  # unchanged
    refused = info.value
    assert refused.state is state and refused.command is command
    assert f"is not allowed in state {state.value}" in refused.reason
    assert refused.reason.startswith(command.value.title())


def test_reason_names_where_allowed() -> None:
    with pytest.raises(CommandRefused) as info:
        apply_command(S.IDLE, C.HOLD)
    assert info.value.reason == "Hold is not allowed in state IDLE (allowed in: RUNNING)"
    with pytest.raises(CommandRefused) as info:
        apply_command(S.IDLE, C.ABORT)
    assert info.value.reason.endswith("(allowed in: RUNNING, HOLDING, HELD, RESTARTING, STOPPING)")


def test_strings_are_accepted() -> None:
    assert apply_command("IDLE", "START") is S.RUNNING  # type: ignore[arg-type]
    with pytest.raises(CommandRefused, match="unknown state or command"):
        apply_command(S.IDLE, "JUMP")  # type: ignore[arg-type]


@pytest.mark.parametrize("state", list(RunState))
def test_settle(state: RunState) -> None:
    expected = {
        S.HOLDING: S.HELD,
        S.RESTARTING: S.RUNNING,
        S.STOPPING: S.STOPPED,
        S.ABORTING: S.ABORTED,
    }.get(state, state)
    assert settle(state) is expected
    assert SETTLES.get(state, state) is expected


@pytest.mark.parametrize("state", list(RunState))
def test_complete_only_from_running(state: RunState) -> None:
    if state is S.RUNNING:
        assert complete(state) is S.COMPLETE
    else:
        with pytest.raises(CommandRefused, match="only complete from RUNNING"):
            complete(state)


def test_state_groups() -> None:
    assert {S.RUNNING, S.HOLDING, S.HELD, S.RESTARTING, S.STOPPING, S.ABORTING} == ACTIVE_STATES
    assert {S.COMPLETE, S.STOPPED, S.ABORTED} == ENDED_STATES
    assert not ACTIVE_STATES & ENDED_STATES
    assert set(RunState) == ACTIVE_STATES | ENDED_STATES | {S.IDLE}
    # Abort is possible from every active state that is not already aborting.
    assert {state for state in ACTIVE_STATES if (state, C.ABORT) in TRANSITIONS} == (
        ACTIVE_STATES - {S.ABORTING}
    )


def test_allowed_commands() -> None:
    assert allowed_commands(S.RUNNING) == [C.HOLD, C.STOP, C.ABORT]
    assert allowed_commands(S.ABORTING) == []
    assert allowed_commands(S.IDLE) == [C.START]


def test_str_values() -> None:
    assert str(S.HELD) == "HELD"
    assert f"{C.RESET}" == "RESET"
