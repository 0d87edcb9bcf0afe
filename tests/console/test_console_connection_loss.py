"""A console session whose connection to the daemon is lost ends at once, with its own reason.

Why: when the daemon restarts (power cut, `systemctl restart`) or the network fails, the person's
OPC UA session is gone; a console that kept showing the last values would show a stale
temperature as if it were live. So asyncua's watchdog finding a connection dead locks that
person's console session (as the idle lock does, but saying why), their event stream ends with
`event: locked`, and the live feed moves to a session that still works, or waits for the next
sign-in when none does.

Real parts: the daemon's operator server in-process (tests/operator/operator_rig.py), a TCP relay
standing for the network, the console's Starlette app driven over ASGI (no browser), real OPC UA
over loopback. Every wait is on a message (the stream's, the feed's, the session's end), bounded
by `asyncio.wait_for`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from starlette.applications import Starlette
from structlog.testing import capture_logs

from shuttled.console.app import build_app
from shuttled.console.feed import LiveFeed
from shuttled.console.pages_units import HEARTBEAT_S
from shuttled.console.sessions import COOKIE, LockReason, Person, Sessions
from shuttled.console.web import CONNECTION_LOST_MESSAGE, locked_message
from tests.operator import operator_rig
from tests.operator.operator_rig import ACCOUNTS, Daemon

# asyncua's watchdog looks every second (and waits a second for its probe); a stream must end
# well before its next heartbeat would have looked.
NOTICE_S = 5.0


def bounded(work: Awaitable[Any]) -> Awaitable[Any]:
    return asyncio.wait_for(work, NOTICE_S)


async def get(app: Starlette, path: str, token: str, chunks: asyncio.Queue[str]) -> int:
    """GET `path` as a browser holding the session cookie; every body chunk goes to `chunks`
    as the app sends it (so an event stream is watched live); the status when it ends."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("console", 80),
        "headers": [(b"host", b"console"), (b"cookie", f"{COOKIE}={token}".encode())],
    }
    ended = asyncio.Event()
    status = 0
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await ended.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.put_nowait(message.get("body", b"").decode())
            if not message.get("more_body", False):
                ended.set()

    await app(scope, receive, send)
    return status


async def page(app: Starlette, path: str, token: str) -> tuple[int, str]:
    chunks: asyncio.Queue[str] = asyncio.Queue()
    status = await bounded(get(app, path, token, chunks))
    return status, "".join(chunks.get_nowait() for _ in range(chunks.qsize()))


async def until(queue: asyncio.Queue[str], wanted: str) -> str:
    """The first message of `queue` that contains `wanted` (the caller bounds the wait)."""
    while wanted not in (message := await queue.get()):
        pass
    return message


class Link:
    """The network between the console and the daemon: a TCP relay whose connections can be
    cut silently, as an unplugged cable or a dead switch does (no FIN, no RST: the bytes just
    stop), so only asyncua's watchdog can notice. When either side closes, so does the other."""

    def __init__(self, daemon_port: int) -> None:
        self.daemon_port = daemon_port
        self.accepted: list[asyncio.StreamWriter] = []  # the console's ends, in order
        self.cut: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"opc.tcp://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/shuttled"

    def cutter(self) -> Callable[[], None]:
        """Cuts, when called, the connections made so far (not those made later)."""
        so_far = list(self.accepted)
        return lambda: self.cut.update(so_far)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.daemon_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pump(reader, up_writer, writer),
                             self._pump(up_reader, writer, writer))

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                    console_end: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if console_end not in self.cut:
                    sink.write(data)
        except OSError:
            pass
        finally:
            sink.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.accepted:
            writer.close()


async def a_value_arrives(daemon: Daemon, feed: LiveFeed, temperature: float) -> None:
    """The daemon publishes a temperature (as its control tick's mirror does); the feed has it."""
    server, mirror = daemon.server.server, daemon.server.mirror
    assert server is not None and mirror is not None
    updates = feed.listen()
    try:
        await server.write_attribute_value(
            mirror.units["U01"].variables["Temperature.CurrentValue"],
            ua.DataValue(ua.Variant(temperature, ua.VariantType.Double)))
        await bounded(until(updates, f'"temperature": {temperature}'))
    finally:
        feed.forget(updates)
    assert feed.snapshot["U01"]["temperature"] == temperature


async def test_a_lost_connection_locks_the_session_and_the_feed_moves_or_waits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = operator_rig.free_port()
    monkeypatch.setattr(operator_rig, "free_port", lambda: port)  # a restart keeps its port
    daemon = await operator_rig.make_daemon(tmp_path)
    link = Link(port)
    app = build_app(await link.start(), tmp_path / "console-pki", 900.0, secure_cookie=False)
    sessions: Sessions = app.state.console.sessions
    restarted = None
    try:
        with capture_logs() as logs:
            otto = await sessions.sign_in("otto", ACCOUNTS["otto"][1])
            assert sessions.feed.host is otto.conn
            cut_ottos_link = link.cutter()
            sue = await sessions.sign_in("sue", ACCOUNTS["sue"][1])
            await a_network_failure_moves_the_feed(app, sessions, otto, sue, cut_ottos_link)
            await a_value_arrives(daemon, sessions.feed, 36.6)  # in sue's session now
            await a_restart_leaves_the_feed_waiting(daemon, sessions, sue)
        lost = [(e["user"], e["log_level"]) for e in logs
                if e["event"] == "instrument connection lost"]
        assert lost == [("otto", "warning"), ("sue", "warning")]  # once per person

        sessions.feed.snapshot["U99"] = {"unit": "U99"}  # a unit the old daemon had
        restarted = await operator_rig.make_daemon(tmp_path)  # the same port, data and users
        again = await sessions.sign_in("otto", ACCOUNTS["otto"][1])
        assert sessions.feed.host is again.conn
        assert set(sessions.feed.snapshot) == {"U01", "U02"}  # the new daemon's units only
        await a_value_arrives(restarted, sessions.feed, 36.7)
    finally:
        await sessions.close_all()
        link.close()
        for running in (daemon, restarted):
            if running is not None and running.server.server is not None:
                await running.server.stop()


async def a_network_failure_moves_the_feed(app: Starlette, sessions: Sessions, otto: Person,
                                           sue: Person, cut_ottos_link: Callable[[], None]
                                           ) -> None:
    """otto's link goes silent: his stream ends with `event: locked` (woken by the lock, not at
    its next heartbeat), the sign-in page says why, and the feed moves to sue's session."""
    stream: asyncio.Queue[str] = asyncio.Queue()
    events = asyncio.create_task(get(app, "/events", otto.token, stream))
    assert '"full": true' in await bounded(stream.get())  # the stream is open
    cut_ottos_link()
    assert HEARTBEAT_S > NOTICE_S
    await bounded(until(stream, "event: locked"))
    assert await bounded(events) == 200
    assert not sessions.alive(otto) and sessions.was_locked(otto.token)
    assert sessions.lock_reason(otto.token) is LockReason.CONNECTION_LOST
    assert sessions.alive(sue) and not sessions.was_locked(sue.token)

    status, text = await page(app, "/signin", otto.token)
    assert status == 200 and CONNECTION_LOST_MESSAGE in text
    assert "without activity" not in text
    status, text = await page(app, "/", otto.token)
    assert status == 401 and CONNECTION_LOST_MESSAGE in text

    await bounded(sessions.wait_closed())
    assert sessions.feed.host is sue.conn


async def a_restart_leaves_the_feed_waiting(daemon: Daemon, sessions: Sessions,
                                            sue: Person) -> None:
    """The daemon stops (its sockets close): sue is locked too, and nobody hosts the feed."""
    ended: asyncio.Queue[str] = asyncio.Queue()
    sessions.watch_end(sue, ended)
    await daemon.server.stop()
    await bounded(ended.get())
    assert sessions.lock_reason(sue.token) is LockReason.CONNECTION_LOST
    await bounded(sessions.wait_closed())
    assert sessions.feed.host is None


def test_the_sign_in_page_tells_a_lost_connection_from_an_idle_lock() -> None:
    idle = locked_message(900.0)
    lost = locked_message(900.0, LockReason.CONNECTION_LOST)
    assert idle == locked_message(900.0, LockReason.IDLE)
    assert "15 minutes without activity" in idle
    assert lost == CONNECTION_LOST_MESSAGE != idle
    assert "connection to the instrument was lost" in lost
