"""Small typed interfaces between the daemon and device drivers.

The daemon depends on these Protocols only, so the same engine code runs against the serial and
Modbus drivers, against in-process fakes, and (through the drivers) against the simulator. One
contract test suite can then be pointed at every implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

# --- errors -------------------------------------------------------------------------------------


class DeviceError(Exception):
    """Any failure to get a valid answer from a device; the run engine maps these to alarms."""


class DeviceTimeout(DeviceError):
    """No valid reply within the driver's bounded time (after its retries)."""


class DeviceDisconnected(DeviceError):
    """The port could not be opened or vanished; the driver reopens it on the next request."""


class DeviceRefused(DeviceError):
    """The device answered but refused the command (pump ``ERR`` or a Modbus exception).

    Never retried: the device is alive and said no, so repeating would only hide the reason.
    """

    def __init__(self, code: str, text: str = "") -> None:
        super().__init__(f"{code}: {text}" if text else code)
        self.code = code
        self.text = text


# --- pumps (SPEC.md §7) -------------------------------------------------------------------------

PumpState = Literal["RUN", "STOP", "ALARM"]
Direction = Literal["CW", "CCW"]


@dataclass(frozen=True, slots=True)
class PumpIdentity:
    model: str
    firmware: str
    serial: str


@dataclass(frozen=True, slots=True)
class PumpStatus:
    """One STATUS reply. ``dispensed_ul`` is cumulative since the pump's power-up.

    Resume logic should journal it and compare, never replay a transfer blindly.
    """

    state: str
    rpm: float
    direction: str
    dispensed_ul: float
    remaining_ul: float
    alarms: frozenset[str]


@runtime_checkable
class Pump(Protocol):
    async def identify(self) -> PumpIdentity: ...

    async def status(self) -> PumpStatus: ...

    async def set_speed(self, rpm: float) -> None: ...

    async def set_direction(self, direction: str) -> None: ...

    async def run(self) -> None: ...

    async def stop(self) -> None: ...

    async def dispense(self, volume_ul: float, rate_ul_min: float) -> None: ...

    async def set_watchdog(self, ms: int) -> None: ...

    async def clear_alarms(self) -> None: ...

    async def calibrate(self, ul_per_rev: float) -> None: ...


# --- probes (SPEC.md §8) ------------------------------------------------------------------------

Quality = Literal["good", "stale", "bad"]


@dataclass(frozen=True, slots=True)
class ProbeReading:
    """One measurement. Control loops must only act on ``quality == "good"``."""

    density: float
    temperature: float
    status: int
    quality: str  # "good" | "stale" | "bad"


@runtime_checkable
class Probe(Protocol):
    async def read(self) -> ProbeReading: ...

    async def ping(self) -> int:
        """The cheapest request that shows the probe answers (its status word)."""
        ...


# --- bioreactor controller (OPC UA) -------------------------------------------------------------
# Reserved for the bioreactor interface, written separately. Keep it in this section.
