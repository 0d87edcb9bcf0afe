"""Helpers of the GMP tests: calls to the instrument's Protocols and Users methods, signatures."""

from __future__ import annotations

import json

from asyncua import Client, ua
from operator_rig import ACCOUNTS, INSTRUMENT

from shuttled.operator_server.address_space import NAMESPACE_URI


def signature(user: str, meaning: str, comment: str = "", password: str | None = None) -> str:
    return json.dumps({"meaning": meaning, "comment": comment,
                       "password": ACCOUNTS[user][1] if password is None else password})


async def instrument_object(client: Client, folder: str):
    ns = await client.get_namespace_index(NAMESPACE_URI)
    node = await client.nodes.objects.get_child(
        [f"{ns}:DeviceSet", f"{ns}:{INSTRUMENT}", f"{ns}:{folder}"])
    return node, ns


async def call_at(client: Client, folder: str, method: str, *args: str) -> ua.CallMethodResult:
    """The raw result (status code, outputs) of an instrument-level method."""
    node, ns = await instrument_object(client, folder)
    method_node = await node.get_child(f"{ns}:{method}")
    request = ua.CallMethodRequest(
        ObjectId=node.nodeid, MethodId=method_node.nodeid,
        InputArguments=[ua.Variant(a, ua.VariantType.String) for a in args],
    )
    return (await client.uaclient.call([request]))[0]


def reason_of(result: ua.CallMethodResult) -> str:
    infos = result.InputArgumentDiagnosticInfos or []
    return next((d.AdditionalInfo for d in infos if d and d.AdditionalInfo), "")


async def protocol_call(client: Client, method: str, *args: str) -> ua.CallMethodResult:
    return await call_at(client, "Protocols", method, *args)


async def show(client: Client, identity: str) -> dict:
    result = await protocol_call(client, "ShowProtocol", identity)
    assert result.StatusCode.is_good(), reason_of(result)
    return json.loads(result.OutputArguments[0].Value)
