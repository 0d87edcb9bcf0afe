"""Runs, their reports and batch records, fetched through the person's own session (the daemon
audits every read), and the record's review and release signatures (SPEC §12)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from asyncua import ua
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from shuttled.client.opcua import call, read_paths, text
from shuttled.console.pages_units import signature
from shuttled.console.sessions import Person
from shuttled.console.web import (
    PageError,
    console_of,
    field_text,
    person_of,
    read_form,
    render,
)

ENDED = ("COMPLETE", "STOPPED", "ABORTED")  # SPEC §4: a run in these may be reviewed
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
RECORD_TIMEOUT_S = 300.0  # a long run's record (and its PDF) is made on demand
FORMATS = {"json": "application/json", "html": "text/html; charset=utf-8",
           "pdf": "application/pdf"}
# The daemon's HTML (reports, records) is shown as a document of its own: no script at all.
DOCUMENT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                "sandbox allow-popups allow-modals; frame-ancestors 'self'")


async def _runs(person: Person, snapshot: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    runs = []
    for unit, node in person.conn.units.items():
        result_set = await node.get_child([f"{person.conn.ns}:ProgramManager",
                                           f"{person.conn.ns}:ResultSet"])
        for result in await result_set.get_children():
            run_id = (await result.read_browse_name()).Name
            state, protocol = await read_paths(person.conn, result,
                                               [("State",), ("ProgramTemplateId",)])
            runs.append({"run_id": run_id, "unit": unit, "state": state, "protocol": protocol,
                         "active": False})
        # The unit's current run, unless it has ended and already has its result (an ended run
        # stays the unit's run until Reset, and must be listed once, as ended).
        live = snapshot.get(unit, {})
        if live.get("run_id") and live["run_id"] not in {r["run_id"] for r in runs}:
            runs.append({"run_id": live["run_id"], "unit": unit, "state": live.get("state"),
                         "protocol": live.get("protocol"),
                         "active": live.get("state") not in ENDED})
    return runs


async def runs_page(request: Request) -> Response:
    person = person_of(request)
    runs = await _runs(person, console_of(request).sessions.feed.snapshot)
    return render(request, "runs.html", person=person, runs=runs,
                  notice=request.query_params.get("notice", ""))


def _run_id(request: Request) -> str:
    run_id = request.path_params["run_id"]
    if not RUN_ID.fullmatch(run_id):
        raise PageError(400, "Bad run id", "A run id is letters, digits, '.', '_' and '-'.")
    return run_id


def _document(data: bytes, media_type: str, filename: str) -> Response:
    headers = {"Content-Security-Policy": DOCUMENT_CSP, "Cache-Control": "no-store",
               "X-Content-Type-Options": "nosniff"}
    if media_type == "application/pdf":
        headers["Content-Disposition"] = f'inline; filename="{filename}"'
    return Response(data, media_type=media_type, headers=headers)


async def report(request: Request) -> Response:
    """The run report (Reports.Read), piece by piece as shuttlectl reads it."""
    person = person_of(request)
    run_id = _run_id(request)
    reports = await person.conn.child("Reports")
    person.conn.client.uaclient.protocol.timeout = RECORD_TIMEOUT_S
    html, offset = b"", 0
    for _ in range(10_000):
        piece, following = await call(person.conn, reports, "Read", [
            text(run_id), ua.Variant(offset, ua.VariantType.UInt32)])
        html += piece or b""
        if not following:
            break
        offset = following
    return _document(html, FORMATS["html"], f"{run_id}.html")


async def record(request: Request) -> Response:
    """The batch record (Records.Read) in json, html or pdf."""
    person = person_of(request)
    run_id = _run_id(request)
    kind = request.path_params["kind"]
    if kind not in FORMATS:
        raise PageError(404, "Unknown format", "A batch record is json, html or pdf.")
    records = await person.conn.child("Records")
    person.conn.client.uaclient.protocol.timeout = RECORD_TIMEOUT_S
    (data,) = await call(person.conn, records, "Read", [text(run_id), text(kind)])
    return _document(data or b"", FORMATS[kind], f"record-{run_id}.{kind}")


async def sign_record(request: Request) -> Response:
    person = person_of(request)
    run_id = _run_id(request)
    action = request.path_params["action"]
    methods = {"review": ("ReviewRecord", "reviewed"), "release": ("ReleaseRecord", "released")}
    if action not in methods:
        raise PageError(404, "Unknown action", f"{action!r} is not a record action.")
    form = await read_form(request, person)
    method, meaning = methods[action]
    password = field_text(form, "password", "Password")
    comment = field_text(form, "comment", "Comment", required=False)
    (status,) = await call(person.conn, await person.conn.child("Records"), method,
                           [text(run_id), text(signature(meaning, password, comment))])
    notice = f"{run_id}: {status} (signed {meaning} by {person.full_name})"
    return RedirectResponse(f"/runs?notice={quote(notice)}", status_code=303)
