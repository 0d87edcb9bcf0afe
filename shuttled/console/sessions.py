"""Signed-in people: one OPC UA session each, a random cookie, a CSRF token, and the idle lock.

Nothing here stores a password: sign-in hands it to the OPC UA session's ActivateSession and
forgets it; a signing action sends it inside that call. The cookie is a random token that maps
to the person's open session in this process only (a restarted console signs everyone out).
An idle session locks after `idle_lock_s` (SPEC §14: 15 minutes by default): its OPC UA session
is closed, so the daemon, too, sees the person leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from shuttled.client.opcua import ClientError, Connection, call, open_connection
from shuttled.console.feed import LiveFeed

log = structlog.get_logger("shuttled.console")

COOKIE = "shuttle_console"
SIGN_IN_COOKIE = "shuttle_sign_in"  # the sign-in form's CSRF token (double-submit)
DEFAULT_IDLE_LOCK_S = 15 * 60.0
MAX_LOCKED_REMEMBERED = 1000


@dataclass
class Person:
    """One signed-in person: their OPC UA session and who the daemon says they are."""

    token: str
    conn: Connection
    user: str
    role: str
    full_name: str
    may: frozenset[str]
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    last_seen: float = field(default_factory=time.monotonic)

    def can(self, method: str) -> bool:
        return method in self.may

    @property
    def commands(self) -> bool:
        """Whether this person may command runs at all (a viewer or QA sees no buttons)."""
        return any(m in self.may for m in ("Hold", "Restart", "Stop", "Abort", "Reset", "Start"))

    @property
    def acknowledges(self) -> bool:
        """SPEC §13: operators and supervisors acknowledge (the daemon checks again)."""
        return self.role in ("operator", "supervisor")

    @property
    def shelves(self) -> bool:
        """SPEC §13: supervisors shelve (the daemon checks again)."""
        return self.role == "supervisor"


class Locked(Exception):
    """The person's session locked while idle; they must sign in again."""


class Sessions:
    """Every signed-in person of this console, keyed by their cookie's token."""

    def __init__(self, endpoint: str, pki_dir: Path, feed: LiveFeed,
                 idle_lock_s: float = DEFAULT_IDLE_LOCK_S) -> None:
        self.endpoint = endpoint
        self.pki_dir = pki_dir
        self.feed = feed
        self.idle_lock_s = idle_lock_s
        self._people: dict[str, Person] = {}
        # Cookies of sessions that locked, so the person is told why they must sign in again
        # (bounded: the oldest are forgotten first).
        self._locked: dict[str, float] = {}
        self._reaper: asyncio.Task[None] | None = None

    async def sign_in(self, user: str, password: str) -> Person:
        """Open the person's OPC UA session; ClientError with a sentence when refused."""
        conn = await open_connection(self.endpoint, user, password, self.pki_dir)
        try:
            identity = await self._identity(conn, user)
        except ClientError:
            await conn.close()
            raise
        person = Person(secrets.token_urlsafe(32), conn, identity["user"], identity["role"],
                        identity.get("full_name", user), frozenset(identity.get("may", ())))
        self._people[person.token] = person
        log.info("signed in", user=person.user, role=person.role, security=conn.policy)
        await self.feed.attach(conn)
        self._start_reaper()
        return person

    async def _identity(self, conn: Connection, user: str) -> dict[str, Any]:
        users = await conn.child("Users")
        (text,) = await call(conn, users, "WhoAmI", [])
        try:
            identity = json.loads(text)
        except ValueError:
            raise ClientError("the daemon's WhoAmI answer is not JSON") from None
        return identity

    def find(self, token: str | None) -> Person | None:
        """The person behind a cookie; Locked if their session idled out (and is now closed)."""
        if not token:
            return None
        if token in self._locked:
            raise Locked()
        person = self._people.get(token)
        if person is None:
            return None
        if time.monotonic() - person.last_seen > self.idle_lock_s:
            self._lock(person)
            asyncio.get_running_loop().create_task(self._close(person, "idle lock"))
            raise Locked()
        return person

    def _lock(self, person: Person) -> None:
        self._people.pop(person.token, None)
        self._locked[person.token] = time.monotonic()
        while len(self._locked) > MAX_LOCKED_REMEMBERED:
            del self._locked[next(iter(self._locked))]

    def was_locked(self, token: str | None) -> bool:
        return bool(token) and token in self._locked

    def touch(self, person: Person) -> None:
        person.last_seen = time.monotonic()

    def alive(self, person: Person) -> bool:
        """Still signed in and not idle (the event stream asks; it does not count as use)."""
        return (self._people.get(person.token) is person
                and time.monotonic() - person.last_seen <= self.idle_lock_s)

    async def sign_out(self, person: Person) -> None:
        if self._people.pop(person.token, None) is not None:
            await self._close(person, "signed out")

    async def _close(self, person: Person, why: str) -> None:
        log.info("session closed", user=person.user, why=why)
        await self.feed.detach(person.conn, [p.conn for p in self._people.values()])
        await person.conn.close()

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        """Close idle sessions even when nobody comes back to trigger the lock."""
        while self._people:
            await asyncio.sleep(min(max(self.idle_lock_s / 4, 0.5), 30.0))
            now = time.monotonic()
            for person in list(self._people.values()):
                if now - person.last_seen > self.idle_lock_s:
                    self._lock(person)
                    await self._close(person, "idle lock")

    async def close_all(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for token in list(self._people):
            person = self._people.pop(token)
            await self._close(person, "console stopping")


def same_token(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of CSRF tokens; missing on either side is a mismatch."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
