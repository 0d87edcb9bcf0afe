"""The simulated bioreactor controller: a real asyncua OPC UA server over the plant's arrays.

Shaped like the LADS bioreactor companion models: one functional unit per vessel under
`DeviceSet/<controller>/FunctionalUnitSet/<unit>`, each with a function set holding a temperature
sensor, a writable heater output, a stirrer and the liquid volume. The daemon's driver reaches it
exactly as it would reach a vendor's controller: over TCP, by browse paths.

Values are served from callbacks over the plant's measurement arrays, so a read always sees the
latest physics step without copying every value into the address space after every step. Writes
to the heater are checked before they reach the plant: NaN, infinities and values outside
0–100 % are refused with a Bad status, as a real controller refuses them.

It is secured as a plant's controller should be: Basic256Sha256 and Aes256_Sha256_RsaPss with
SignAndEncrypt, its own certificate (made on first start under `pki_dir/own`), and only clients
whose certificate is in `pki_dir/trusted` (an unknown one is refused and copied to
`pki_dir/rejected`). SecurityPolicy None is offered only with `allow_insecure`.

It listens on loopback unless told another interface (`host`, `shuttle-sim --listen`): on a
hardware-in-the-loop bench the daemon reaches it over the plant network, as it would the vendor's
controller, and only the trust list keeps strangers out.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import structlog
from asyncua import Server, ua
from asyncua.server.address_space import AttributeService

from drivers.bioreactor_security import OpcUaSecurity
from drivers.opcua_pki import (
    OwnCertificate,
    TrustList,
    copy_into,
    ensure_certificate,
    own_paths,
)
from simulators.cartridges import installed

NAMESPACE_URI = "urn:cellshuttle:sim-bioreactor"
APPLICATION_URI = "urn:cellshuttle:sim-bioreactor-controller"
CONTROLLER_NAME = "BRC-SIM"
SECURE_POLICIES = [
    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
]

log = structlog.get_logger("simulators.opcua")

# Browse paths below a unit, shared with the driver's configuration of this controller.
TEMPERATURE_PATH = ("FunctionSet", "Temperature", "SensorValue")
HEATER_PATH = ("FunctionSet", "Heater", "Output")
STIRRER_PATH = ("FunctionSet", "Stirrer", "CurrentValue")
VOLUME_PATH = ("FunctionSet", "Volume", "SensorValue")
CARTRIDGE_PATH = ("CartridgeId",)  # String: the installed single-use cartridge (SPEC §12)

WriteCheck = Callable[[object], ua.StatusCode | None]


class _CheckedAttributeService(AttributeService):
    """Refuses writes that fail a per-node check, item by item, before asyncua stores them."""

    def __init__(self, inner: AttributeService, checks: dict[ua.NodeId, WriteCheck]) -> None:
        super().__init__(inner._aspace)
        self._checks = checks

    async def write(self, params: ua.WriteParameters, user=None) -> list[ua.StatusCode]:  # type: ignore[override]
        results: list[ua.StatusCode | None] = []
        accepted: list[ua.WriteValue] = []
        for item in params.NodesToWrite:
            check = self._checks.get(item.NodeId)
            value = item.Value.Value.Value if item.Value and item.Value.Value else None
            refusal = check(value) if check and item.AttributeId == ua.AttributeIds.Value else None
            results.append(refusal)
            if refusal is None:
                accepted.append(item)
        inner_params = ua.WriteParameters(NodesToWrite=accepted)
        kwargs = {} if user is None else {"user": user}
        inner_results = iter(await super().write(inner_params, **kwargs) if accepted else [])
        return [r if r is not None else next(inner_results) for r in results]


def check_heater_output(value: object) -> ua.StatusCode | None:
    """A heater output is a finite percentage; anything else must not reach the heater."""
    if not isinstance(value, float) or not math.isfinite(value):
        return ua.StatusCode(ua.StatusCodes.BadOutOfRange)
    if not 0.0 <= value <= 100.0:
        return ua.StatusCode(ua.StatusCodes.BadOutOfRange)
    return None


@dataclass
class ControllerArrays:
    """The plant-side arrays this server reads from and writes to (owned by the instrument)."""

    measured_temperature: np.ndarray
    volume_ml: np.ndarray
    heater_pct: np.ndarray
    stirrer_rpm: np.ndarray
    available: list[bool]  # False while a fault makes the controller unreachable for a unit
    # The cartridge installed in each unit; empty: `CRT-<unit>` for every unit (filled by the
    # server), changed in place by `shuttle-sim --cartridge` and the cartridge_swap fault.
    cartridges: list[str] = field(default_factory=list)


def free_loopback_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` (loopback by default) that nothing listens on right now (for port
    0 = "any")."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


WILDCARD_HOSTS = ("0.0.0.0", "::")


def endpoint_url(host: str, port: int) -> str:
    """The URL clients use for a controller listening on `host`: every interface (0.0.0.0, ::)
    is reached by this machine's name; an IPv6 address goes in brackets."""
    if host in WILDCARD_HOSTS:
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"opc.tcp://{host}:{port}/bioreactor"


class _ClientTrustList(TrustList):
    def refused(self, copied_to: Path) -> None:
        log.warning("simulated controller refused a client certificate: not in its trust list",
                    copied_to=str(copied_to), trust_it_by_copying_to=str(self.trusted_dir))


class SimulatedBioreactorServer:
    """One OPC UA server for the instrument's bioreactor controller, all units in one namespace."""

    def __init__(
        self,
        unit_ids: list[str],
        arrays: ControllerArrays,
        port: int,
        *,
        pki_dir: Path,
        allow_insecure: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        self.unit_ids = unit_ids
        self.arrays = arrays
        self.host = host
        self.port = port or free_loopback_port(host)
        self.endpoint = endpoint_url(host, self.port)  # what clients connect to
        self.pki_dir = pki_dir
        self.allow_insecure = allow_insecure
        self.trust_list = _ClientTrustList(pki_dir)
        self._server: Server | None = None
        self.suspended = False
        if len(arrays.cartridges) != len(unit_ids):
            arrays.cartridges[:] = installed(unit_ids)

    def own_certificate(self) -> OwnCertificate:
        """The controller's certificate and key, made on first use."""
        return ensure_certificate(self.pki_dir / "own", APPLICATION_URI,
                                  "Cell Shuttle simulated bioreactor controller", server=True)

    @property
    def certificate(self) -> Path:
        """The controller's certificate (DER), for a client's trust list; made by `start`."""
        return own_paths(self.pki_dir / "own").certificate

    def trust_client(self, certificate: Path) -> Path:
        """Admit a client by its certificate, as a controller's administrator would."""
        return copy_into(certificate, self.trust_list.trusted_dir)

    def client_security(self, pki_dir: Path, policy: str = "Basic256Sha256") -> OpcUaSecurity:
        """A driver's security for this controller on a test bench: the driver's certificate
        made under `pki_dir`, and each side's certificate in the other's trust list."""
        security = OpcUaSecurity(policy, pki_dir=str(pki_dir))
        self.trust_client(security.client_certificate().certificate)
        copy_into(self.own_certificate().certificate, pki_dir / "trusted")
        return security

    async def start(self) -> None:
        server = Server()
        await server.init()
        bind_host = f"[{self.host}]" if ":" in self.host else self.host
        server.set_endpoint(f"opc.tcp://{bind_host}:{self.port}/bioreactor")
        server.set_server_name("Cell Shuttle simulated bioreactor controller")
        await server.set_application_uri(APPLICATION_URI)
        own = self.own_certificate()
        await server.load_certificate(str(own.certificate))
        await server.load_private_key(str(own.private_key))
        policies = list(SECURE_POLICIES)
        if self.allow_insecure:
            policies.insert(0, ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies)
        server.set_certificate_validator(self.trust_list)
        ns = await server.register_namespace(NAMESPACE_URI)
        checks: dict[ua.NodeId, WriteCheck] = {}

        device_set = await server.nodes.objects.add_object(
            ua.NodeId("DeviceSet", ns), ua.QualifiedName("DeviceSet", ns)
        )
        controller = await device_set.add_object(
            ua.NodeId(CONTROLLER_NAME, ns), ua.QualifiedName(CONTROLLER_NAME, ns)
        )
        unit_set = await controller.add_object(
            ua.NodeId(f"{CONTROLLER_NAME}.FunctionalUnitSet", ns),
            ua.QualifiedName("FunctionalUnitSet", ns),
        )
        for index, unit_id in enumerate(self.unit_ids):
            unit = await unit_set.add_object(ua.NodeId(unit_id, ns), ua.QualifiedName(unit_id, ns))
            function_set = await unit.add_object(
                ua.NodeId(f"{unit_id}.FunctionSet", ns), ua.QualifiedName("FunctionSet", ns)
            )
            for function, variable, source, writable in (
                ("Temperature", "SensorValue", self.arrays.measured_temperature, False),
                ("Heater", "Output", self.arrays.heater_pct, True),
                ("Stirrer", "CurrentValue", self.arrays.stirrer_rpm, False),
                ("Volume", "SensorValue", self.arrays.volume_ml, False),
            ):
                folder = await function_set.add_object(
                    ua.NodeId(f"{unit_id}.{function}", ns), ua.QualifiedName(function, ns)
                )
                node = await folder.add_variable(
                    ua.NodeId(f"{unit_id}.{function}.{variable}", ns),
                    ua.QualifiedName(variable, ns),
                    ua.Variant(0.0, ua.VariantType.Double),
                )
                server.iserver.aspace.set_attribute_value_callback(
                    node.nodeid, ua.AttributeIds.Value, self._reader(source, index)
                )
                if writable:
                    await node.set_writable(True)
                    checks[node.nodeid] = check_heater_output
                    server.iserver.aspace.set_attribute_value_setter(
                        node.nodeid, ua.AttributeIds.Value, self._writer(source, index)
                    )
            await self._add_cartridge(server, unit, unit_id, index, ns)
        server.iserver.attribute_service = _CheckedAttributeService(
            server.iserver.attribute_service, checks
        )
        await server.start()
        self._server = server

    async def _add_cartridge(self, server: Server, unit: object, unit_id: str, index: int,
                             ns: int) -> None:
        """`<unit>/CartridgeId` (String), read-only, served from `arrays.cartridges`."""
        node = await unit.add_variable(  # type: ignore[attr-defined]
            ua.NodeId(f"{unit_id}.CartridgeId", ns), ua.QualifiedName(CARTRIDGE_PATH[0], ns),
            ua.Variant("", ua.VariantType.String),
        )

        def read(_nodeid: ua.NodeId, _attr: ua.AttributeIds) -> ua.DataValue:
            if not self.arrays.available[index]:
                return ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadCommunicationError))
            return ua.DataValue(ua.Variant(self.arrays.cartridges[index], ua.VariantType.String))

        server.iserver.aspace.set_attribute_value_callback(node.nodeid, ua.AttributeIds.Value, read)

    def _reader(self, source: np.ndarray, index: int):
        def read(_nodeid: ua.NodeId, _attr: ua.AttributeIds) -> ua.DataValue:
            if not self.arrays.available[index]:
                return ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadCommunicationError))
            return ua.DataValue(ua.Variant(float(source[index]), ua.VariantType.Double))

        return read

    def _writer(self, target: np.ndarray, index: int):
        def write(_node: object, _attr: ua.AttributeIds, value: ua.DataValue) -> None:
            if value.Value is not None and value.Value.Value is not None:
                target[index] = float(value.Value.Value)

        return write

    async def suspend(self) -> None:
        """Stop listening and drop every connection, as a controller that lost power would.

        Clients see refused connections and closed sockets (a real network failure, not a Bad
        status), which is what the `opcua_down` fault must show the daemon's driver.
        """
        if self._server is not None and not self.suspended:
            self.suspended = True
            await self._server.bserver.stop()

    async def resume(self) -> None:
        """Listen again on the same endpoint; clients reconnect with new sessions."""
        if self._server is not None and self.suspended:
            self.suspended = False
            await self._server.bserver.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None
