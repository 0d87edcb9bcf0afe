"""The unit methods of SPEC §5: authorize, check arguments, act through `Operations`, audit.

Whatever a client sends — wrong types, too few arguments, a megabyte of garbage — the answer is a
status code, never an exception inside asyncua (which would become BadUnexpectedError and look
like a server fault). The order of checks is fixed: the caller's role first (a viewer learns
nothing about the arguments it may not use), then the arguments, then the state. Every call,
allowed or refused, is written to the audit trail before the client gets its answer.

A refusal also carries its one-line reason in the InputArgumentDiagnosticInfos (AdditionalInfo),
which shuttlectl shows; other clients see the standard status code.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from asyncua import ua

from protocols.state_machine import Command
from shuttled.engine.operations import OperationRefused, Operations
from shuttled.engine.protocol_approval import Signer
from shuttled.operator_server.address_space import (
    INSTRUMENT_METHOD_SIGNATURES,
    METHOD_SIGNATURES,
    OPTIONAL_TRAILING_INPUTS,
)
from shuttled.operator_server.identity import (
    METHOD_ROLES,
    Caller,
    UsersFileManager,
    current_caller,
)
from shuttled.records.audit import AuditTrail

log = structlog.get_logger("shuttled.operator")

MAX_TEXT = 1_000_000  # a protocol file is a few kB; refuse what cannot be one
MAX_REASON = 2000

COMMANDS = {
    "Hold": Command.HOLD,
    "Restart": Command.RESTART,
    "Stop": Command.STOP,
    "Abort": Command.ABORT,
    "Reset": Command.RESET,
}


@dataclass
class Refusal(Exception):
    status: int
    message: str
    argument_results: list[int] = field(default_factory=list)


SIGNATURES = {**METHOD_SIGNATURES, **INSTRUMENT_METHOD_SIGNATURES}
Act = Callable[
    [str, list[str], Caller, dict[str, Any]],
    "tuple[list[ua.Variant], str] | Awaitable[tuple[list[ua.Variant], str]]",
]


def _status_name(code: int) -> str:
    return ua.StatusCode(code).name


def _strings(method: str, args: tuple[Any, ...]) -> list[str]:
    """The arguments as strings, in the declared order; Refusal if they are not that."""
    names = [name for name, _ in SIGNATURES[method][0]]
    required = len(names) - OPTIONAL_TRAILING_INPUTS.get(method, 0)
    if required <= len(args) < len(names):  # optional trailing inputs left out: empty
        args = (*args, *([""] * (len(names) - len(args))))
    if len(args) < len(names):
        missing = ", ".join(names[len(args):])
        raise Refusal(ua.StatusCodes.BadArgumentsMissing, f"{method} needs {missing}")
    if len(args) > len(names):
        raise Refusal(
            ua.StatusCodes.BadTooManyArguments,
            f"{method} takes {len(names)} argument(s), got {len(args)}",
        )
    values, results, problems = [], [], []
    for name, arg in zip(names, args, strict=True):
        value = arg.Value if isinstance(arg, ua.Variant) else arg
        if isinstance(arg, ua.Variant) and arg.VariantType == ua.VariantType.Null:
            value = ""
        if not isinstance(value, str):
            results.append(ua.StatusCodes.BadTypeMismatch)
            problems.append(f"{name} must be a String")
            values.append("")
        else:
            results.append(ua.StatusCodes.Good)
            values.append(value)
    if problems:
        raise Refusal(ua.StatusCodes.BadInvalidArgument, "; ".join(problems), results)
    return values


def _parameters(text: str) -> dict[str, float]:
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as error:
        raise Refusal(
            ua.StatusCodes.BadInvalidArgument, f"Parameters is not JSON: {error}"
        ) from None
    if not isinstance(data, dict):
        raise Refusal(ua.StatusCodes.BadInvalidArgument, "Parameters must be a JSON object")
    values = {}
    for name, value in data.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise Refusal(
                ua.StatusCodes.BadInvalidArgument, f"parameter {name!r} must be a finite number"
            )
        values[str(name)] = float(value)
    return values


def _reason(text: str) -> str:
    if not text.strip():
        raise Refusal(ua.StatusCodes.BadInvalidArgument, "a reason is required")
    if len(text) > MAX_REASON:
        raise Refusal(ua.StatusCodes.BadInvalidArgument, f"reason longer than {MAX_REASON}")
    return text.strip()


def _protocol_reference(text: str, template_id: str) -> dict[str, Any]:
    """A protocol by its identity, never its text (the text is in the journal's templates)."""
    if template_id:
        return {"protocol": template_id}
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]
    return {"protocol": "", "sha256": digest, "bytes": len(text.encode("utf-8", "replace"))}


class MethodHandlers:
    """One instance serves every unit; asyncua passes the unit object's node id first."""

    def __init__(
        self,
        operations: Operations,
        audit: AuditTrail,
        after_change: Callable[[str], Awaitable[None]],
    ) -> None:
        self.operations = operations
        self.audit = audit
        self.after_change = after_change
        self.units: dict[ua.NodeId, str] = {}
        self.latencies_ms: deque[float] = deque(maxlen=1000)
        # Who may sign (SPEC §12: Start and Abort are signed in GMP mode); the server sets it.
        self.users: UsersFileManager | None = None

    async def handle(
        self,
        parent: ua.NodeId,
        method: str,
        args: tuple[Any, ...],
        act: Act,
    ) -> ua.CallMethodResult | list[ua.Variant]:
        started = time.perf_counter()
        caller = current_caller()
        unit = self.units.get(parent, str(parent))
        arguments: dict[str, Any] = {}
        reason = ""
        try:
            try:
                values, malformed = _strings(method, args), None
            except Refusal as refusal:
                values, malformed = [], refusal
            names = [name for name, _ in SIGNATURES[method][0]]
            has_reason = "Reason" in names
            reason = values[names.index("Reason")] if values and has_reason else ""
            if caller.role not in METHOD_ROLES[method]:
                if method == "LoadProtocol" and values:
                    arguments.update(_protocol_reference(values[0], ""))
                raise Refusal(
                    ua.StatusCodes.BadUserAccessDenied,
                    f"{caller.name} ({caller.role}) may not call {method}",
                )
            if malformed is not None:
                raise malformed
            if has_reason:
                _reason(reason)
            answer = act(unit, values, caller, arguments)
            outputs, detail = await answer if inspect.isawaitable(answer) else answer
        except Refusal as refusal:
            result = self._refused(refusal, len(args))
            self._audit(caller, unit, method, arguments, reason, refusal.status, refusal.message)
            log.info("method refused", unit=unit, method=method, user=caller.name,
                     status=_status_name(refusal.status), why=refusal.message)
            return result
        except OperationRefused as refused:
            status = (
                ua.StatusCodes.BadInvalidState
                if refused.kind == OperationRefused.STATE
                else ua.StatusCodes.BadInvalidArgument
            )
            self._audit(caller, unit, method, arguments, reason, status, refused.message)
            log.info("method refused", unit=unit, method=method, user=caller.name,
                     status=_status_name(status), why=refused.message)
            return self._refused(Refusal(status, refused.message), len(args))
        except Exception as error:  # never let a bug look like a crash to the client
            log.exception("method failed", unit=unit, method=method)
            status = ua.StatusCodes.BadInternalError
            self._audit(caller, unit, method, arguments, reason, status, str(error))
            return self._refused(Refusal(status, f"internal error: {error}"), len(args))
        self._audit(caller, unit, method, arguments, reason, ua.StatusCodes.Good, detail)
        log.info("method done", unit=unit, method=method, user=caller.name, detail=detail)
        if unit:  # instrument-wide methods change no unit's nodes
            await self.after_change(unit)
        self.latencies_ms.append((time.perf_counter() - started) * 1000.0)
        return outputs

    @staticmethod
    def _refused(refusal: Refusal, argument_count: int) -> ua.CallMethodResult:
        count = max(argument_count, 1)
        results = refusal.argument_results or []
        return ua.CallMethodResult(
            StatusCode=ua.StatusCode(refusal.status),
            InputArgumentResults=[ua.StatusCode(r) for r in results],
            InputArgumentDiagnosticInfos=[
                ua.DiagnosticInfo(AdditionalInfo=refusal.message) for _ in range(count)
            ],
        )

    def _audit(
        self, caller: Caller, unit: str, method: str, arguments: dict[str, Any], reason: str,
        status: int, detail: str,
    ) -> None:
        run = self.operations.runs.get(unit)
        if run is not None and run.batch_id and "batch" not in arguments:
            arguments = {**arguments, "batch": run.batch_id}  # every record of a batch's run
        self.audit.append(
            user=caller.name, role=caller.role, unit=unit, method=method, arguments=arguments,
            reason=reason[:MAX_REASON], result=_status_name(status), detail=detail,
        )

    # --- the methods -----

    def _load(self, unit: str, values: list[str], caller: Caller, arguments: dict[str, Any]):
        (text,) = values
        if len(text) > MAX_TEXT:
            arguments.update(_protocol_reference(text, ""))
            raise Refusal(ua.StatusCodes.BadInvalidArgument, "ProtocolText is too long")
        loaded = self.operations.load_protocol(unit, text, user=caller.name)
        arguments.update(_protocol_reference(text, loaded.template_id))
        errors = "\n".join(loaded.errors)
        detail = loaded.template_id or f"not loaded: {len(loaded.errors)} error(s)"
        return [ua.Variant(loaded.template_id, ua.VariantType.String),
                ua.Variant(errors, ua.VariantType.String)], detail

    async def _start(self, unit: str, values: list[str], caller: Caller,
                     arguments: dict[str, Any]):
        template_id, parameters_text, reason, batch_id, cartridge_id, signature = values
        arguments["template_id"] = template_id
        arguments["parameters"] = parameters_text[:MAX_REASON]
        if batch_id:
            arguments["batch"] = batch_id[:MAX_REASON]
        if cartridge_id:
            arguments["cartridge"] = cartridge_id[:MAX_REASON]
        parameters = _parameters(parameters_text)
        arguments["parameters"] = parameters
        signer = await self._signer(caller, signature, arguments)
        run_id = self.operations.start(unit, template_id or None, parameters, reason, caller.name,
                                       batch_id=batch_id or None,
                                       cartridge_id=cartridge_id or None, signer=signer)
        run = self.operations.runs[unit]
        arguments["protocol"] = run.protocol.identity  # type: ignore[union-attr]
        if run.cartridge_id:
            arguments["cartridge"] = run.cartridge_id  # also one bound without being named
        return [ua.Variant(run_id, ua.VariantType.String)], run_id

    async def _signer(self, caller: Caller, signature: str,
                      arguments: dict[str, Any]) -> Signer | None:
        """The caller proven by the password in `signature` (SPEC §12), or None when none was
        given (Operations refuses that in GMP mode). signing.py imports this module's Refusal,
        so it is imported here, at the first signed call."""
        if not signature.strip():
            return None
        if self.users is None:
            raise Refusal(ua.StatusCodes.BadUserAccessDenied, "no users file to sign with")
        from shuttled.operator_server.signing import prove_signer

        return await prove_signer(self.users, caller, signature, arguments)

    async def _abort(self, unit: str, values: list[str], caller: Caller,
                     arguments: dict[str, Any]):
        reason, signature = values
        run = self.operations.runs.get(unit)
        if run is not None and run.run_id:
            arguments["run_id"] = run.run_id
        signer = await self._signer(caller, signature, arguments)
        self.operations.command(unit, Command.ABORT, reason, caller.name, signer=signer)
        return [], self.operations.runs[unit].state.value

    def _command(self, method: str):
        def act(unit: str, values: list[str], caller: Caller, arguments: dict[str, Any]):
            run = self.operations.runs.get(unit)
            if run is not None and run.run_id:
                arguments["run_id"] = run.run_id
            self.operations.command(unit, COMMANDS[method], values[0], caller.name)
            return [], self.operations.runs[unit].state.value
        return act

    async def on_LoadProtocol(self, parent: ua.NodeId, *args: Any):
        return await self.handle(parent, "LoadProtocol", args, self._load)

    async def on_Start(self, parent: ua.NodeId, *args: Any):
        return await self.handle(parent, "Start", args, self._start)

    async def on_Hold(self, parent: ua.NodeId, *args: Any):
        return await self.handle(parent, "Hold", args, self._command("Hold"))

    async def on_Restart(self, parent: ua.NodeId, *args: Any):
        return await self.handle(parent, "Restart", args, self._command("Restart"))

    async def on_Stop(self, parent: ua.NodeId, *args: Any):
        return await self.handle(parent, "Stop", args, self._command("Stop"))

    async def on_Abort(self, parent: ua.NodeId, *args: Any):
        return await self.handle(parent, "Abort", args, self._abort)

    async def on_Reset(self, parent: ua.NodeId, *args: Any):
        return await self.handle(parent, "Reset", args, self._command("Reset"))
