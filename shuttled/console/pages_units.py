"""The overview, a unit's page and the live event stream; a unit's commands, alarms and
operator steps. Every action is one call in the person's own OPC UA session (SPEC §5, §12, §13)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from asyncua import ua
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from protocols import ProtocolInvalid, load_protocol_text
from shuttled.client.opcua import (
    ClientError,
    call,
    call_standard,
    localized,
    read_paths,
    text,
)
from shuttled.console.sessions import Person
from shuttled.console.web import (
    PageError,
    console_of,
    field_text,
    person_of,
    read_form,
    render,
    unit_or_404,
)

COMMANDS = ("Hold", "Restart", "Stop", "Abort", "Reset")
SIGNED = {"Abort"}  # SPEC §12: Abort (and Start) sign `performed` in GMP mode
HEARTBEAT_S = 10.0
MAX_SHELVE_H = 8.0


async def overview(request: Request) -> Response:
    person = person_of(request)
    feed = console_of(request).sessions.feed
    return render(request, "overview.html", person=person, units=list(person.conn.units),
                  snapshot=feed.snapshot)


async def events(request: Request) -> Response:
    """Server-sent events: the whole snapshot first, then what changed. Watching is not using:
    the stream does not keep an idle session from locking, and it ends when it locks."""
    person = person_of(request, touch=False)
    console = console_of(request)
    feed = console.sessions.feed
    queue = feed.listen()
    console.sessions.watch_end(person, queue)  # a lock or lost connection wakes the stream

    async def stream():
        try:
            while console.sessions.alive(person):
                try:
                    message = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    message = ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                yield message
            yield "event: locked\ndata: {}\n\n"
        finally:
            feed.forget(queue)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def history(request: Request) -> Response:
    person = person_of(request, touch=False)
    unit = unit_or_404(person, request.path_params["unit"])
    return JSONResponse(await console_of(request).sessions.feed.unit_history(person.conn, unit),
                        headers={"Cache-Control": "no-store"})


async def _operator_step(person: Person, protocol_id: str, prompt: str) -> dict[str, Any] | None:
    """The confirm step the unit waits at (its prompt is CurrentStepName), read from the
    running protocol's text, so the form asks for exactly the values the step records."""
    if not protocol_id or not prompt or not person.can("ShowProtocol"):
        return None
    try:
        protocols = await person.conn.child("Protocols")
        (shown,) = await call(person.conn, protocols, "ShowProtocol", [text(protocol_id)])
        protocol = load_protocol_text(json.loads(shown).get("text", ""))
    except (ClientError, ProtocolInvalid, ValueError):
        return None
    for phase in protocol.phases:
        for step in phase.steps:
            if getattr(step, "prompt", None) == prompt:
                return {"prompt": prompt, "record": list(step.record), "verify": step.verify}
    return None


async def _audit_of_unit(person: Person, unit: str, limit: int = 40) -> list[dict[str, Any]]:
    """The unit's newest audit records (who did what, when, why), newest first, read by the
    daemon from the end of the trail rather than paged through here."""
    trail = await person.conn.child("AuditTrail")
    (page,) = await call(person.conn, trail, "ReadLatest",
                         [text(unit), ua.Variant(limit, ua.VariantType.UInt32)])
    return list(json.loads(page))


async def unit_page(request: Request) -> Response:
    person = person_of(request)
    unit = unit_or_404(person, request.path_params["unit"])
    feed = console_of(request).sessions.feed
    values = feed.snapshot.get(unit, {})
    if not values.get("state"):  # before the first notification: read once
        (state,) = await read_paths(person.conn, person.conn.unit(unit), [("State",)])
        values = {**values, "state": state}
    step = await _operator_step(person, values.get("protocol", ""), values.get("step", ""))
    try:
        audit = await _audit_of_unit(person, unit)
    except ClientError:
        audit = []
    # read now, not from the feed: right after an Acknowledge the page must show its result
    alarms = [a for a in await _fresh_alarms(person) if a.get("unit") == unit]
    return render(request, "unit.html", person=person, unit=unit, values=values, step=step,
                  audit=audit, alarms=alarms, commands=COMMANDS, signed=SIGNED,
                  notice=request.query_params.get("notice", ""))


def _back(unit: str, notice: str) -> Response:
    from urllib.parse import quote

    return RedirectResponse(f"/units/{unit}?notice={quote(notice)}", status_code=303)


def signature(meaning: str, password: str, comment: str) -> str:
    """SPEC §12's Signature argument; the password travels only inside this call."""
    return json.dumps({"meaning": meaning, "password": password, "comment": comment})


async def command(request: Request) -> Response:
    person = person_of(request)
    unit = unit_or_404(person, request.path_params["unit"])
    form = await read_form(request, person)
    name = field_text(form, "command", "Command", max_len=20)
    if name not in COMMANDS:
        raise PageError(400, "Unknown command", f"{name!r} is not a command "
                        f"({', '.join(COMMANDS)}).")
    reason = field_text(form, "reason", "Reason")
    inputs = [text(reason)]
    password = field_text(form, "password", "Password", required=False)
    if name in SIGNED and password:
        inputs.append(text(signature("performed", password,
                                     field_text(form, "comment", "Comment", required=False))))
    await call(person.conn, person.conn.unit(unit), name, inputs)
    (state,) = await read_paths(person.conn, person.conn.unit(unit), [("State",)])
    return _back(unit, f"{name} accepted: {unit} is {state}")


def _alarm(feed_alarms: list[dict[str, Any]], unit: str, name: str) -> dict[str, Any]:
    for alarm in feed_alarms:
        if alarm.get("unit") == unit and alarm.get("name") == name:
            return alarm
    raise PageError(404, "Unknown alarm", f"{unit} has no current alarm {name!r}.")


async def _fresh_alarms(person: Person) -> list[dict[str, Any]]:
    """AlarmList read now (the latest EventId is what Acknowledge needs)."""
    (listing,) = await read_paths(person.conn, person.conn.instrument, [("AlarmList",)])
    try:
        return json.loads(listing or "[]")
    except ValueError:
        return []


async def acknowledge(request: Request) -> Response:
    person = person_of(request)
    unit = unit_or_404(person, request.path_params["unit"])
    form = await read_form(request, person)
    alarm = _alarm(await _fresh_alarms(person), unit, field_text(form, "alarm", "Alarm"))
    comment = field_text(form, "comment", "Comment")
    event_id = bytes.fromhex(alarm.get("event_id", ""))
    await call_standard(person.conn, alarm["condition"],
                        ua.ObjectIds.AcknowledgeableConditionType_Acknowledge, "Acknowledge",
                        [ua.Variant(event_id, ua.VariantType.ByteString), localized(comment)])
    return _back(unit, f"{alarm['name']} acknowledged")


async def shelve(request: Request) -> Response:
    person = person_of(request)
    unit = unit_or_404(person, request.path_params["unit"])
    form = await read_form(request, person)
    alarm = _alarm(await _fresh_alarms(person), unit, field_text(form, "alarm", "Alarm"))
    reason = field_text(form, "reason", "Reason")
    try:
        hours = float(field_text(form, "hours", "Hours", max_len=10))
    except ValueError:
        raise PageError(400, "Not a number", "Hours must be a number.") from None
    if not 0 < hours <= MAX_SHELVE_H:
        raise PageError(400, "Out of range", f"Hours must be above 0 and at most "
                        f"{MAX_SHELVE_H:g}.")
    await call_standard(person.conn, alarm["shelving_state"],
                        ua.ObjectIds.ShelvedStateMachineType_TimedShelve2, "Shelve",
                        [ua.Variant(hours * 3600_000.0, ua.VariantType.Double),
                         localized(reason)])
    return _back(unit, f"{alarm['name']} shelved for {hours:g} h")


async def confirm(request: Request) -> Response:
    person = person_of(request)
    unit = unit_or_404(person, request.path_params["unit"])
    form = await read_form(request, person)
    values = {key[len("value:"):]: field_text(form, key, key[len("value:"):], max_len=200)
              for key in form if key.startswith("value:")}
    password = field_text(form, "password", "Password")
    comment = field_text(form, "comment", "Comment", required=False)
    (status,) = await call(person.conn, person.conn.unit(unit), "Confirm",
                           [text(json.dumps(values)), text(signature("performed", password,
                                                                     comment))])
    then = "a second person must now verify it" if status == "verify" else "the run goes on"
    return _back(unit, f"Step confirmed by {person.user}; {then}")


async def verify(request: Request) -> Response:
    person = person_of(request)
    unit = unit_or_404(person, request.path_params["unit"])
    form = await read_form(request, person)
    password = field_text(form, "password", "Password")
    comment = field_text(form, "comment", "Comment", required=False)
    await call(person.conn, person.conn.unit(unit), "Verify",
               [text(signature("verified", password, comment))])
    return _back(unit, f"Step verified by {person.user}")
