"""Signed-in people: one OPC UA session each, a random cookie, a CSRF token, and the idle lock.

Nothing here stores a password: sign-in hands it to the OPC UA session's ActivateSession and
forgets it; a signing action sends it inside that call. The cookie is a random token that maps
to the person's open session in this process only (a restarted console signs everyone out).
An idle session locks after `idle_lock_s` (SPEC §14: 15 minutes by default): its OPC UA session
is closed, so the daemon, too, sees the person leave. A session whose connection to the daemon is
lost (the daemon restarted, the network failed) ends the same way, at once: the daemon has
forgotten it, and without the password (not kept) it cannot be opened again, so the person signs
in again rather than watching values that no longer change.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import hmac
import json
import secrets
import time
import weakref
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from asyncua.client.ua_client import UaClientState

from shuttled.client.opcua import ClientError, Connection, call, open_connection
from shuttled.console.feed import LiveFeed

log = structlog.get_logger("shuttled.console")

COOKIE = "shuttle_console"
SIGN_IN_COOKIE = "shuttle_sign_in"  # the sign-in form's CSRF token (double-submit)
DEFAULT_IDLE_LOCK_S = 15 * 60.0
MAX_LOCKED_REMEMBERED = 1000
SESSION_ENDED = ": session ended\n\n"  # an SSE comment: wakes an event stream, shows nothing


class LockReason(enum.Enum):
    """Why a console session ended without the person signing out (the sign-in page says it)."""

    IDLE = "idle"
    CONNECTION_LOST = "connection lost"


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
    # The queues of this person's open event streams, woken when the session ends so a stream
    # ends now, not at its next heartbeat (weak: a closed stream's queue just goes away).
    streams: weakref.WeakSet[asyncio.Queue[str]] = field(default_factory=weakref.WeakSet,
                                                         repr=False, compare=False)

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
    """The person's session locked (idle, or its connection lost); they must sign in again."""

    def __init__(self, reason: LockReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


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
        self._locked: dict[str, tuple[float, LockReason]] = {}
        self._reaper: asyncio.Task[None] | None = None
        # Sessions being closed in the background (a lock found by a request or by asyncua's
        # watchdog): held here so they are not garbage-collected half-way, and awaited at exit.
        self._closing: set[asyncio.Task[None]] = set()

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
        # asyncua's watchdog (auto_reconnect stays off: there is no password to reconnect with)
        # calls this once when the daemon is gone; lost before the hook, the session is refused.
        conn.client.connection_lost_callback = functools.partial(self._connection_lost, person)
        if conn.client.state is not UaClientState.CONNECTED:
            await conn.close()
            raise ClientError(f"the connection to the instrument's daemon at {self.endpoint} "
                              "was lost during sign-in", unreachable=True)
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
        """The person behind a cookie; Locked (with why) if their session idled out or lost
        its connection to the daemon (and is now closed)."""
        if not token:
            return None
        reason = self.lock_reason(token)
        if reason is not None:
            raise Locked(reason)
        person = self._people.get(token)
        if person is None:
            return None
        if time.monotonic() - person.last_seen > self.idle_lock_s:
            self._lock(person, LockReason.IDLE)
            self._in_background(self._close(person, "idle lock"))
            raise Locked(LockReason.IDLE)
        return person

    def _lock(self, person: Person, reason: LockReason) -> None:
        self._people.pop(person.token, None)
        self._locked[person.token] = (time.monotonic(), reason)
        while len(self._locked) > MAX_LOCKED_REMEMBERED:
            del self._locked[next(iter(self._locked))]
        self._end_streams(person)

    def was_locked(self, token: str | None) -> bool:
        return self.lock_reason(token) is not None

    def lock_reason(self, token: str | None) -> LockReason | None:
        """Why the session behind this cookie locked; None if it did not (or is forgotten)."""
        locked = self._locked.get(token) if token else None
        return locked[1] if locked is not None else None

    async def _connection_lost(self, person: Person, error: Exception) -> None:
        """asyncua's watchdog found the daemon gone: end the session as the idle lock does.

        The socket is dropped first: on a silent network failure it is still open, and every
        goodbye sent over it (the feed's subscription, the session) would wait out its timeout
        before the feed could move to a working session. Called inside asyncua's connection
        supervisor task, which closing the connection cancels and awaits, so the close runs in
        a task of its own."""
        if self._people.get(person.token) is not person:
            return  # signed out or locked already: the supervisor of a closed session
        log.warning("instrument connection lost", user=person.user,
                    error=str(error) or type(error).__name__)
        person.conn.client.disconnect_socket()
        self._lock(person, LockReason.CONNECTION_LOST)
        self._in_background(self._close(person, "connection lost"))

    def _in_background(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def wait_closed(self) -> None:
        """Wait until every session closing in the background is closed (and the feed moved)."""
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def watch_end(self, person: Person, queue: asyncio.Queue[str]) -> None:
        """An event stream's queue: it gets `SESSION_ENDED` when the person's session ends."""
        person.streams.add(queue)

    def _end_streams(self, person: Person) -> None:
        for queue in list(person.streams):
            with contextlib.suppress(asyncio.QueueFull):  # full: it wakes anyway
                queue.put_nowait(SESSION_ENDED)

    def touch(self, person: Person) -> None:
        person.last_seen = time.monotonic()

    def alive(self, person: Person) -> bool:
        """Still signed in and not idle (the event stream asks; it does not count as use)."""
        return (self._people.get(person.token) is person
                and time.monotonic() - person.last_seen <= self.idle_lock_s)

    async def sign_out(self, person: Person) -> None:
        if self._people.pop(person.token, None) is not None:
            self._end_streams(person)  # the person's other tabs go to the sign-in page
            await self._close(person, "signed out")

    async def _close(self, person: Person, why: str) -> None:
        log.info("session closed", user=person.user, why=why)
        working = [p.conn for p in self._people.values()
                   if p.conn.client.state is UaClientState.CONNECTED]
        await self.feed.detach(person.conn, working)
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
                    self._lock(person, LockReason.IDLE)
                    await self._close(person, "idle lock")

    async def close_all(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for token in list(self._people):
            person = self._people.pop(token)
            await self._close(person, "console stopping")
        await self.wait_closed()


def same_token(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of CSRF tokens; missing on either side is a mismatch."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
