"""Operator steps over real OPC UA (SPEC §12): Confirm and Verify, two different people, signed."""

from __future__ import annotations

import json

from asyncua import ua
from gmp_rig import reason_of, signature
from operator_rig import Daemon, connect, unit_node
from test_methods_and_roles import call, state

from shuttled.records.audit import AuditTrail
from shuttled.records.signatures import canonical_sha256, read_signatures

S = ua.StatusCodes
PROTOCOL = """\
shuttle_protocol: 1
name: bag-steps
version: 1.0.0
phases:
  - name: connect
    temperature: 37.0
    steps:
      - confirm: {prompt: Connect the vector bag, record: [vector_lot], verify: true}
  - name: look
    temperature: 37.0
    steps:
      - confirm: {prompt: Look at the cartridge}
"""


async def _step_name(unit, ns: int) -> str:
    node = await unit.get_child(
        [f"{ns}:ProgramManager", f"{ns}:ActiveProgram", f"{ns}:CurrentStepName"])
    return await node.read_value()


async def _started(daemon: Daemon, client) -> tuple[object, int, str]:
    unit, ns = await unit_node(client)
    loaded = await call(unit, ns, "LoadProtocol", PROTOCOL)
    started = await call(unit, ns, "Start", loaded.OutputArguments[0].Value, "", "batch 7")
    assert started.StatusCode.is_good(), reason_of(started)
    await daemon.tick()
    return unit, ns, started.OutputArguments[0].Value


async def test_a_verified_step_completes_only_after_two_different_users_signed(
    daemon: Daemon,
) -> None:
    otto, sue = await connect(daemon.endpoint, "otto"), await connect(daemon.endpoint, "sue")
    try:
        unit, ns, run_id = await _started(daemon, otto)
        assert await _step_name(unit, ns) == "Connect the vector bag"
        assert await state(unit, ns) == "RUNNING"

        confirmed = await call(unit, ns, "Confirm", '{"vector_lot": "VL-2024-17"}',
                               signature("otto", "performed", "bag B12"))
        assert confirmed.StatusCode.is_good(), reason_of(confirmed)
        assert confirmed.OutputArguments[0].Value == "verify"
        await daemon.tick()
        assert daemon.runs["U01"].phase.name == "connect"  # waits for the second person

        own = await call(unit, ns, "Verify", signature("otto", "verified"))
        assert own.StatusCode.value == S.BadInvalidArgument
        assert "otto confirmed 'Connect the vector bag' and cannot also verify" in reason_of(own)

        sue_unit, _ = await unit_node(sue)
        verified = await call(sue_unit, ns, "Verify", signature("sue", "verified"))
        assert verified.StatusCode.is_good(), reason_of(verified)
        await daemon.tick()  # the phase's steps are done: the next phase
        await daemon.tick()  # ... whose first step waits
        assert await _step_name(unit, ns) == "Look at the cartridge"
        done = await call(sue_unit, ns, "Confirm", "{}", signature("sue", "performed"))
        assert done.StatusCode.is_good(), reason_of(done)
        assert done.OutputArguments[0].Value == "done"
        await daemon.tick()
        assert await state(unit, ns) == "COMPLETE"
    finally:
        await otto.disconnect()
        await sue.disconnect()

    journal = daemon.data_dir / "journal.sqlite3"
    signed = read_signatures(journal, "operator_step", f"{run_id}/connect/0")
    assert [(s.signer, s.meaning) for s in signed] == [("otto", "performed"), ("sue", "verified")]
    content = {"run_id": run_id, "phase": "connect", "step": 0,
               "prompt": "Connect the vector bag", "values": {"vector_lot": "VL-2024-17"}}
    assert all(s.status(canonical_sha256(content)) == "signed" for s in signed)
    assert signed[0].comment == "bag B12" and signed[1].full_name == "Sue Supervisor"
    events = [json.loads(e.detail) for e in daemon.runs["U01"].events
              if e.kind == "operator_step"]
    assert [(e["action"], e["by"], e["auto"]) for e in events] == [
        ("waiting", "", False), ("performed", "otto", False), ("verified", "sue", False),
        ("waiting", "", False), ("performed", "sue", False)]
    records = AuditTrail(journal).records()
    confirm_call = next(r for r in records if r.method == "Confirm" and r.result == "Good")
    assert confirm_call.arguments["values"] == {"vector_lot": "VL-2024-17"}
    assert "otto-pw" not in json.dumps([r.arguments for r in records])  # never the password


async def test_confirm_and_verify_refuse_what_cannot_be_signed(daemon: Daemon) -> None:
    otto, vera = await connect(daemon.endpoint, "otto"), await connect(daemon.endpoint, "vera")
    try:
        unit, ns = await unit_node(otto)
        idle = await call(unit, ns, "Confirm", "{}", signature("otto", "performed"))
        assert idle.StatusCode.value == S.BadInvalidState and "no operator step" in reason_of(idle)
        unit, ns, _ = await _started(daemon, otto)
        sign = signature("otto", "performed")
        cases = [
            ("{}", sign, S.BadInvalidArgument, "Values needs vector_lot"),
            ('{"vector_lot": "a", "bag": "b"}', sign, S.BadInvalidArgument, "no place for bag"),
            ("{not json", sign, S.BadInvalidArgument, "Values is not JSON"),
            ('{"vector_lot": 17}', sign, S.BadInvalidArgument, "must be text"),
            ('{"vector_lot": "a"}', signature("otto", "verified"), S.BadInvalidArgument,
             "needs a 'performed' signature"),
            ('{"vector_lot": "a"}', signature("otto", "performed", password="wrong-pw-123"),
             S.BadUserAccessDenied, "wrong password"),
        ]
        for values, signed, status, reason in cases:
            result = await call(unit, ns, "Confirm", values, signed)
            assert result.StatusCode.value == status, (values, reason_of(result))
            assert reason in reason_of(result)
        early = await call(unit, ns, "Verify", signature("otto", "verified"))
        assert early.StatusCode.value == S.BadInvalidState
        vera_unit, _ = await unit_node(vera)
        viewer = await call(vera_unit, ns, "Confirm", '{"vector_lot": "a"}',
                            signature("vera", "performed"))
        assert viewer.StatusCode.value == S.BadUserAccessDenied
        assert daemon.runs["U01"].operator_step.values is None  # nothing was taken
    finally:
        await otto.disconnect()
        await vera.disconnect()
