"""The rig the contract suites share (a module of its own so test files can import its type)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from drivers.probe_modbus import ModbusDensityProbe
from drivers.pump_serial import SerialPump
from simulators.instrument import VirtualInstrument

TIMEOUT_S = 0.3
IMPLEMENTATIONS = ["driver", "direct"]


@dataclass
class Instrument:
    """A 2-unit virtual instrument on a hand-driven clock, reached through one implementation."""

    kind: str
    virtual: VirtualInstrument
    bioreactor: Any
    pumps: dict[tuple[str, str], SerialPump]
    probes: dict[str, ModbusDensityProbe]
    buses: list[Any]
    advance: Callable[[float], Awaitable[None]]
