"""The daemon configuration that fits a virtual instrument, for `simulate` and `shuttle-sim`.

Both build the same `ConfigFile` the service reads from TOML, so a configuration printed by
`shuttle-sim --print-config` is exactly what `shuttled simulate` runs in-process. Both also set up
the bench's certificates (`trust_each_other`), so the device link is encrypted as on a plant.
"""

from __future__ import annotations

from pathlib import Path

from drivers.opcua_pki import copy_into
from shuttled.config import DaemonConfig
from shuttled.devices import controller_pki_dir, controller_security
from shuttled.service.config_file import (
    BioreactorSection,
    BusSection,
    ConfigFile,
    OperatorSection,
    ProbeSection,
    PumpSection,
    UnitSection,
)
from simulators.instrument import InstrumentEndpoints

SIM_INSTRUMENT_ID = "CS-SIM"


def config_for_instrument(
    endpoints: InstrumentEndpoints,
    data_dir: Path,
    operator_port: int,
    users_file: Path | None,
    clock_speed: float = 1.0,
) -> ConfigFile:
    buses: dict[str, BusSection] = {}
    bus_names: dict[str, str] = {}
    for kind, prefix, lines in (
        ("pumps", "pumps", {p.port: p.line for p in endpoints.pumps}),
        ("modbus", "probes", {p.port: p.line for p in endpoints.probes}),
    ):
        for port, line in lines.items():
            name = f"{prefix}{sum(b.kind == kind for b in buses.values()) + 1}"
            # Written out even at the defaults: the two ends of a bench agree as printed.
            buses[name] = BusSection(port=port, kind=kind, baud=line.baud, framing=line.framing)
            bus_names[port] = name
    units = []
    for unit_id, node in endpoints.unit_nodes.items():
        probe = next(p for p in endpoints.probes if p.unit_id == unit_id)
        units.append(UnitSection(
            id=unit_id,
            bioreactor="sim",
            node=node,
            pumps={
                p.name: PumpSection(bus=bus_names[p.port], address=p.address,
                                    ul_per_rev=p.ul_per_rev,
                                    direction="in" if p.into_vessel else "out")
                for p in endpoints.pumps if p.unit_id == unit_id
            },
            probe=ProbeSection(bus=bus_names[probe.port], device_id=probe.device_id),
        ))
    return ConfigFile(
        instrument_id=SIM_INSTRUMENT_ID,
        data_dir=data_dir,
        clock_speed=clock_speed,
        opcua=OperatorSection(
            endpoint=f"opc.tcp://127.0.0.1:{operator_port}/shuttled",
            allow_insecure=True,
            trust_all_loopback_clients=True,
            users_file=users_file,
        ),
        bioreactors={"sim": BioreactorSection(endpoint=endpoints.opcua_endpoint,
                                              namespace_uri=endpoints.opcua_namespace)},
        buses=buses,
        units=units,
    )


def trust_each_other(endpoints: InstrumentEndpoints, config: DaemonConfig) -> None:
    """The certificate exchange an administrator does when a controller is installed: the
    controller's certificate into the daemon's trust list (<data_dir>/pki/controllers/trusted),
    and the daemon's client certificate (made now, as the daemon makes it on first start) into
    the controller's. Nothing to do for a link configured with security_policy "None"."""
    for unit in config.units:
        if unit.bioreactor.endpoint != endpoints.opcua_endpoint:
            continue
        security = controller_security(unit.bioreactor, config.data_dir, config.instrument_id)
        if security.insecure:
            continue
        trusted_clients = Path(endpoints.opcua_trusted_clients)
        copy_into(security.client_certificate().certificate, trusted_clients)
        trusted_controllers = controller_pki_dir(config.data_dir) / "trusted"
        copy_into(Path(endpoints.opcua_certificate), trusted_controllers)
        return  # one controller, one exchange
