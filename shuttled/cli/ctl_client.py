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
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import Client, Node, ua
from asyncua.crypto.security_policies import (
    SecurityPolicyAes256Sha256RsaPss,
    SecurityPolicyBasic256Sha256,
)
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from shuttled.cli.common import EXIT_REFUSED, EXIT_UNREACHABLE
from shuttled.operator_server.address_space import NAMESPACE_URI
from shuttled.operator_server.pki import ensure_certificate

DEFAULT_ENDPOINT = "opc.tcp://127.0.0.1:4840/shuttled"
TIMEOUT_S = 10.0
PREFERRED = (SecurityPolicyBasic256Sha256, SecurityPolicyAes256Sha256RsaPss)


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


@dataclass
class Session:
    client: Client
    ns: int
    instrument: Node
    units: dict[str, Node]
    policy: str


def _status_message(error: UaStatusCodeError) -> str:
    return ua.StatusCode(error.code).name


async def _choose_endpoint(client: Client) -> ua.EndpointDescription | None:
    endpoints = await client.connect_and_get_server_endpoints()
    for policy in PREFERRED:
        for endpoint in endpoints:
            if (endpoint.SecurityPolicyUri == policy.URI
                    and endpoint.SecurityMode == ua.MessageSecurityMode.SignAndEncrypt):
                return endpoint
    return None


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
        chosen = await _choose_endpoint(client)
        if server_cert is not None:
            check_server_certificate(chosen, server_cert)
        policy_name = "None"
        if chosen is not None:
            policy = next(p for p in PREFERRED if chosen.SecurityPolicyUri == p.URI)
            uri = f"urn:cellshuttle:shuttlectl:{socket.gethostname()}"
            client.application_uri = uri
            own = ensure_certificate(pki_dir or default_pki_dir(), uri, "shuttlectl", server=False)
            certificate_path = own.certificate
            await client.set_security(
                policy, str(own.certificate), str(own.private_key),
                server_certificate=chosen.ServerCertificate,
                mode=ua.MessageSecurityMode.SignAndEncrypt,
            )
            policy_name = policy.URI.rsplit("#", 1)[-1]
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
        return await _locate(client, policy_name)
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


async def _locate(client: Client, policy: str) -> Session:
    ns = await client.get_namespace_index(NAMESPACE_URI)
    device_set = await client.nodes.objects.get_child(f"{ns}:DeviceSet")
    instruments = await device_set.get_children()
    if not instruments:
        raise UaError("no instrument under DeviceSet")
    instrument = instruments[0]
    unit_set = await instrument.get_child(f"{ns}:FunctionalUnitSet")
    units = {}
    for node in await unit_set.get_children():
        units[(await node.read_browse_name()).Name] = node
    return Session(client, ns, instrument, units, policy)


async def call(session: Session, target: Node, method: str, args: list[ua.Variant]) -> list[Any]:
    """Call a method; CtlError with the server's one-line reason when it is refused."""
    method_node = await target.get_child(f"{session.ns}:{method}")
    request = ua.CallMethodRequest(
        ObjectId=target.nodeid, MethodId=method_node.nodeid, InputArguments=args
    )
    try:
        result = (await session.client.uaclient.call([request]))[0]
    except UaStatusCodeError as error:
        raise CtlError(f"{method} refused: {_status_message(error)}") from None
    if not result.StatusCode.is_good():
        reasons = [d.AdditionalInfo for d in result.InputArgumentDiagnosticInfos or []
                   if d and d.AdditionalInfo]
        reason = reasons[0] if reasons else "no reason given"
        raise CtlError(f"{method} refused: {reason} ({result.StatusCode.name})")
    return [v.Value for v in result.OutputArguments or []]


def unit_of(session: Session, unit: str) -> Node:
    node = session.units.get(unit)
    if node is None:
        raise CtlError(f"no unit {unit!r} (units: {', '.join(session.units) or 'none'})")
    return node


async def read_paths(session: Session, start: Node, paths: list[tuple[str, ...]]) -> list[Any]:
    """Values at browse paths below `start`, in one TranslateBrowsePaths and one Read request;
    None where a path does not exist."""
    hierarchical = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
    browse_paths = []
    for path in paths:
        elements = [
            ua.RelativePathElement(
                ReferenceTypeId=hierarchical, IsInverse=False, IncludeSubtypes=True,
                TargetName=ua.QualifiedName(name, session.ns),
            )
            for name in path
        ]
        browse_paths.append(ua.BrowsePath(StartingNode=start.nodeid,
                                          RelativePath=ua.RelativePath(Elements=elements)))
    found = await session.client.uaclient.translate_browsepaths_to_nodeids(browse_paths)
    ids = [
        ua.NodeId(r.Targets[0].TargetId.Identifier, r.Targets[0].TargetId.NamespaceIndex)
        if r.StatusCode.is_good() and r.Targets else None
        for r in found
    ]
    present = [session.client.get_node(i) for i in ids if i is not None]
    values = iter(await session.client.read_values(present) if present else [])
    return [next(values) if i is not None else None for i in ids]
