"""shuttlectl's OPC UA session: credentials, the client certificate, and errors as exit codes.

Every failure a user can meet becomes one line and an exit code (SPEC §1): 3 when the daemon
cannot be reached, 1 when it answers but refuses (sign-in, certificate, a method). The client
prefers Basic256Sha256 SignAndEncrypt with its own certificate, made on first use, and falls back
to the next secure policy, and to SecurityPolicy None only if the server offers nothing else.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from asyncua import Client, Node, ua
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from shuttled.cli.common import EXIT_REFUSED, EXIT_UNREACHABLE
from shuttled.client import opcua as client_session
from shuttled.client.opcua import TIMEOUT_S, ClientError, Connection

DEFAULT_ENDPOINT = "opc.tcp://127.0.0.1:4840/shuttled"
# shuttlectl's session is the one every client of the daemon opens (shuttled/client/opcua.py).
Session = Connection


class CtlError(Exception):
    """One line for the user, and the exit code that goes with it."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def default_pki_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "shuttlectl" / "pki"


def read_credentials(user: str | None, password_file: Path | None) -> tuple[str | None, str | None]:
    """`user:password` (as `shuttled simulate` writes it) or just the password."""
    if password_file is None:
        return user, None
    try:
        line = password_file.read_text(encoding="utf-8").strip().splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError) as error:
        raise CtlError(f"cannot read password file {password_file}: {error}") from None
    name, sep, password = line.partition(":")
    if sep and user is None:
        return name, password
    if sep and name == user:
        return user, password
    if user is None:
        raise CtlError(f"{password_file} holds no user name: give --user")
    return user, line


def _status_message(error: UaStatusCodeError) -> str:
    return ua.StatusCode(error.code).name


def _der_of(path: Path) -> bytes:
    """A certificate file's DER bytes, whether the file holds DER or PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        data = path.read_bytes()
    except OSError as error:
        raise CtlError(f"cannot read server certificate {path}: {error.strerror}") from None
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
        return x509.load_der_x509_certificate(data).public_bytes(Encoding.DER)
    except ValueError:
        raise CtlError(f"{path} is not an X.509 certificate (DER or PEM)") from None


def _fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()[:16]


def check_server_certificate(offered: ua.EndpointDescription | None, pinned: Path) -> None:
    """Refuse, before any password is sent, a daemon whose certificate is not the pinned one:
    the endpoint list a client reads first is not authenticated, so without a pin a machine in
    the middle could offer its own certificate and receive the operator's password."""
    expected = _der_of(pinned)
    if offered is None:
        raise CtlError("the daemon offers no secure endpoint, so its certificate cannot be "
                       f"checked against {pinned}")
    actual = bytes(offered.ServerCertificate or b"")
    if actual != expected:
        raise CtlError(f"the daemon's certificate (SHA-256 {_fingerprint(actual)}…) is not the "
                       f"one in {pinned} ({_fingerprint(expected)}…): not signing in")


async def open_session(
    endpoint: str,
    user: str | None,
    password: str | None,
    pki_dir: Path | None,
    server_cert: Path | None = None,
) -> Session:
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    client = Client(endpoint, timeout=TIMEOUT_S)
    if user is not None:
        client.set_user(user)
        client.set_password(password or "")
    certificate_path: Path | None = None
    try:
        chosen = await client_session.choose_endpoint(client)
        if server_cert is not None:
            check_server_certificate(chosen, server_cert)
        policy_name = "None"
        if chosen is not None:
            policy_name, certificate_path = await client_session.secure(
                client, chosen, pki_dir or default_pki_dir(), "shuttlectl")
        await client.connect()
    except (OSError, TimeoutError) as error:
        raise CtlError(f"cannot reach the daemon at {endpoint}: {error or 'timed out'}",
                       EXIT_UNREACHABLE) from None
    except UaStatusCodeError as error:
        raise CtlError(_sign_in_refusal(error, user, certificate_path)) from None
    except UaError as error:
        raise CtlError(f"cannot talk to the daemon at {endpoint}: {error}",
                       EXIT_UNREACHABLE) from None
    try:
        return await client_session.locate_instrument(client, policy_name, user or "")
    except (UaError, OSError, TimeoutError) as error:
        await client.disconnect()
        raise CtlError(f"{endpoint} is not a shuttled operator server: {error}") from None


def _sign_in_refusal(error: UaStatusCodeError, user: str | None, cert: Path | None) -> str:
    code = error.code
    if code in (ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadIdentityTokenRejected,
                ua.StatusCodes.BadIdentityTokenInvalid):
        who = f"user {user}" if user else "an anonymous session (give --user)"
        return f"sign-in refused for {who}: wrong user name or password, or not allowed"
    if code in (ua.StatusCodes.BadCertificateUntrusted, ua.StatusCodes.BadSecurityChecksFailed):
        return (f"the daemon does not trust this client's certificate {cert}; an administrator "
                "must move it from the daemon's pki/rejected to pki/trusted")
    return f"the daemon refused the session: {_status_message(error)}"


async def call(session: Session, target: Node, method: str, args: list[ua.Variant]) -> list[Any]:
    """Call a method; CtlError with the server's one-line reason when it is refused."""
    try:
        return await client_session.call(session, target, method, args)
    except ClientError as error:
        raise CtlError(error.message, EXIT_UNREACHABLE if error.unreachable else EXIT_REFUSED
                       ) from None


def unit_of(session: Session, unit: str) -> Node:
    node = session.units.get(unit)
    if node is None:
        raise CtlError(f"no unit {unit!r} (units: {', '.join(session.units) or 'none'})")
    return node


async def read_paths(session: Session, start: Node, paths: list[tuple[str, ...]]) -> list[Any]:
    """Values at browse paths below `start`, in one TranslateBrowsePaths and one Read request;
    None where a path does not exist."""
    return await client_session.read_paths(session, start, paths)
