"""Protocols (upload, lifecycle, signatures) and the Start form (SPEC §5, §12, §14).

An upload is LoadProtocol on a unit: a bad file comes back as `LINE:COL: message` lines, shown
each at its line of the file. The Start form offers a protocol's parameters within the bounds of
its template's `Parameters` property (or of its text, for a library protocol not yet on the unit),
and checks them here too so a person sees which field is wrong before the daemon refuses."""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import quote

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from protocols import ProtocolInvalid, load_protocol_text
from shuttled.client.opcua import ClientError, call, read_paths, text
from shuttled.console.pages_units import signature
from shuttled.console.sessions import Person
from shuttled.console.web import PageError, field_text, person_of, read_form, render, unit_or_404

LIFECYCLE = {"submit": ("SubmitProtocol", "authored"), "approve": ("ApproveProtocol", "approved"),
             "retire": ("RetireProtocol", "approved")}
MAX_PROTOCOL_BYTES = 256_000


async def _listing(person: Person) -> list[dict[str, Any]]:
    if not person.can("ListProtocols"):
        return []
    (listing,) = await call(person.conn, await person.conn.child("Protocols"), "ListProtocols",
                            [])
    return json.loads(listing)


async def protocols_page(request: Request) -> Response:
    person = person_of(request)
    return render(request, "protocols.html", person=person, protocols=await _listing(person),
                  units=list(person.conn.units), notice=request.query_params.get("notice", ""),
                  upload=None)


def _located(errors: str, source: str) -> list[dict[str, Any]]:
    """Each `LINE:COL: message` with the line of the file it points at."""
    lines = source.splitlines()
    located = []
    for entry in errors.splitlines():
        where, _, message = entry.partition(": ")
        line_text, _, column = where.partition(":")
        line = int(line_text) if line_text.isdigit() else 0
        located.append({"line": line, "column": column, "message": message or entry,
                        "source": lines[line - 1] if 0 < line <= len(lines) else ""})
    return located


async def upload(request: Request) -> Response:
    person = person_of(request)
    form = await read_form(request, person)
    unit = unit_or_404(person, field_text(form, "unit", "Unit", max_len=20))
    file = form.get("file")
    if not isinstance(file, UploadFile) or not file.filename:
        raise PageError(400, "No file", "Choose a protocol file (YAML) to upload.")
    data = await file.read(MAX_PROTOCOL_BYTES + 1)
    if len(data) > MAX_PROTOCOL_BYTES:
        raise PageError(413, "Too large", "A protocol file may be at most 256 kB.")
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PageError(400, "Not text", f"{file.filename} is not UTF-8 text.") from None
    template_id, errors = await call(person.conn, person.conn.unit(unit), "LoadProtocol",
                                     [text(source)])
    if template_id:
        return RedirectResponse(f"/protocols?notice={quote(f'{template_id} loaded on {unit}')}",
                                status_code=303)
    result = {"filename": file.filename, "errors": _located(errors, source)}
    return render(request, "protocols.html", status=422, person=person, upload=result,
                  protocols=await _listing(person), units=list(person.conn.units), notice="")


async def lifecycle(request: Request) -> Response:
    person = person_of(request)
    action = request.path_params["action"]
    if action not in LIFECYCLE:
        raise PageError(404, "Unknown action", f"{action!r} is not a protocol action.")
    form = await read_form(request, person)
    method, meaning = LIFECYCLE[action]
    template_id = field_text(form, "template_id", "Protocol", max_len=300)
    password = field_text(form, "password", "Password")
    comment = field_text(form, "comment", "Comment", required=False)
    inputs = [text(template_id)]
    if action == "retire":
        inputs.append(text(field_text(form, "reason", "Reason")))
    (state,) = await call(person.conn, await person.conn.child("Protocols"), method,
                          [*inputs, text(signature(meaning, password, comment))])
    notice = f"{template_id}: {state} (signed {meaning} by {person.full_name})"
    return RedirectResponse(f"/protocols?notice={quote(notice)}", status_code=303)


async def _parameters(person: Person, unit: str, template_id: str) -> dict[str, dict[str, Any]]:
    """{name: {default, min, max, unit}} from the unit's template, else from the library text."""
    node = person.conn.unit(unit)
    (found,) = await read_paths(person.conn, node, [
        ("ProgramManager", "ProgramTemplateSet", template_id, "Parameters")])
    if found:
        return json.loads(found)
    (shown,) = await call(person.conn, await person.conn.child("Protocols"), "ShowProtocol",
                          [text(template_id)])
    try:
        protocol = load_protocol_text(json.loads(shown).get("text", ""))
    except (ProtocolInvalid, ValueError):
        return {}
    return {n: {"default": p.default, "min": p.min, "max": p.max, "unit": p.unit}
            for n, p in protocol.parameters.items()}


async def _start_choices(person: Person, unit: str) -> list[str]:
    identities = [p["identity"] for p in await _listing(person)
                  if p.get("state") != "retired"]
    template_set = await person.conn.unit(unit).get_child(
        [f"{person.conn.ns}:ProgramManager", f"{person.conn.ns}:ProgramTemplateSet"])
    for node in await template_set.get_children():
        name = (await node.read_browse_name()).Name
        if name not in identities:
            identities.append(name)
    return identities


async def start_form(request: Request) -> Response:
    person = person_of(request)
    unit = unit_or_404(person, request.path_params["unit"])
    choices = await _start_choices(person, unit)
    chosen = request.query_params.get("protocol", "")
    if chosen and chosen not in choices:
        raise PageError(404, "Unknown protocol", f"{chosen!r} is neither in the library nor "
                        f"loaded on {unit}.")
    parameters = await _parameters(person, unit, chosen) if chosen else {}
    (cartridge,) = await read_paths(person.conn, person.conn.unit(unit), [
        ("ProgramManager", "ActiveProgram", "CartridgeId")])
    return render(request, "start.html", person=person, unit=unit, choices=choices,
                  chosen=chosen, parameters=parameters, cartridge=cartridge or f"CRT-{unit}")


def _checked_parameters(form: Any, bounds: dict[str, dict[str, Any]]) -> dict[str, float]:
    values: dict[str, float] = {}
    for name, bound in bounds.items():
        given = field_text(form, f"param:{name}", name, required=False, max_len=40)
        if not given:
            continue
        try:
            value = float(given)
        except ValueError:
            raise PageError(400, "Not a number", f"Parameter {name} must be a number, not "
                            f"{given!r}.") from None
        low, high = bound.get("min"), bound.get("max")
        if not math.isfinite(value) or (low is not None and value < low) or (
                high is not None and value > high):
            raise PageError(400, "Out of bounds", f"Parameter {name} must be between {low:g} "
                            f"and {high:g}; {given} is not.")
        if value != bound.get("default"):
            values[name] = value
    return values


async def start(request: Request) -> Response:
    person = person_of(request)
    unit = unit_or_404(person, request.path_params["unit"])
    form = await read_form(request, person)
    template_id = field_text(form, "protocol", "Protocol", max_len=300)
    try:
        bounds = await _parameters(person, unit, template_id)
    except ClientError:
        bounds = {}
    parameters = _checked_parameters(form, bounds)
    reason = field_text(form, "reason", "Reason")
    batch = field_text(form, "batch", "Batch", required=False, max_len=64)
    cartridge = field_text(form, "cartridge", "Cartridge", required=False, max_len=64)
    password = field_text(form, "password", "Password", required=False)
    sign = signature("performed", password, field_text(form, "comment", "Comment",
                                                       required=False)) if password else ""
    inputs = [text(template_id), text(json.dumps(parameters)), text(reason)]
    if batch or cartridge or sign:
        inputs += [text(batch), text(cartridge), text(sign)]
    (run_id,) = await call(person.conn, person.conn.unit(unit), "Start", inputs)
    return RedirectResponse(f"/units/{unit}?notice={quote(f'Started {run_id}')}",
                            status_code=303)
