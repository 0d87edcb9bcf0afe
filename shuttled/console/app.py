"""The console's Starlette application: routes, sign-in and sign-out, and the error pages.

Starlette because it is a small, maintained ASGI toolkit whose routing, forms, streaming
responses (server-sent events) and static files are all we need, with nothing to hide what a
request does; Jinja2 renders the pages on the server (autoescaped), so there is no build step.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from shuttled.client.opcua import ClientError
from shuttled.console import pages_protocols, pages_records, pages_units
from shuttled.console.feed import LiveFeed
from shuttled.console.sessions import COOKIE, SIGN_IN_COOKIE, Sessions
from shuttled.console.web import (
    HERE,
    Console,
    PageError,
    SignInNeeded,
    console_of,
    field_text,
    locked_message,
    make_templates,
    person_of,
    read_form,
    render,
)

log = structlog.get_logger("shuttled.console")


def _cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict", path="/",
                        secure=console_of(request).secure_cookie)


def _sign_in_page(request: Request, message: str = "", status: int = 200,
                  user: str = "") -> Response:
    token = secrets.token_urlsafe(32)
    response = render(request, "signin.html", status=status, message=message, csrf=token,
                      user=user, next=_next_of(request))
    _cookie(response, request, SIGN_IN_COOKIE, token)
    return response


def _next_of(request: Request) -> str:
    """Where to go after signing in: a local path only (never another site)."""
    wanted = request.query_params.get("next") or (
        request.url.path if request.method == "GET" and request.url.path != "/signin" else "/")
    parts = urlsplit(wanted)
    if parts.scheme or parts.netloc or not wanted.startswith("/") or wanted.startswith("//"):
        return "/"
    return wanted


async def sign_in_form(request: Request) -> Response:
    sessions = console_of(request).sessions
    reason = sessions.lock_reason(request.cookies.get(COOKIE))
    if reason is not None:
        return _sign_in_page(request, locked_message(sessions.idle_lock_s, reason))
    return _sign_in_page(request)


async def sign_in(request: Request) -> Response:
    console = console_of(request)
    form = await read_form(request, None, expected=request.cookies.get(SIGN_IN_COOKIE))
    user = field_text(form, "user", "User name", max_len=64)
    password = field_text(form, "password", "Password", max_len=1024)
    try:
        person = await console.sessions.sign_in(user, password)
    except ClientError as error:
        log.info("sign-in refused", user=user, status=error.status)
        return _sign_in_page(request, error.message, 503 if error.unreachable else 401, user)
    console.instrument = person.conn.instrument_id
    target = field_text(form, "next", "Next", required=False, max_len=300) or "/"
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    response = RedirectResponse(target, status_code=303)
    _cookie(response, request, COOKIE, person.token)
    response.delete_cookie(SIGN_IN_COOKIE, path="/")
    return response


async def sign_out(request: Request) -> Response:
    person = person_of(request)
    await read_form(request, person)
    await console_of(request).sessions.sign_out(person)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


async def _sign_in_needed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInNeeded)
    if request.url.path == "/events":
        return Response("event: locked\ndata: {}\n\n", media_type="text/event-stream")
    if request.method == "GET":
        return _sign_in_page(request, exc.message, 401)
    return _sign_in_page(request, exc.message or "Sign in first.", 401)


async def _page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    return render(request, "error.html", status=exc.status, title=exc.title,
                  message=exc.message)


async def _refused(request: Request, exc: Exception) -> Response:
    """The daemon refused or did not answer: its one-line reason, never a traceback."""
    assert isinstance(exc, ClientError)
    status = 503 if exc.unreachable else (403 if "AccessDenied" in exc.status else 409)
    return render(request, "error.html", status=status,
                  title="Not reachable" if exc.unreachable else "Refused by the instrument",
                  message=exc.message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    titles = {404: "Not found", 405: "Not allowed"}
    return render(request, "error.html", status=exc.status_code,
                  title=titles.get(exc.status_code, "Error"),
                  message="There is no such page here." if exc.status_code == 404
                  else f"{exc.detail}")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("console error", path=request.url.path)
    return render(request, "error.html", status=500, title="Console error",
                  message="Something went wrong in the console; the instrument is not affected. "
                  "The console's log has the details.")


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    await app.state.console.sessions.close_all()  # every person's OPC UA session, closed


def build_app(endpoint: str, pki_dir: Path, idle_lock_s: float, secure_cookie: bool) -> Starlette:
    feed = LiveFeed()
    sessions = Sessions(endpoint, pki_dir, feed, idle_lock_s)
    u, p, r = pages_units, pages_protocols, pages_records
    routes = [
        Route("/", u.overview),
        Route("/signin", sign_in_form, methods=["GET"]),
        Route("/signin", sign_in, methods=["POST"]),
        Route("/signout", sign_out, methods=["POST"]),
        Route("/events", u.events),
        Route("/units/{unit}", u.unit_page),
        Route("/units/{unit}/history.json", u.history),
        Route("/units/{unit}/command", u.command, methods=["POST"]),
        Route("/units/{unit}/acknowledge", u.acknowledge, methods=["POST"]),
        Route("/units/{unit}/shelve", u.shelve, methods=["POST"]),
        Route("/units/{unit}/confirm", u.confirm, methods=["POST"]),
        Route("/units/{unit}/verify", u.verify, methods=["POST"]),
        Route("/units/{unit}/start", p.start_form, methods=["GET"]),
        Route("/units/{unit}/start", p.start, methods=["POST"]),
        Route("/protocols", p.protocols_page),
        Route("/protocols/upload", p.upload, methods=["POST"]),
        Route("/protocols/{action}", p.lifecycle, methods=["POST"]),
        Route("/runs", r.runs_page),
        Route("/runs/{run_id}/report", r.report),
        Route("/runs/{run_id}/record.{kind}", r.record),
        Route("/runs/{run_id}/{action}", r.sign_record, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={SignInNeeded: _sign_in_needed, PageError: _page_error,
                            ClientError: _refused, HTTPException: _http_error,
                            Exception: _unexpected},
        lifespan=_lifespan,
    )
    app.state.console = Console(sessions, make_templates(), secure_cookie)
    return app
