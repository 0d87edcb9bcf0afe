"""What every page handler shares: templates, the signed-in person, CSRF, form fields, errors.

Bad input never shows a traceback: a handler raises `PageError` (or ClientError, the daemon's
refusal) and the app renders `error.html` with one sentence and the right status code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse

from shuttled import __version__
from shuttled.console.sessions import COOKIE, Locked, LockReason, Person, Sessions, same_token

HERE = Path(__file__).parent
MAX_FORM_BYTES = 1_000_000  # a protocol file is a few kB; a form is smaller
MAX_TEXT = 2000

# The console's own pages: scripts and styles only from the console itself (no inline script).
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class PageError(Exception):
    """A request the console cannot serve: status, a title and one sentence for the person."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class SignInNeeded(Exception):
    """No (or a locked) session: show the sign-in page with `message`."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Console:
    """The app's state: the endpoint it serves, signed-in people, the feed, the templates."""

    sessions: Sessions
    templates: jinja2.Environment
    secure_cookie: bool
    instrument: str = ""


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True,
    )
    env.globals["version"] = __version__
    env.filters["num"] = _num
    env.filters["hours"] = _hours
    return env


def _num(value: Any, fmt: str = ".3g") -> str:
    if value is None or value == "":
        return "–"
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return str(value)


def _hours(seconds: Any) -> str:
    if seconds is None or seconds == "":
        return "–"
    try:
        total = float(seconds)
    except (TypeError, ValueError):
        return "–"
    if total <= 0:
        return "–"
    return f"{int(total // 3600)} h {int(total % 3600 // 60):02d} min"


def console_of(request: Request) -> Console:
    return request.app.state.console


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    console = console_of(request)
    page = console.templates.get_template(template).render(
        instrument=console.instrument, **context)
    return HTMLResponse(page, status_code=status, headers={"Content-Security-Policy": PAGE_CSP})


CONNECTION_LOST_MESSAGE = ("The connection to the instrument was lost (the daemon restarted or "
                           "the network failed): sign in again.")


def locked_message(idle_lock_s: float, reason: LockReason = LockReason.IDLE) -> str:
    """Why the person must sign in again: a lost connection is not their inactivity, and a
    night shift must not read it as such (the values they saw had stopped being live)."""
    if reason is LockReason.CONNECTION_LOST:
        return CONNECTION_LOST_MESSAGE
    after = f"{idle_lock_s / 60:g} minutes" if idle_lock_s >= 60 else f"{idle_lock_s:g} seconds"
    return f"Your session locked after {after} without activity. Sign in again."


def person_of(request: Request, touch: bool = True) -> Person:
    """The signed-in person, or SignInNeeded (also when the session locked: idle, or its
    connection to the daemon lost)."""
    sessions = console_of(request).sessions
    try:
        person = sessions.find(request.cookies.get(COOKIE))
    except Locked as locked:
        raise SignInNeeded(locked_message(sessions.idle_lock_s, locked.reason)) from None
    if person is None:
        raise SignInNeeded()
    if touch:
        sessions.touch(person)
    return person


async def read_form(request: Request, person: Person | None, expected: str | None = None
                    ) -> FormData:
    """The POSTed form, after its size and CSRF token are checked."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        raise PageError(413, "Too large", "The form is larger than the console accepts (1 MB).")
    try:
        form = await request.form(max_files=1, max_fields=200)
    except Exception:  # python-multipart's parse errors have no common base class
        raise PageError(400, "Malformed form", "The form could not be read. Reload the page "
                        "and try again.") from None
    token = form.get("csrf")
    wanted = person.csrf if person is not None else expected
    if not isinstance(token, str) or not same_token(token, wanted):
        raise PageError(403, "Form expired", "The form's security token does not match your "
                        "session (CSRF check). Reload the page and try again.")
    return form


def field_text(form: FormData, name: str, label: str, required: bool = True,
               max_len: int = MAX_TEXT) -> str:
    value = form.get(name, "")
    if isinstance(value, UploadFile):
        raise PageError(400, "Malformed form", f"{label} must be text.")
    value = (value or "").strip()
    if required and not value:
        raise PageError(400, "Missing input", f"{label} is required.")
    if len(value) > max_len:
        raise PageError(400, "Too long", f"{label} is longer than {max_len} characters.")
    return value


def unit_or_404(person: Person, unit: str) -> str:
    if unit not in person.conn.units:
        raise PageError(404, "Unknown unit", f"There is no unit {unit!r} on this instrument "
                        f"(units: {', '.join(person.conn.units)}).")
    return unit
