"""A virtual instrument on a hand-driven simulated clock, reached only through the real drivers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.bioreactor_opcua import OpcUaBioreactor
from drivers.probe_modbus import ModbusDensityProbe, ProbeBus
from drivers.pump_serial import PumpBus, SerialPump
from simulators.instrument import VirtualInstrument

TIMEOUT_S = 0.2


class Rig:
    """Two units; `advance(s)` moves simulated time, which is when scheduled faults apply."""

    def __init__(self, client_pki: Path) -> None:
        self.t = 0.0
        self.instrument = VirtualInstrument(2, now=lambda: self.t, seed=3)
        self.schedule = self.instrument.faults
        ends = self.instrument.endpoints()
        self.bioreactor = OpcUaBioreactor(
            ends.opcua_endpoint, ends.opcua_namespace, ends.unit_nodes, timeout_s=1.0,
            now=lambda: self.t,  # reconnect backoff in simulated time, like the daemon's
            security=self.instrument.opcua.client_security(client_pki),  # encrypted
        )
        pump_ports = {p.port for p in ends.pumps}
        assert len(pump_ports) == 1
        self.pump_bus = PumpBus(pump_ports.pop(), timeout_s=TIMEOUT_S, retries=0)
        self.pumps = {(p.unit_id, p.name): SerialPump(self.pump_bus, p.address) for p in ends.pumps}
        self.probe_bus = ProbeBus(ends.probes[0].port, timeout_s=TIMEOUT_S, retries=0)
        self.probes = {
            p.unit_id: ModbusDensityProbe(self.probe_bus, p.device_id, stale_after=2)
            for p in ends.probes
        }

    async def advance(self, seconds: float) -> None:
        self.t += seconds
        await self.instrument.advance_to(self.t)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(tmp_path / "client-pki")
    await r.instrument.start()
    await r.advance(1.0)
    yield r
    await r.bioreactor.close()
    await r.pump_bus.close()
    await r.probe_bus.close()
    await r.instrument.stop()
