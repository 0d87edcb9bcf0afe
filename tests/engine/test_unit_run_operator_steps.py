"""Operator steps in the engine (SPEC §12): a run waits in RUNNING for people, survives kill -9
while waiting, and goes on only when every recorded value and signature is there."""

from __future__ import annotations

import json

import pytest
from test_unit_run import snap

from protocols import load_protocol_text
from protocols.state_machine import Command, RunState
from shuttled.engine.actions import Dispense, PumpView
from shuttled.engine.checkpoint import checkpoint_of, restore_run
from shuttled.engine.operations_errors import OperationRefused
from shuttled.engine.operator_steps import OPERATOR_STEP, apply_confirm, apply_verify
from shuttled.engine.protocol_approval import Signer
from shuttled.engine.unit_run import UnitRun

PROTOCOL = """\
shuttle_protocol: 1
name: steps
version: 1.0.0
phases:
  - name: transduction
    temperature: 37.0
    steps:
      - confirm: {prompt: Connect the vector bag, record: [vector_lot], verify: true}
      - transfer: {pump: vector, volume_ml: 5, rate_ml_min: 5}
"""

OTTO = Signer("otto", "operator", "Otto Operator", "performed")
SUE = Signer("sue", "supervisor", "Sue Supervisor", "verified")


def _waiting_run() -> UnitRun:
    run = UnitRun("U01")
    run.start(load_protocol_text(PROTOCOL), {}, "R-1", 0.0, reason="test")
    assert run.step(snap(5.0, vector=PumpView(False, 0.0))) == []
    return run


def _details(run: UnitRun) -> list[dict]:
    return [json.loads(e.detail) for e in run.events if e.kind == OPERATOR_STEP]


def test_the_run_waits_in_running_with_the_heater_on_and_no_transfer() -> None:
    run = _waiting_run()
    for now in (10.0, 500.0, 5000.0):
        assert run.step(snap(now, vector=PumpView(False, 0.0))) == []
    assert run.state == RunState.RUNNING and run.temperature_setpoint == 37.0
    assert run.operator_step is not None and run.operator_step.prompt == "Connect the vector bag"
    (announced,) = _details(run)  # announced once, not every tick
    assert announced["action"] == "waiting" and announced["record_id"] == "R-1/transduction/0"


def test_it_goes_on_only_after_a_confirmation_and_a_different_users_verification() -> None:
    run = _waiting_run()
    with pytest.raises(OperationRefused, match="vector_lot"):
        apply_confirm(run, {}, OTTO, 10.0)
    with pytest.raises(OperationRefused, match="no place for lot"):
        apply_confirm(run, {"vector_lot": "VL-1", "lot": "x"}, OTTO, 10.0)
    with pytest.raises(OperationRefused, match="Confirm comes first"):
        apply_verify(run, SUE, 10.0)
    apply_confirm(run, {"vector_lot": " VL-1 "}, OTTO, 10.0)
    assert run.step(snap(15.0, vector=PumpView(False, 0.0))) == []  # still waits for Verify
    with pytest.raises(OperationRefused, match="cannot also verify"):
        apply_verify(run, Signer("otto", "operator", "Otto Operator", "verified"), 20.0)
    apply_verify(run, SUE, 20.0)
    actions = run.step(snap(25.0, vector=PumpView(False, 0.0)))
    assert actions == [Dispense("vector", 5000.0, 5000.0)]
    _waiting, performed, verified = _details(run)
    assert performed["values"] == {"vector_lot": "VL-1"} and performed["by"] == "otto"
    assert performed["meaning"] == "performed" and performed["auto"] is False
    assert verified["by"] == "sue" and verified["full_name"] == "Sue Supervisor"
    assert [e.user for e in run.events if e.kind == OPERATOR_STEP] == ["system", "otto", "sue"]


def test_a_waiting_step_and_its_confirmation_survive_a_restart() -> None:
    run = _waiting_run()
    apply_confirm(run, {"vector_lot": "VL-1"}, OTTO, 10.0)
    restored = restore_run(json.loads(json.dumps(checkpoint_of(run))), now=900.0)
    assert restored.state == RunState.HOLDING and restored.hold_reason == "daemon restarted"
    restored.step(snap(905.0, vector=PumpView(False, 0.0)))
    assert restored.state == RunState.HELD and restored.temperature_setpoint == 37.0
    restored.command(Command.RESTART, "checked", 910.0, user="sue")
    restored.step(snap(915.0, vector=PumpView(False, 0.0)))
    assert restored.state == RunState.RUNNING
    assert restored.step(snap(920.0, vector=PumpView(False, 0.0))) == []  # still waits
    waiting = restored.operator_step
    assert waiting is not None and waiting.values == {"vector_lot": "VL-1"}
    assert waiting.performed_by == "otto"
    assert _details(restored) == []  # not announced again: the same step
    apply_verify(restored, SUE, 930.0)
    assert restored.step(snap(935.0, vector=PumpView(False, 0.0))) == [
        Dispense("vector", 5000.0, 5000.0)]


def test_a_hold_while_waiting_is_any_hold() -> None:
    run = _waiting_run()
    run.command(Command.HOLD, "bag leaks", 10.0, user="otto")
    run.step(snap(15.0))
    assert run.state == RunState.HELD and run.operator_step is not None
    run.command(Command.RESTART, "new bag", 20.0, user="otto")
    run.step(snap(25.0))
    assert run.state == RunState.RUNNING and run.operator_step is not None
    run.command(Command.ABORT, "no vector", 30.0, user="sue")
    run.step(snap(35.0))
    with pytest.raises(OperationRefused, match="no operator step is waiting"):
        apply_confirm(run, {"vector_lot": "VL-1"}, OTTO, 40.0)
