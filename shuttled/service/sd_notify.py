"""systemd's notify protocol in a few lines: one datagram to `$NOTIFY_SOCKET` per message.

Not a dependency on libsystemd or a wrapper package: the protocol is a single `sendto`, and the
service must not fail to start because a helper library is missing. Outside systemd (no
`NOTIFY_SOCKET`) every call does nothing.
"""

from __future__ import annotations

import os
import socket


def notify(*fields: str) -> bool:
    """Send `READY=1`, `STATUS=...`, `WATCHDOG=1`, `STOPPING=1`; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto("\n".join(fields).encode(), address)
        except OSError:
            return False
    return True
