"""`Confirm` and `Verify` on a unit object (SPEC §12 "Operator steps").

Both are signing methods: the caller re-enters their password (`prove_signer`), and the signature
— `performed` for Confirm, `verified` for Verify — goes into the signature book bound to the
step's content (run, phase, step, prompt, values) before the run moves on (`OperatorSteps`).

The step is checked before the password (a call that could not be answered costs no scrypt and no
lockout count) and again after it: the password check runs in a worker thread, and a control tick
or another session may have answered the step meanwhile. Every call, allowed or refused, is
audited by `MethodHandlers.handle`, with the values and the signature's meaning and comment, never
the password.
"""

from __future__ import annotations

import json
from typing import Any

from asyncua import ua

from shuttled.engine.operations import Operations
from shuttled.engine.operator_steps import OperatorSteps, check_confirm, check_verify
from shuttled.operator_server.identity import Caller, UsersFileManager
from shuttled.operator_server.methods import MethodHandlers, Refusal
from shuttled.operator_server.signing import parse_signature, prove_signer

S = ua.VariantType.String
MAX_VALUES_TEXT = 20_000


def parse_values(text: str) -> dict[str, str]:
    """`Values`: a JSON object of text values; empty means none (a step that records nothing)."""
    if len(text) > MAX_VALUES_TEXT:
        raise Refusal(ua.StatusCodes.BadInvalidArgument, "Values is too long")
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as error:
        raise Refusal(ua.StatusCodes.BadInvalidArgument, f"Values is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise Refusal(ua.StatusCodes.BadInvalidArgument,
                      'Values must be a JSON object such as {"lot": "ML-123"}')
    for name, value in data.items():
        if not isinstance(value, str):
            raise Refusal(ua.StatusCodes.BadInvalidArgument,
                          f"value of {name} must be text (a JSON string)")
    return {str(name): value for name, value in data.items()}


class StepMethods:
    """The handlers; `attach` puts them on the `MethodHandlers` the unit objects are built with."""

    def __init__(self, handlers: MethodHandlers, operations: Operations,
                 users: UsersFileManager) -> None:
        self.handlers = handlers
        self.steps = OperatorSteps(operations)
        self.users = users

    def attach(self) -> None:
        """Before `build_unit`: it binds every unit method as `handlers.on_<Method>`."""
        self.handlers.on_Confirm = self.on_Confirm  # type: ignore[attr-defined]
        self.handlers.on_Verify = self.on_Verify  # type: ignore[attr-defined]

    async def on_Confirm(self, parent: ua.NodeId, *args: Any):
        return await self.handlers.handle(parent, "Confirm", args, self._confirm)

    async def on_Verify(self, parent: ua.NodeId, *args: Any):
        return await self.handlers.handle(parent, "Verify", args, self._verify)

    def _note_run(self, unit: str, arguments: dict[str, Any]) -> None:
        run = self.steps.run(unit)
        if run.run_id:
            arguments["run_id"] = run.run_id
        if run.operator_step is not None:
            arguments["step"] = run.operator_step.record_id(run.run_id)
            arguments["prompt"] = run.operator_step.prompt

    async def _confirm(self, unit: str, values: list[str], caller: Caller,
                       arguments: dict[str, Any]):
        values_text, signature = values
        answer = parse_values(values_text)
        arguments["values"] = answer
        meaning = parse_signature(signature, arguments)[0]
        self._note_run(unit, arguments)
        check_confirm(self.steps.run(unit), answer, meaning)  # before the password costs anything
        signer = await prove_signer(self.users, caller, signature, arguments)
        waiting = self.steps.confirm(unit, answer, signer)
        status = "verify" if waiting.verify else "done"
        return [ua.Variant(status, S)], f"confirmed '{waiting.prompt}'; {status}"

    async def _verify(self, unit: str, values: list[str], caller: Caller,
                      arguments: dict[str, Any]):
        (signature,) = values
        meaning = parse_signature(signature, arguments)[0]
        self._note_run(unit, arguments)
        check_verify(self.steps.run(unit), caller.name, meaning)
        signer = await prove_signer(self.users, caller, signature, arguments)
        waiting = self.steps.verify(unit, signer)
        arguments["values"] = waiting.values or {}
        return [ua.Variant("done", S)], f"verified '{waiting.prompt}'"
