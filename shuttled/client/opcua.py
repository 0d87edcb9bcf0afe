"""One person's OPC UA session with the daemon, as any client of SPEC §5 opens it.

The operator console opens one of these per signed-in person, so every read, call and signature
is that person's and the daemon alone authorizes and audits it. It prefers Basic256Sha256
SignAndEncrypt with a client certificate made on first use (the same choice `shuttlectl` makes),
then the next secure policy, and SecurityPolicy None only if the daemon offers nothing else.

This package imports nothing of the daemon (the namespace URI is SPEC §5's contract, repeated
here): a client must work against any shuttled, or against UaExpert's idea of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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

from drivers.opcua_pki import ensure_certificate

NAMESPACE_URI = "urn:cellshuttle:shuttled"  # SPEC §5
TIMEOUT_S = 10.0
PREFERRED = (SecurityPolicyBasic256Sha256, SecurityPolicyAes256Sha256RsaPss)
_SIGN_IN_REFUSED = (ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadIdentityTokenRejected,
                    ua.StatusCodes.BadIdentityTokenInvalid)


class ClientError(Exception):
    """One sentence for a person; `unreachable` when the daemon did not answer at all."""

    def __init__(self, message: str, unreachable: bool = False, status: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.unreachable = unreachable
        self.status = status  # the OPC UA status code's name, when the daemon refused


@dataclass
class Connection:
    """An open session: the instrument object and its units, found once at sign-in."""

    client: Client
    ns: int
    instrument: Node
    instrument_id: str
    units: dict[str, Node]
    policy: str
    user: str

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.disconnect(), 5)

    def unit(self, unit: str) -> Node:
        node = self.units.get(unit)
        if node is None:
            raise ClientError(f"no unit {unit!r} (units: {', '.join(self.units) or 'none'})")
        return node

    async def child(self, *names: str) -> Node:
        """An object below the instrument, e.g. `child("Protocols")`."""
        return await self.instrument.get_child([f"{self.ns}:{n}" for n in names])


async def choose_endpoint(client: Client) -> ua.EndpointDescription | None:
    endpoints = await client.connect_and_get_server_endpoints()
    for policy in PREFERRED:
        for endpoint in endpoints:
            if (endpoint.SecurityPolicyUri == policy.URI
                    and endpoint.SecurityMode == ua.MessageSecurityMode.SignAndEncrypt):
                return endpoint
    return None


async def secure(client: Client, chosen: ua.EndpointDescription, pki_dir: Path,
                 application: str) -> tuple[str, Path]:
    """SignAndEncrypt with the chosen endpoint's policy and our own certificate (made on first
    use under `pki_dir`); (policy name, certificate path)."""
    policy = next(p for p in PREFERRED if chosen.SecurityPolicyUri == p.URI)
    uri = f"urn:cellshuttle:{application}:{socket.gethostname()}"
    client.application_uri = uri
    own = ensure_certificate(pki_dir, uri, application, server=False)
    await client.set_security(
        policy, str(own.certificate), str(own.private_key),
        server_certificate=chosen.ServerCertificate,
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    return policy.URI.rsplit("#", 1)[-1], own.certificate


async def open_connection(endpoint: str, user: str, password: str, pki_dir: Path,
                          application: str = "console") -> Connection:
    """Sign `user` in; ClientError with a sentence for the sign-in page when it fails. The
    password goes into the session's encrypted ActivateSession and is not kept here."""
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    client = Client(endpoint, timeout=TIMEOUT_S)
    client.set_user(user)
    client.set_password(password)
    policy_name = "None"
    try:
        chosen = await choose_endpoint(client)
        if chosen is not None:
            policy_name, _ = await secure(client, chosen, pki_dir, application)
        await client.connect()
    except (OSError, TimeoutError) as error:
        raise ClientError(f"the instrument's daemon at {endpoint} cannot be reached "
                          f"({error or 'timed out'})", unreachable=True) from None
    except UaStatusCodeError as error:
        if error.code in _SIGN_IN_REFUSED:
            raise ClientError("Sign-in refused: wrong user name or password, or the account "
                              "is locked.", status=ua.StatusCode(error.code).name) from None
        raise ClientError(f"the daemon refused the session: {ua.StatusCode(error.code).name}",
                          status=ua.StatusCode(error.code).name) from None
    except UaError as error:
        raise ClientError(f"cannot talk to the daemon at {endpoint}: {error}",
                          unreachable=True) from None
    try:
        return await locate_instrument(client, policy_name, user)
    except (UaError, OSError, TimeoutError) as error:
        with contextlib.suppress(Exception):
            await client.disconnect()
        raise ClientError(f"{endpoint} is not a shuttled operator server: {error}") from None


async def locate_instrument(client: Client, policy: str, user: str) -> Connection:
    ns = await client.get_namespace_index(NAMESPACE_URI)
    device_set = await client.nodes.objects.get_child(f"{ns}:DeviceSet")
    instruments = await device_set.get_children()
    if not instruments:
        raise UaError("no instrument under DeviceSet")
    instrument = instruments[0]
    instrument_id = (await instrument.read_browse_name()).Name
    unit_set = await instrument.get_child(f"{ns}:FunctionalUnitSet")
    units = {}
    for node in await unit_set.get_children():
        units[(await node.read_browse_name()).Name] = node
    return Connection(client, ns, instrument, instrument_id, dict(sorted(units.items())),
                      policy, user)


def text(value: str) -> ua.Variant:
    return ua.Variant(value, ua.VariantType.String)


def localized(value: str) -> ua.Variant:
    return ua.Variant(ua.LocalizedText(value), ua.VariantType.LocalizedText)


async def call_request(conn: Connection, request: ua.CallMethodRequest, label: str) -> list[Any]:
    """Send one call; ClientError with the daemon's one-line reason when it is refused."""
    try:
        result = (await conn.client.uaclient.call([request]))[0]
    except UaStatusCodeError as error:
        name = ua.StatusCode(error.code).name
        raise ClientError(f"{label} refused: {name}", status=name) from None
    except (OSError, TimeoutError, UaError) as error:
        raise ClientError(f"{label}: lost the connection to the daemon ({error})",
                          unreachable=True) from None
    if not result.StatusCode.is_good():
        reasons = [d.AdditionalInfo for d in result.InputArgumentDiagnosticInfos or []
                   if d and d.AdditionalInfo]
        reason = reasons[0] if reasons else "no reason given"
        name = result.StatusCode.name
        raise ClientError(f"{label} refused: {reason} ({name})", status=name)
    return [v.Value for v in result.OutputArguments or []]


async def call(conn: Connection, target: Node, method: str, args: list[ua.Variant]) -> list[Any]:
    """Call a method of ours by browse name on `target` (a unit or an instrument folder)."""
    try:
        method_node = await target.get_child(f"{conn.ns}:{method}")
    except UaError:
        raise ClientError(f"the daemon has no method {method} here") from None
    request = ua.CallMethodRequest(ObjectId=target.nodeid, MethodId=method_node.nodeid,
                                   InputArguments=args)
    return await call_request(conn, request, method)


async def call_standard(conn: Connection, object_id: str, method: int, label: str,
                        args: list[ua.Variant]) -> list[Any]:
    """A standard method (Acknowledge, TimedShelve2, …) on a condition node given as text."""
    request = ua.CallMethodRequest(ObjectId=ua.NodeId.from_string(object_id),
                                   MethodId=ua.NodeId(method), InputArguments=args)
    return await call_request(conn, request, label)


async def resolve_paths(conn: Connection, start: Node,
                        paths: list[tuple[str, ...]]) -> list[ua.NodeId | None]:
    """Node ids at browse paths below `start` in one TranslateBrowsePaths request."""
    hierarchical = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
    browse_paths = []
    for path in paths:
        elements = [
            ua.RelativePathElement(ReferenceTypeId=hierarchical, IsInverse=False,
                                   IncludeSubtypes=True, TargetName=ua.QualifiedName(n, conn.ns))
            for n in path
        ]
        browse_paths.append(ua.BrowsePath(StartingNode=start.nodeid,
                                          RelativePath=ua.RelativePath(Elements=elements)))
    found = await conn.client.uaclient.translate_browsepaths_to_nodeids(browse_paths)
    return [
        ua.NodeId(r.Targets[0].TargetId.Identifier, r.Targets[0].TargetId.NamespaceIndex)
        if r.StatusCode.is_good() and r.Targets else None
        for r in found
    ]


async def read_paths(conn: Connection, start: Node, paths: list[tuple[str, ...]]) -> list[Any]:
    """Values at browse paths below `start`; None where a path does not exist."""
    ids = await resolve_paths(conn, start, paths)
    present = [conn.client.get_node(i) for i in ids if i is not None]
    values = iter(await conn.client.read_values(present) if present else [])
    return [next(values) if i is not None else None for i in ids]
