"""Bioreactor controller driver over OPC UA (asyncua client).

One session per controller; one batched Read for every unit's temperature, volume, heater
readback and installed cartridge, and one batched Write for every unit's heater output, per
control tick, because a round trip per unit would cost more than the control law for the whole
instrument.

The cartridge id (`<unit>/CartridgeId`, String, SPEC §12) rides in that same Read every tick
rather than being read at Start only or every N seconds: it adds one node per unit to a request
that is sent anyway (16 more values of a few bytes, no extra round trip), a controller serves it
from the value its reader latched when the cartridge was clamped in, and a swap is then seen
within one control period — before the next pump command can put one patient's medium into
another patient's cartridge. A controller without that node still works; its units report no
cartridge (None), and the daemon cannot bind their runs to one.

Node ids are resolved once per session from browse paths below each unit's node, so the
configuration names vessels the way an engineer sees them in a browser, and a controller that
renumbers its nodes after a firmware update still works.

Health is reported, never hidden: CONNECTED, DEGRADED (connected, but some unit's values came
back Bad or NaN) or LOST, each change timestamped and kept in `health_changes`. A failed call
marks the driver LOST and raises `DeviceError`; a later call opens a new session with a new client
(asyncua's own reconnect does not recover every lost connection, a new client does). Reconnects
back off exponentially (`backoff_initial_s` doubling up to `backoff_max_s`) on the time source
`now` — the daemon passes its injected clock, so a loss costs the same process time at
`--speed max` as on an instrument — and a call made while backing off fails at once rather than
waiting on a dead endpoint. Every call, the whole connect sequence included, is bounded by
`timeout_s` of real time.

The session is signed and encrypted by default, to a controller whose certificate is in the trust
list (`drivers/bioreactor_security.py`); a username with its password may be added on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from asyncua import Client, ua

from drivers.bioreactor_security import (
    ControllerRefusedUs,
    OpcUaSecurity,
    refusal_of_our_certificate,
)
from drivers.interfaces import DeviceDisconnected, DeviceError, DeviceTimeout

__all__ = ["BioreactorReading", "Health", "HealthChange", "OpcUaBioreactor", "OpcUaSecurity"]

TEMPERATURE = ("FunctionSet", "Temperature", "SensorValue")
HEATER = ("FunctionSet", "Heater", "Output")
VOLUME = ("FunctionSet", "Volume", "SensorValue")
CARTRIDGE = ("CartridgeId",)


@dataclass(frozen=True, slots=True)
class BioreactorReading:
    """One unit's values from one batched read; NaN where the controller gave a Bad status."""

    temperature: float
    volume_ml: float
    cartridge: str | None = None  # the installed cartridge's id; None: not reported or Bad

    @property
    def good(self) -> bool:
        return not (math.isnan(self.temperature) or math.isnan(self.volume_ml))


class Health:
    CONNECTED = "CONNECTED"
    DEGRADED = "DEGRADED"
    LOST = "LOST"


@dataclass(frozen=True, slots=True)
class HealthChange:
    at: float  # on the driver's time source (`now`)
    health: str
    reason: str


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
        security: OpcUaSecurity | None = None,
        now: Callable[[], float] = time.monotonic,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 8.0,
    ) -> None:
        self.endpoint = endpoint
        self.namespace_uri = namespace_uri
        self.unit_nodes = dict(unit_nodes)
        self.timeout_s = timeout_s
        self.security = security or OpcUaSecurity()
        self.now = now
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._username = username
        self._password = password
        self._client: Client | None = None
        self._read_ids: list[ua.NodeId] = []
        self._heater_ids: dict[str, ua.NodeId] = {}
        self._cartridge_units: list[str] = []  # units whose CartridgeId follows the 3 per unit
        self._backoff_s = 0.0
        self._next_attempt = -math.inf
        self._last_failure = ""  # said again while backing off, so an alarm names the cause
        self.connects = 0  # sessions opened, for tests and diagnostics
        self.health = Health.LOST
        self.health_since = now()
        self.health_changes: deque[HealthChange] = deque(maxlen=256)
        self.on_health: Callable[[HealthChange], None] | None = None

    def use_clock(self, now: Callable[[], float]) -> None:
        """Switch the time source (the daemon's injected clock); a pending backoff, measured on
        the old one, ends so the next call tries at once."""
        self.now = now
        self._next_attempt = -math.inf
        self.health_since = now()

    def _set_health(self, health: str, reason: str = "") -> None:
        if health == self.health:
            return
        change = HealthChange(self.now(), health, reason)
        self.health, self.health_since = health, change.at
        self.health_changes.append(change)
        if self.on_health is not None:
            self.on_health(change)

    @property
    def unit_ids(self) -> Sequence[str]:
        return list(self.unit_nodes)

    async def connect(self) -> None:
        """Open a session with a new client and resolve every unit's nodes, within `timeout_s`;
        raises DeviceError if unreachable (and backs off before the next automatic attempt)."""
        client = Client(self.endpoint, timeout=self.timeout_s)
        if self._username is not None:
            client.set_user(self._username)
            client.set_password(self._password or "")
        try:
            if not self.security.insecure:
                self.security.client_certificate()  # first start: made here, not in the timeout
            read_ids, heater_ids, cartridge_units = await asyncio.wait_for(
                self._open(client), self.timeout_s
            )
        except Exception as error:  # asyncua raises more than UaError; none may escape raw
            await _quietly_disconnect(client)
            self._back_off()
            self._set_health(Health.LOST, f"connect failed: {error!r}")
            failure = self._device_error(error)
            self._last_failure = str(failure)
            raise failure from error
        self._client = client
        self._read_ids = read_ids
        self._heater_ids = heater_ids
        self._cartridge_units = cartridge_units
        self._backoff_s = 0.0
        self._next_attempt = -math.inf
        self.connects += 1
        self._set_health(Health.CONNECTED, "session opened")

    def _device_error(self, error: Exception) -> DeviceError:
        """What a failure means, in words an administrator can act on."""
        if isinstance(error, DeviceError):
            return error
        if isinstance(error, TimeoutError):
            return DeviceTimeout(f"bioreactor controller {self.endpoint}: no answer")
        refusal = refusal_of_our_certificate(error)
        if refusal is not None and not self.security.insecure:
            return ControllerRefusedUs(
                self.endpoint, refusal, self.security.client_certificate().certificate
            )
        if isinstance(error, OSError) and error.filename is not None:
            return DeviceError(f"bioreactor controller {self.endpoint}: certificates: "
                               f"{error.strerror}: {error.filename}")
        return DeviceError(f"bioreactor controller {self.endpoint}: {error!r}")

    async def _open(
        self, client: Client
    ) -> tuple[list[ua.NodeId], dict[str, ua.NodeId], list[str]]:
        await self.security.apply(client, self.endpoint)
        await client.connect()
        ns = await client.get_namespace_index(self.namespace_uri)
        read_ids: list[ua.NodeId] = []
        heater_ids: dict[str, ua.NodeId] = {}
        for unit_id, node_name in self.unit_nodes.items():
            unit = client.get_node(ua.NodeId(node_name, ns))
            # The heater output is written every tick and never read back: the Write's status
            # says whether the controller took it, and a read-back would be a third of every
            # tick's Read for a value the control does not use.
            for path in (TEMPERATURE, VOLUME):
                child = await unit.get_child([f"{ns}:{name}" for name in path])
                read_ids.append(child.nodeid)
            heater = await unit.get_child([f"{ns}:{name}" for name in HEATER])
            heater_ids[unit_id] = heater.nodeid
        cartridge_ids: list[ua.NodeId] = []
        cartridge_units: list[str] = []
        for unit_id, node_name in self.unit_nodes.items():
            unit = client.get_node(ua.NodeId(node_name, ns))
            try:
                child = await unit.get_child([f"{ns}:{name}" for name in CARTRIDGE])
            except ua.UaStatusCodeError:  # a controller that does not report cartridges
                continue
            cartridge_ids.append(child.nodeid)
            cartridge_units.append(unit_id)
        return read_ids + cartridge_ids, heater_ids, cartridge_units

    def _back_off(self) -> None:
        self._backoff_s = min(
            self.backoff_max_s, max(self.backoff_initial_s, 2.0 * self._backoff_s)
        )
        self._next_attempt = self.now() + self._backoff_s

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _quietly_disconnect(client, self.timeout_s)
        self._set_health(Health.LOST, "closed")

    async def read_units(self) -> dict[str, BioreactorReading]:
        """Every unit's reading in one Read request. asyncua bounds the request by the client's
        timeout (`timeout_s`), so it is not wrapped in a second one."""
        client = await self._session()
        try:
            values = await client.uaclient.read_attributes(self._read_ids, ua.AttributeIds.Value)
        except Exception as error:
            await self._lose(error)
        readings: dict[str, BioreactorReading] = {}
        bad = []
        first_cartridge = 2 * len(self.unit_nodes)
        cartridges = {
            unit: _as_text(values[first_cartridge + k])
            for k, unit in enumerate(self._cartridge_units)
        }
        for index, unit_id in enumerate(self.unit_nodes):
            temperature, volume = (_as_float(v) for v in values[2 * index : 2 * index + 2])
            readings[unit_id] = BioreactorReading(temperature, volume, cartridges.get(unit_id))
            if not readings[unit_id].good:
                bad.append(unit_id)
        if bad:
            self._set_health(Health.DEGRADED, "no good values for " + ", ".join(bad))
        else:
            self._set_health(Health.CONNECTED, "every unit reads good")
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
            results = await client.uaclient.write_attributes(nodes, values, ua.AttributeIds.Value)
        except Exception as error:
            await self._lose(error)
        return {unit: result.is_good() for unit, result in zip(units, results, strict=True)}

    async def _session(self) -> Client:
        if self._client is None:
            wait = self._next_attempt - self.now()
            if wait > 0:
                raise DeviceDisconnected(
                    f"{self._last_failure or f'bioreactor controller {self.endpoint}: lost'} "
                    f"(reconnecting in {wait:.1f} s)"
                )
            await self.connect()
        assert self._client is not None
        return self._client

    async def _lose(self, error: Exception) -> NoReturn:
        client, self._client = self._client, None
        self._back_off()
        self._set_health(Health.LOST, f"call failed: {error!r}")
        if client is not None:
            await _quietly_disconnect(client, self.timeout_s)
        failure = self._device_error(error)
        self._last_failure = str(failure)
        raise failure from error


def _as_float(value: ua.DataValue) -> float:
    if value.StatusCode is not None and not value.StatusCode.is_good():
        return math.nan
    if value.Value is None or not isinstance(value.Value.Value, int | float):
        return math.nan
    return float(value.Value.Value)


def _as_text(value: ua.DataValue) -> str | None:
    if value.StatusCode is not None and not value.StatusCode.is_good():
        return None
    if value.Value is None or not isinstance(value.Value.Value, str):
        return None
    return value.Value.Value


async def _quietly_disconnect(client: Client, timeout_s: float = 1.0) -> None:
    """Close what is left of a session; a dead peer must not make this wait longer than a call."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), min(timeout_s, 1.0))
