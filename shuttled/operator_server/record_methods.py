"""Batch records over OPC UA (SPEC §12): `DeviceSet/<instrument>/Records` with `Read(RunId,
Format)`, `ReviewRecord(RunId, Signature)` and `ReleaseRecord(RunId, Signature)`.

Every signed-in role may read a record (each copy handed out is audited, like reports);
supervisors and qa review, qa releases. Building a record reads the whole run from the journal,
and the PDF runs a browser: both happen in a worker thread, never on the control loop's event
loop. Calls go through MethodHandlers.handle, so checks and audit are those of every method.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from asyncua import Node, ua

from shuttled.operator_server.address_space import INSTRUMENT_METHOD_SIGNATURES
from shuttled.operator_server.audit_methods import method_argument
from shuttled.operator_server.identity import Caller, UsersFileManager
from shuttled.operator_server.methods import MethodHandlers, Refusal
from shuttled.operator_server.signing import prove_signer
from shuttled.reports.batch_record_html import render_record
from shuttled.reports.batch_record_pdf import write_pdf
from shuttled.reports.record_review import RecordReview

FORMATS = ("json", "html", "pdf")
# browse name -> the method's name in the signature, role and audit tables
METHODS = {"Read": "ReadRecord", "ReviewRecord": "ReviewRecord", "ReleaseRecord": "ReleaseRecord"}


def record_bytes(review: RecordReview, run_id: str, kind: str) -> bytes:
    record = review.record(run_id)
    if kind == "json":
        return json.dumps(record, indent=1, ensure_ascii=False).encode("utf-8")
    html = render_record(record)
    if kind == "html":
        return html.encode("utf-8")
    with tempfile.TemporaryDirectory(prefix="shuttled-record-") as folder:
        output = Path(folder) / "record.pdf"
        if not write_pdf(html, output):
            raise Refusal(ua.StatusCodes.BadNotSupported,
                          "no PDF renderer (Chromium) is installed on the instrument PC")
        return output.read_bytes()


class RecordMethods:
    def __init__(self, handlers: MethodHandlers, review: RecordReview, users: UsersFileManager,
                 instrument_id: str) -> None:
        self.handlers = handlers
        self.review = review
        self.users = users
        self.instrument_id = instrument_id

    async def add_to(self, device: Node, ns: int) -> None:
        node = await device.add_object(ua.NodeId(f"{self.instrument_id}.Records", ns),
                                       ua.QualifiedName("Records", ns))
        self.handlers.units[node.nodeid] = ""
        for browse_name, name in METHODS.items():
            inputs, outputs = INSTRUMENT_METHOD_SIGNATURES[name]
            kinds = {"Record": ua.ObjectIds.ByteString}
            await node.add_method(
                ua.NodeId(f"{self.instrument_id}.Records.{browse_name}", ns),
                ua.QualifiedName(browse_name, ns), self._callback(name),
                [method_argument(n, ua.ObjectIds.String, d) for n, d in inputs],
                [method_argument(n, kinds.get(n, ua.ObjectIds.String), d) for n, d in outputs],
            )

    def _callback(self, name: str):
        act = getattr(self, f"_{name}")

        async def callback(parent: ua.NodeId, *args: Any):
            return await self.handlers.handle(parent, name, args, act)

        return callback

    async def _ReadRecord(self, unit: str, values: list[str], caller: Caller, arguments: dict):
        run_id, kind = values
        arguments.update(run_id=run_id, format=kind)
        if kind not in FORMATS:
            raise Refusal(ua.StatusCodes.BadInvalidArgument,
                          f"Format must be one of {', '.join(FORMATS)}")
        data = await asyncio.to_thread(record_bytes, self.review, run_id, kind)
        return [ua.Variant(data, ua.VariantType.ByteString)], f"{len(data)} bytes"

    async def _ReviewRecord(self, unit: str, values: list[str], caller: Caller, arguments: dict):
        return await self._signed(self.review.check_review, self.review.sign_review, values,
                                  caller, arguments)

    async def _ReleaseRecord(self, unit: str, values: list[str], caller: Caller,
                             arguments: dict):
        return await self._signed(self.review.check_release, self.review.sign_release, values,
                                  caller, arguments)

    async def _signed(self, check, sign, values: list[str], caller: Caller, arguments: dict):
        """The password first, then the record built in a worker thread and checked, then the
        signature written here, on the connections' own thread."""
        run_id, signature = values
        arguments["run_id"] = run_id
        signer = await prove_signer(self.users, caller, signature, arguments)
        record = await asyncio.to_thread(check, run_id, signer)
        state = sign(record, signer)
        return [ua.Variant(state, ua.VariantType.String)], state
