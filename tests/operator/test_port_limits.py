"""The operator port's limits (operator_server/limits.py), each hit over real loopback TCP.

Sessions beyond `max_sessions` get BadTooManySessions; connections beyond `max_connections` are
closed at once; a connection that never activates a session is closed after
`unactivated_connection_timeout_s`; a chunk announced larger than the receive buffer, chunks
without a secure channel and garbage after a valid Hello end the connection at once, and the
server keeps serving. `max_message_size` becomes asyncua's message and chunk-count limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from pathlib import Path
from urllib.parse import urlparse

import pytest
from asyncua import ua
from asyncua.ua import ua_binary
from operator_rig import connect, make_daemon

from shuttled.config import OperatorServerConfig
from shuttled.operator_server.limits import transport_limits
from shuttled.service.config_file import ConfigError, load_config

WAIT_S = 10.0  # bound on every wait for the server's reaction


def _address(endpoint: str) -> tuple[str, int]:
    url = urlparse(endpoint)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


def hello(receive_buffer: int = 65535, max_message: int = 0) -> bytes:
    """An OPC UA Hello as a client sends it first (Part 6 §7.1.2.3)."""
    body = ua_binary.struct_to_binary(ua.Hello(
        ProtocolVersion=0, ReceiveBufferSize=receive_buffer, SendBufferSize=65535,
        MaxMessageSize=max_message, MaxChunkCount=0, EndpointUrl="opc.tcp://127.0.0.1/shuttled",
    ))  # fmt: skip
    return b"HELF" + struct.pack("<I", len(body) + 8) + body


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Reads until the server closes the connection (True) or WAIT_S passes (False)."""
    try:
        async with asyncio.timeout(WAIT_S):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:  # reset: closed with our bytes still unread
        return True
    return True


async def test_a_session_beyond_max_sessions_is_refused_with_the_standard_code(
    tmp_path: Path,
) -> None:
    daemon = await make_daemon(tmp_path, max_sessions=2)
    clients = []
    try:
        clients = [await connect(daemon.endpoint, "otto"), await connect(daemon.endpoint, "vera")]
        with pytest.raises(ua.UaStatusCodeError) as refused:
            await connect(daemon.endpoint, "sue")
        assert refused.value.code == ua.StatusCodes.BadTooManySessions
        await clients.pop().disconnect()  # a closed session frees its place
        clients.append(await connect(daemon.endpoint, "sue"))
    finally:
        for client in clients:
            await client.disconnect()
        await daemon.server.stop()


async def test_connections_beyond_the_limit_are_closed_and_idle_ones_time_out(
    tmp_path: Path,
) -> None:
    daemon = await make_daemon(tmp_path, max_connections=3, unactivated_connection_timeout_s=1.0)
    host, port = _address(daemon.endpoint)
    streams = [await asyncio.open_connection(host, port) for _ in range(3)]
    try:
        reader, writer = await asyncio.open_connection(host, port)
        assert await closed_by_server(reader)  # the fourth: refused at once
        writer.close()
        # The three that never activated a session are closed after the configured second,
        # which is what frees the port again for legitimate clients.
        for reader, _ in streams:
            assert await closed_by_server(reader)
        client = await connect(daemon.endpoint, "otto")
        await client.disconnect()
    finally:
        for _, writer in streams:
            writer.close()
        await daemon.server.stop()


@pytest.mark.parametrize(
    "attack",
    [
        "chunk larger than the buffer",
        "chunks without a secure channel",
        "garbage after a valid hello",
    ],
)
async def test_oversized_or_garbage_traffic_ends_the_connection_not_the_server(
    tmp_path: Path, attack: str
) -> None:
    daemon = await make_daemon(tmp_path, max_message_size=2 * 1024 * 1024)
    host, port = _address(daemon.endpoint)
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(hello())
        header = await asyncio.wait_for(reader.readexactly(8), WAIT_S)
        assert header[:4] == b"ACKF"
        if attack == "chunk larger than the buffer":
            writer.write(b"MSGF" + struct.pack("<I", 10 * 65535) + b"\0" * 4096)
        elif attack == "chunks without a secure channel":
            chunk = b"MSGC" + struct.pack("<I", 65535) + b"\0" * (65535 - 8)
            writer.write(chunk * 48)  # 3 MiB of intermediate chunks
        else:
            writer.write(bytes(range(256)) * 16)
        with contextlib.suppress(ConnectionError):  # closed while we were still sending
            await writer.drain()
        assert await closed_by_server(reader)
        writer.close()
        client = await connect(daemon.endpoint, "otto")  # and the port still serves
        await client.disconnect()
    finally:
        await daemon.server.stop()


def test_max_message_size_becomes_asyncuas_message_and_chunk_limits() -> None:
    limits = transport_limits(OperatorServerConfig(max_message_size=2 * 1024 * 1024))
    assert limits.max_message_size == 2 * 1024 * 1024
    assert limits.max_recv_buffer == limits.max_send_buffer == 65535
    assert limits.max_chunk_count * 65535 >= 2 * 1024 * 1024 > (limits.max_chunk_count - 1) * 65535
    assert limits.is_msg_size_within_limit(2 * 1024 * 1024)
    assert not limits.is_msg_size_within_limit(2 * 1024 * 1024 + 1)


def test_limits_come_from_the_configuration_and_bad_ones_are_named(tmp_path: Path) -> None:
    base = (Path(__file__).resolve().parents[2] / "systemd" / "shuttled.toml.example").read_text()
    good = tmp_path / "good.toml"
    good.write_text(base.replace("max_sessions = 32", "max_sessions = 4"))
    operator = load_config(good).operator
    assert operator is not None and operator.max_sessions == 4
    assert operator.max_message_size == 4 * 1024 * 1024
    bad = tmp_path / "bad.toml"
    bad.write_text(base.replace("max_connections = 32", "max_connections = 0"))
    with pytest.raises(ConfigError) as error:
        load_config(bad)
    assert "opcua.max_connections" in str(error.value)
    assert "greater than or equal to 1" in str(error.value)
