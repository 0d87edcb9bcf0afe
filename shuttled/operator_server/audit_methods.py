"""The audit trail over OPC UA: `DeviceSet/<instrument>/AuditTrail` with Verify and Read.

An extension of SPEC §5 so that `shuttlectl audit verify|log` works from an operator's console,
not only on the daemon's machine. Verify runs every check of audit_verify.py, against the
daemon's own anchors file and instrument key, and names the first problem (`kind`).
Signed-in users of every role may read the trail (QA reviewers are viewers); anonymous sessions
may not. These calls are audited like every other method: who
looked at the trail is part of the trail.
"""

from __future__ import annotations

import json
from typing import Any

from asyncua import Node, ua

from shuttled.operator_server.identity import ANONYMOUS, current_caller
from shuttled.records.audit import AuditTrail

PAGE = 500


def method_argument(name: str, kind: int, description: str) -> ua.Argument:
    """A scalar argument description, for the methods this server adds beyond SPEC §5."""
    argument = ua.Argument()
    argument.Name = name
    argument.DataType = ua.NodeId(kind)
    argument.ValueRank = -1
    argument.ArrayDimensions = []
    argument.Description = ua.LocalizedText(description)
    return argument


class AuditMethods:
    def __init__(self, audit: AuditTrail) -> None:
        self.audit = audit

    async def add_to(self, device: Node, ns: int, instrument_id: str) -> None:
        trail = await device.add_object(
            ua.NodeId(f"{instrument_id}.AuditTrail", ns), ua.QualifiedName("AuditTrail", ns)
        )
        await trail.add_method(
            ua.NodeId(f"{instrument_id}.AuditTrail.Verify", ns),
            ua.QualifiedName("Verify", ns),
            self.verify,
            [],
            [method_argument("Result", ua.ObjectIds.String,
                             "JSON: ok, records, head, broken_record, problem, kind, anchors, "
                             "last_anchor, key_id, notes")],
        )
        await trail.add_method(
            ua.NodeId(f"{instrument_id}.AuditTrail.Read", ns),
            ua.QualifiedName("Read", ns),
            self.read,
            [method_argument(
                "FirstRecord", ua.ObjectIds.UInt32, "sequence number to start at (1)"
            )],
            [method_argument("Records", ua.ObjectIds.String, f"JSON array, at most {PAGE} records"),
             method_argument(
                 "NextRecord", ua.ObjectIds.UInt32, "where the next page starts; 0: end"
             )],
        )

        await trail.add_method(
            ua.NodeId(f"{instrument_id}.AuditTrail.ReadLatest", ns),
            ua.QualifiedName("ReadLatest", ns),
            self.read_latest,
            [method_argument("Unit", ua.ObjectIds.String, "the unit whose records are wanted"),
             method_argument("Count", ua.ObjectIds.UInt32, f"how many, at most {PAGE}")],
            [method_argument("Records", ua.ObjectIds.String, "JSON array, newest first")],
        )

    def _refused(self, method: str, status: int, message: str) -> ua.CallMethodResult:
        caller = current_caller()
        self.audit.append(user=caller.name, role=caller.role, unit="", method=f"Audit{method}",
                          arguments={}, reason="", result=ua.StatusCode(status).name,
                          detail=message)
        return ua.CallMethodResult(
            StatusCode=ua.StatusCode(status),
            InputArgumentDiagnosticInfos=[ua.DiagnosticInfo(AdditionalInfo=message)],
        )

    def _allowed(self, method: str) -> ua.CallMethodResult | None:
        caller = current_caller()
        if caller.role == ANONYMOUS:
            return self._refused(method, ua.StatusCodes.BadUserAccessDenied,
                                 "anonymous sessions may not read the audit trail")
        return None

    async def verify(self, parent: ua.NodeId, *args: Any) -> Any:
        refused = self._allowed("Verify")
        if refused is not None:
            return refused
        if args:
            return self._refused("Verify", ua.StatusCodes.BadTooManyArguments,
                                 "Verify takes no arguments")
        result = self.audit.verify()
        caller = current_caller()
        self.audit.append(user=caller.name, role=caller.role, unit="", method="AuditVerify",
                          arguments={}, reason="", result="Good",
                          detail="intact" if result.ok else result.problem)
        return [ua.Variant(json.dumps(result.to_json()), ua.VariantType.String)]

    async def read(self, parent: ua.NodeId, *args: Any) -> Any:
        refused = self._allowed("Read")
        if refused is not None:
            return refused
        if len(args) != 1:
            return self._refused("Read", ua.StatusCodes.BadInvalidArgument,
                                 "Read takes FirstRecord (UInt32)")
        first = args[0].Value if isinstance(args[0], ua.Variant) else args[0]
        if isinstance(first, bool) or not isinstance(first, int) or first < 0:
            return self._refused("Read", ua.StatusCodes.BadInvalidArgument,
                                 "FirstRecord must be a non-negative integer")
        records = self.audit.page(first, PAGE + 1)
        page, rest = records[:PAGE], records[PAGE:]
        if first <= 1:
            caller = current_caller()
            self.audit.append(user=caller.name, role=caller.role, unit="", method="AuditRead",
                              arguments={"first": first}, reason="", result="Good", detail="")
        return [
            ua.Variant(json.dumps([r.to_dict() for r in page]), ua.VariantType.String),
            ua.Variant(rest[0].seq if rest else 0, ua.VariantType.UInt32),
        ]

    async def read_latest(self, parent: ua.NodeId, *args: Any) -> Any:
        """A unit's newest records: what a console's unit page shows, without paging through
        the whole trail (which grows by every call and alarm of every unit, for years)."""
        refused = self._allowed("ReadLatest")
        if refused is not None:
            return refused
        values = [a.Value if isinstance(a, ua.Variant) else a for a in args]
        if (len(values) != 2 or not isinstance(values[0], str) or isinstance(values[1], bool)
                or not isinstance(values[1], int) or not 0 < values[1] <= PAGE):
            return self._refused("ReadLatest", ua.StatusCodes.BadInvalidArgument,
                                 f"ReadLatest takes Unit (String) and Count (1..{PAGE})")
        unit, count = values
        caller = current_caller()
        # Recorded as a read of the trail, not an action on the unit: page views must not push
        # the unit's own records out of its page.
        self.audit.append(user=caller.name, role=caller.role, unit="", method="AuditRead",
                          arguments={"unit": unit, "latest": count}, reason="", result="Good",
                          detail="")
        records = self.audit.latest(unit, count)
        return [ua.Variant(json.dumps([r.to_dict() for r in records]), ua.VariantType.String)]
