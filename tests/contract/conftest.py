"""Every implementation of each device interface, built over one virtual instrument.

`driver`: the production drivers over loopback TCP and pseudo-terminals. `direct`: the in-process
transports of `simulators/direct_transport.py` that the digital twin (`shuttlectl analyze`) uses.
The same contract suite runs against both, so the in-process fake cannot drift from the drivers
the daemon runs on hardware (PyLabRobot's sync-mock bug is the cautionary tale).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from contract_rig import IMPLEMENTATIONS, TIMEOUT_S, Instrument

from drivers.bioreactor_opcua import OpcUaBioreactor
from drivers.probe_modbus import ModbusDensityProbe, ProbeBus
from drivers.pump_serial import PumpBus, SerialPump
from simulators.direct_transport import direct_transports
from simulators.instrument import VirtualInstrument


@pytest.fixture(params=IMPLEMENTATIONS)
async def instrument(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Instrument]:
    clock = {"t": 0.0}
    virtual = VirtualInstrument(2, now=lambda: clock["t"], seed=5)
    ends = virtual.endpoints()
    if request.param == "driver":
        bioreactor: Any = OpcUaBioreactor(
            ends.opcua_endpoint, ends.opcua_namespace, ends.unit_nodes, timeout_s=2.0,
            security=virtual.opcua.client_security(tmp_path / "client-pki"),  # encrypted
        )
        pump_bus: Any = PumpBus(ends.pumps[0].port, timeout_s=TIMEOUT_S, retries=1)
        probe_bus: Any = ProbeBus(ends.probes[0].port, timeout_s=TIMEOUT_S, retries=1)
    else:
        transports = direct_transports(virtual, lambda: clock["t"])
        assert transports.bioreactor is not None
        bioreactor = transports.bioreactor(
            ends.opcua_endpoint, ends.opcua_namespace, ends.unit_nodes, 2.0
        )
        pump_bus = transports.pump_bus(ends.pumps[0].port, TIMEOUT_S, ends.pumps[0].line)
        probe_bus = transports.probe_bus(ends.probes[0].port, TIMEOUT_S, ends.probes[0].line)

    async def advance(seconds: float) -> None:
        clock["t"] += seconds
        await virtual.advance_to(clock["t"])

    rig = Instrument(
        request.param,
        virtual,
        bioreactor,
        {(p.unit_id, p.name): SerialPump(pump_bus, p.address) for p in ends.pumps},
        {p.unit_id: ModbusDensityProbe(probe_bus, p.device_id) for p in ends.probes},
        [pump_bus, probe_bus],
        advance,
    )
    await virtual.start()
    await rig.advance(1.0)
    yield rig
    await bioreactor.close()
    for bus in rig.buses:
        await bus.close()
    await virtual.stop()
