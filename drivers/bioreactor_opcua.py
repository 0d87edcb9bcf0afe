"""Bioreactor controller driver over OPC UA (asyncua client).

One session per controller; one batched Read for every unit's temperature, volume and heater
readback, and one batched Write for every unit's heater output, per control tick, because a round
trip per unit would cost more than the control law for the whole instrument.

Node ids are resolved once per session from browse paths below each unit's node, so the
configuration names vessels the way an engineer sees them in a browser, and a controller that
renumbers its nodes after a firmware update still works.

Health is reported, never hidden: a failed call marks the driver LOST and raises `DeviceError`;
the next call opens a new session (asyncua's own reconnect does not recover every lost
connection, a new client does).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from asyncua import Client, ua

from drivers.interfaces import DeviceError, DeviceTimeout

TEMPERATURE = ("FunctionSet", "Temperature", "SensorValue")
HEATER = ("FunctionSet", "Heater", "Output")
VOLUME = ("FunctionSet", "Volume", "SensorValue")


@dataclass(frozen=True, slots=True)
class BioreactorReading:
    """One unit's values from one batched read; NaN where the controller gave a Bad status."""

    temperature: float
    volume_ml: float
    heater_pct: float

    @property
    def good(self) -> bool:
        return not (math.isnan(self.temperature) or math.isnan(self.volume_ml))


class Health:
    CONNECTED = "CONNECTED"
    DEGRADED = "DEGRADED"
    LOST = "LOST"


class OpcUaBioreactor:
    """All vessels of one bioreactor controller behind one OPC UA session."""

    def __init__(
        self,
        endpoint: str,
        namespace_uri: str,
        unit_nodes: Mapping[str, str],
        *,
        timeout_s: float = 2.0,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.namespace_uri = namespace_uri
        self.unit_nodes = dict(unit_nodes)
        self.timeout_s = timeout_s
        self._username = username
        self._password = password
        self._client: Client | None = None
        self._read_ids: list[ua.NodeId] = []
        self._heater_ids: dict[str, ua.NodeId] = {}
        self.health = Health.LOST

    @property
    def unit_ids(self) -> Sequence[str]:
        return list(self.unit_nodes)

    async def connect(self) -> None:
        """Open a session and resolve every unit's nodes; raises DeviceError if unreachable."""
        client = Client(self.endpoint, timeout=self.timeout_s)
        if self._username is not None:
            client.set_user(self._username)
            client.set_password(self._password or "")
        try:
            await asyncio.wait_for(client.connect(), self.timeout_s)
            ns = await client.get_namespace_index(self.namespace_uri)
            read_ids: list[ua.NodeId] = []
            heater_ids: dict[str, ua.NodeId] = {}
            for unit_id, node_name in self.unit_nodes.items():
                unit = client.get_node(ua.NodeId(node_name, ns))
                for path in (TEMPERATURE, VOLUME, HEATER):
                    child = await unit.get_child([f"{ns}:{name}" for name in path])
                    read_ids.append(child.nodeid)
                    if path is HEATER:
                        heater_ids[unit_id] = child.nodeid
        except (OSError, TimeoutError, ua.UaError) as error:
            await _quietly_disconnect(client)
            self.health = Health.LOST
            raise DeviceError(f"bioreactor controller {self.endpoint}: {error!r}") from error
        self._client = client
        self._read_ids = read_ids
        self._heater_ids = heater_ids
        self.health = Health.CONNECTED

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _quietly_disconnect(client)
        self.health = Health.LOST

    async def read_units(self) -> dict[str, BioreactorReading]:
        """Every unit's reading in one Read request."""
        client = await self._session()
        try:
            values = await asyncio.wait_for(
                client.uaclient.read_attributes(self._read_ids, ua.AttributeIds.Value),
                self.timeout_s,
            )
        except Exception as error:
            await self._lose(error)
        readings: dict[str, BioreactorReading] = {}
        bad = 0
        for index, unit_id in enumerate(self.unit_nodes):
            temperature, volume, heater = (_as_float(v) for v in values[3 * index : 3 * index + 3])
            readings[unit_id] = BioreactorReading(temperature, volume, heater)
            bad += not readings[unit_id].good
        self.health = Health.DEGRADED if bad else Health.CONNECTED
        return readings

    async def write_heaters(self, outputs_pct: Mapping[str, float]) -> dict[str, bool]:
        """Write heater outputs in one Write request; returns which units accepted theirs."""
        client = await self._session()
        units = [u for u in outputs_pct if u in self._heater_ids]
        nodes = [self._heater_ids[u] for u in units]
        values = [
            ua.DataValue(ua.Variant(float(outputs_pct[u]), ua.VariantType.Double)) for u in units
        ]
        try:
            results = await asyncio.wait_for(
                client.uaclient.write_attributes(nodes, values, ua.AttributeIds.Value),
                self.timeout_s,
            )
        except Exception as error:
            await self._lose(error)
        return {unit: result.is_good() for unit, result in zip(units, results, strict=True)}

    async def _session(self) -> Client:
        if self._client is None:
            await self.connect()
        assert self._client is not None
        return self._client

    async def _lose(self, error: BaseException) -> NoReturn:
        await self.close()
        if isinstance(error, asyncio.TimeoutError | TimeoutError):
            raise DeviceTimeout(f"bioreactor controller {self.endpoint}: no answer") from error
        raise DeviceError(f"bioreactor controller {self.endpoint}: {error!r}") from error


def _as_float(value: ua.DataValue) -> float:
    if value.StatusCode is not None and not value.StatusCode.is_good():
        return math.nan
    if value.Value is None or not isinstance(value.Value.Value, int | float):
        return math.nan
    return float(value.Value.Value)


async def _quietly_disconnect(client: Client) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), 1.0)
