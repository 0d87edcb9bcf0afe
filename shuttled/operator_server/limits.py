"""What the operator port accepts from the network, set explicitly instead of asyncua's defaults.

asyncua's defaults suit a server on a trusted desk: up to 1,000 connections, 100 MiB messages, a
parked connection kept for 30 s, no cap on sessions. An instrument's port faces a shared plant
network and has a handful of legitimate clients (the console, an MES or SCADA connection, a few
`shuttlectl` sessions), while its event loop also runs the control tick. So every resource a
client can make the daemon hold is bounded by the configuration ([opcua] in SPEC §2's file):
connections, sessions, message and chunk sizes, how long a connection may stay without an
activated session, and how long an abandoned session lives.
"""

from __future__ import annotations

import math
from typing import Any

from asyncua import ua
from asyncua.common.connection import TransportLimits

from shuttled.config import OperatorServerConfig

CHUNK_BYTES = 65535  # OPC UA's usual receive/send buffer: one chunk of a message


def transport_limits(settings: OperatorServerConfig) -> TransportLimits:
    """Message size caps what one request may make the daemon buffer (a protocol file is at most
    1 MB, a report piece 1 MiB: SPEC §5); chunks follow from it."""
    return TransportLimits(
        max_recv_buffer=CHUNK_BYTES,
        max_send_buffer=CHUNK_BYTES,
        max_chunk_count=math.ceil(settings.max_message_size / CHUNK_BYTES),
        max_message_size=settings.max_message_size,
    )


def apply_limits(server: Any, settings: OperatorServerConfig) -> None:
    """Before `server.start()`: the listener copies the transport limits when it starts."""
    server.limits = transport_limits(settings)
    internal = server.iserver
    internal.max_connections = settings.max_connections
    internal.max_pending_activation_seconds = settings.unactivated_connection_timeout_s
    internal.max_session_timeout_ms = settings.max_session_timeout_s * 1000.0
    internal.max_sessions = settings.max_sessions


def refuse_session_beyond_limit(open_sessions: int, max_sessions: int) -> None:
    """CreateSession past the cap: the standard status code, so a client says what happened."""
    if open_sessions >= max_sessions:
        raise ua.UaStatusCodeError(ua.StatusCodes.BadTooManySessions)
