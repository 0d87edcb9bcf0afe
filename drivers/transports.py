"""How the daemon reaches each device: the seam between device logic and the last hop.

It lives with the drivers, below both the daemon and the simulators: the daemon builds its
devices through it (`shuttled/devices.py`), and the digital twin hands in transports that reach
the virtual instrument in-process (`simulators/direct_transport.py`), without either importing
the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from drivers.bioreactor_opcua import OpcUaBioreactor
from drivers.probe_modbus import ProbeBus
from drivers.pump_serial import PumpBus
from drivers.serial_line import SerialLine


@dataclass(frozen=True)
class Transports:
    """How the daemon reaches each device: real drivers by default.

    The digital twin (`shuttlectl analyze`) swaps in in-process transports to the same firmware
    stubs, so the same drivers' parsing, the same control loop and the same engine run without
    sockets or pseudo-terminals. A bus is made from its port, the request timeout and its line
    settings (`[buses.<name>]`); an in-process bus has no wire and ignores the latter.
    """

    # None: the OPC UA driver built from the unit's BioreactorConfig (`opcua_bioreactor`).
    bioreactor: Callable[[str, str, dict[str, str], float], OpcUaBioreactor] | None = None
    pump_bus: Callable[[str, float, SerialLine], PumpBus] = lambda port, timeout, line: PumpBus(
        port, line=line, timeout_s=timeout
    )
    probe_bus: Callable[[str, float, SerialLine], ProbeBus] = lambda port, timeout, line: (
        ProbeBus(port, line=line, timeout_s=timeout)
    )
