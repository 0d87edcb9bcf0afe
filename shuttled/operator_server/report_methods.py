"""Run reports over OPC UA: `DeviceSet/<instrument>/Reports` with `Read(RunId, Offset)`.

An extension of SPEC §5 so that `shuttlectl report RUN_ID` works from an operator's or a QA
reviewer's console, as SPEC §1 lists it among the commands over the operator interface. The
report is rendered from the daemon's own journal (`shuttled/reports/html.py`, the same file
`--journal` reads offline) in a worker thread, so a long run's report never stalls the control
loop, and handed out in pieces of at most `CHUNK` bytes so no OPC UA message limit is ever near.
Signed-in users of every role may read reports; anonymous sessions may not. Each report handed
out is audited: who took a copy of a batch record is part of the record.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path
from typing import Any

from asyncua import Node, ua

from shuttled.operator_server.audit_methods import method_argument
from shuttled.operator_server.identity import ANONYMOUS, current_caller
from shuttled.records.audit import AuditTrail

CHUNK = 1 << 20
KEEP_RENDERED = 4  # reports kept between the pieces of one download (and a few repeats)


def _render(journal: Path, run_id: str) -> bytes:
    from shuttled.reports.data import load_report_data
    from shuttled.reports.html import render_report

    return render_report(load_report_data(journal, run_id)).encode("utf-8")


class ReportMethods:
    def __init__(self, journal: Path, audit: AuditTrail) -> None:
        self.journal = journal
        self.audit = audit
        self._rendered: OrderedDict[str, bytes] = OrderedDict()

    async def add_to(self, device: Node, ns: int, instrument_id: str) -> None:
        reports = await device.add_object(
            ua.NodeId(f"{instrument_id}.Reports", ns), ua.QualifiedName("Reports", ns)
        )
        await reports.add_method(
            ua.NodeId(f"{instrument_id}.Reports.Read", ns),
            ua.QualifiedName("Read", ns),
            self.read,
            [method_argument("RunId", ua.ObjectIds.String, "the run (DeviceProgramRunId)"),
             method_argument(
                 "Offset", ua.ObjectIds.UInt32, "first byte of this piece (0: render)"
             )],
            [method_argument(
                "Html", ua.ObjectIds.ByteString, f"at most {CHUNK} bytes of UTF-8 HTML"
            ),
             method_argument(
                 "NextOffset", ua.ObjectIds.UInt32, "where the next piece starts; 0: end"
             )],
        )

    def _refused(self, run_id: str, status: int, message: str) -> ua.CallMethodResult:
        caller = current_caller()
        self.audit.append(user=caller.name, role=caller.role, unit="", method="ReportRead",
                          arguments={"run_id": run_id}, reason="",
                          result=ua.StatusCode(status).name, detail=message)
        return ua.CallMethodResult(
            StatusCode=ua.StatusCode(status),
            InputArgumentDiagnosticInfos=[ua.DiagnosticInfo(AdditionalInfo=message)],
        )

    async def read(self, parent: ua.NodeId, *args: Any) -> Any:
        values = [a.Value if isinstance(a, ua.Variant) else a for a in args]
        run_id = values[0] if values and isinstance(values[0], str) else ""
        if current_caller().role == ANONYMOUS:
            return self._refused(run_id, ua.StatusCodes.BadUserAccessDenied,
                                 "anonymous sessions may not read run reports")
        if len(values) != 2 or not isinstance(values[0], str) or not values[0]:
            return self._refused(run_id, ua.StatusCodes.BadInvalidArgument,
                                 "Read takes RunId (String) and Offset (UInt32)")
        offset = values[1]
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            return self._refused(run_id, ua.StatusCodes.BadInvalidArgument,
                                 "Offset must be a non-negative integer")
        html = self._rendered.get(run_id)
        if offset == 0 or html is None:
            html = await self._render(run_id)
            if isinstance(html, ua.CallMethodResult):
                return html
        if offset > len(html):
            return self._refused(run_id, ua.StatusCodes.BadInvalidArgument,
                                 f"Offset {offset} is past the report's {len(html)} bytes")
        piece = html[offset:offset + CHUNK]
        following = offset + len(piece)
        return [
            ua.Variant(piece, ua.VariantType.ByteString),
            ua.Variant(following if following < len(html) else 0, ua.VariantType.UInt32),
        ]

    async def _render(self, run_id: str) -> bytes | ua.CallMethodResult:
        from shuttled.reports.data import ReportUnavailable

        try:
            html = await asyncio.to_thread(_render, self.journal, run_id)
        except ReportUnavailable as unavailable:
            return self._refused(run_id, ua.StatusCodes.BadInvalidArgument, str(unavailable))
        self._rendered[run_id] = html
        self._rendered.move_to_end(run_id)
        while len(self._rendered) > KEEP_RENDERED:
            self._rendered.popitem(last=False)
        caller = current_caller()
        self.audit.append(user=caller.name, role=caller.role, unit="", method="ReportRead",
                          arguments={"run_id": run_id}, reason="", result="Good",
                          detail=f"{len(html)} bytes")
        return html
