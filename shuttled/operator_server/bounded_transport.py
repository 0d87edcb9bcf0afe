"""The operator port's framing, bounded: a client can make the daemon buffer one chunk, no more.

asyncua's server reads a chunk header and then buffers whatever size the header claims (up to
4 GiB) until the chunk is complete, and a frame it cannot parse is logged with a traceback and
left in the buffer while the connection stays open. On a plant network that lets one client fill
the instrument PC's memory, or the journal with tracebacks, while the control tick shares the
event loop. Here every frame header is checked as soon as its 8 bytes are in: an unknown message
or chunk type, or a chunk larger than the server's receive buffer, closes the connection at once
with one log line. Everything else is handed to asyncua exactly as its own protocol would.

This reaches into asyncua's server internals (OPCUAProtocol, BinaryServer, Server.start), so
asyncua is pinned to a minor version in pyproject.toml and tests/operator/test_port_limits.py
checks the behaviour end to end.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import Any

import structlog
from asyncua import Server
from asyncua.common.utils import Buffer
from asyncua.crypto import uacrypto
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.ua.ua_binary import header_from_binary

from shuttled.operator_server.sign_in_off_loop import OffLoopSignInProcessor

log = structlog.get_logger("shuttled.operator")

MESSAGE_TYPES = frozenset({b"HEL", b"ACK", b"ERR", b"RHE", b"OPN", b"CLO", b"MSG"})
CHUNK_TYPES = frozenset({b"F", b"C", b"A"})
HEADER = struct.Struct("<3scI")
LOGGED_PER_MINUTE = 10  # refusals logged one by one; beyond that, counted into one summary line


class RefusalLog:
    """One line per refused connection up to LOGGED_PER_MINUTE, then a count per minute: a
    flood of bad connections must not flood the journal (nor cost the tick its time)."""

    def __init__(self) -> None:
        self._window_start = -60.0
        self._logged = 0
        self._unlogged = 0

    def refused(self, peer: object, problem: str) -> None:
        now = time.monotonic()
        if now - self._window_start >= 60.0:
            if self._unlogged:
                log.warning("operator connections refused", more=self._unlogged, within_s=60)
            self._window_start, self._logged, self._unlogged = now, 0, 0
        if self._logged < LOGGED_PER_MINUTE:
            self._logged += 1
            log.warning("operator connection refused", peer=str(peer), why=problem)
        else:
            self._unlogged += 1


REFUSALS = RefusalLog()


def frame_problem(header: bytes, max_chunk: int) -> str | None:
    """Why a frame with this 8-byte header must not be buffered, or None when it may."""
    message_type, chunk_type, size = HEADER.unpack(header)
    if message_type not in MESSAGE_TYPES or chunk_type not in CHUNK_TYPES:
        return f"not an OPC UA frame ({header[:4]!r})"
    if size < 8 or size > max_chunk:
        return f"chunk of {size} bytes (limit {max_chunk})"
    return None


class BoundedProtocol(OPCUAProtocol):
    """One client connection with every frame checked before it is buffered, and its sign-in's
    password checked off the event loop (sign_in_off_loop.py)."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if self.processor is not None:  # None: refused at max_connections
            processor = OffLoopSignInProcessor(self.iserver, self.transport, self.limits)
            processor.set_policies(self.policies)
            self.processor = processor

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= HEADER.size:
            problem = frame_problem(self._buffer[: HEADER.size], self.limits.max_recv_buffer)
            if problem is not None:
                self._refuse(problem)
                return
            size = HEADER.unpack_from(self._buffer)[2]
            if len(self._buffer) < size:
                return  # the rest of this chunk is still on its way; it is at most max_chunk
            buf = Buffer(self._buffer[:size])
            try:
                header = header_from_binary(buf)
            except Exception as error:  # a malformed secure-channel header
                self._refuse(f"malformed header: {error}")
                return
            try:
                self.messages.put_nowait((header, buf))
            except asyncio.QueueFull:
                self._refuse(f"more than {self.messages.maxsize} messages waiting")
                return
            self._buffer = self._buffer[size:]

    async def _process_one_msg(self, header: Any, buf: Any) -> bool:
        """A message asyncua cannot process (a chunk out of sequence, a chunk without a secure
        channel...) ends the connection, as OPC UA Part 6 says; asyncua would log a traceback
        and keep the connection open for the next one."""
        try:
            return await super()._process_one_msg(header, buf)
        except Exception as error:
            self._refuse(f"message not processed: {str(error)[:200]}")
            return False

    def _refuse(self, problem: str) -> None:
        REFUSALS.refused(self.peer_name, problem)
        self._buffer = b""
        if self.transport is not None:
            self.transport.close()


class BoundedBinaryServer(BinaryServer):
    def _make_protocol(self) -> OPCUAProtocol:
        return BoundedProtocol(
            iserver=self.iserver,
            policies=self._policies,
            clients=self.clients,
            closing_tasks=self.closing_tasks,
            limits=self.limits,
        )


class BoundedServer(Server):
    """asyncua's Server, listening through BoundedBinaryServer (same start sequence)."""

    async def start(self) -> None:
        if self.iserver.certificate is not None:  # asyncua's warnings about its validity
            uacrypto.check_certificate(
                self.iserver.certificate, self._application_uri, socket.gethostname()
            )
        await self._setup_server_nodes()
        await self.iserver.start()
        try:
            host, port = self._get_bind_socket_info()
            self.bserver = BoundedBinaryServer(self.iserver, host, port, self.limits)  # type: ignore[arg-type]
            self.bserver.set_policies(self._policies)
            await self.bserver.start()
        except Exception:
            await self.iserver.stop()
            raise

