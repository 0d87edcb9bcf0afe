"""`[buses.<name>]` of the service configuration: a serial bus, its port and its line settings.

A plant's pump modules may be set to 9600 baud, its probes to even parity: the daemon must open
each bus as its devices are set, and a typo must be refused at start-up (one line naming the
key, exit 78) rather than found hours later as a bus where nothing answers. The settings, their
spelling and what a bus may be set to are `drivers.serial_line`'s, shared with `shuttle-sim`, so
a configuration it prints is one this accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from drivers.probe_modbus import READ_EXCHANGE_CHARS
from drivers.pump_serial import STATUS_EXCHANGE_CHARS
from drivers.serial_line import PROBE_LINE, PUMP_LINE, SerialLine, parse_framing, standard_baud


class BusSection(BaseModel):
    """One serial bus. Line settings left out are the kind's (SPEC §7: pumps 115200 8N1; §8:
    modbus 19200 8N2). `kind` comes first: the framing's check depends on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: str
    kind: Literal["pumps", "modbus"]
    baud: int | None = Field(default=None, strict=True)  # strict: "9600" or 9600.5 is a typo
    framing: str | None = None

    @field_validator("baud")
    @classmethod
    def _standard_baud(cls, baud: int | None) -> int | None:
        return None if baud is None else standard_baud(baud)

    @field_validator("framing")
    @classmethod
    def _framing(cls, framing: str | None, info: ValidationInfo) -> str | None:
        """Checked for the bus's kind (Modbus RTU needs 8 data bits), kept upper-case."""
        if framing is None:
            return None
        size, parity, stop = parse_framing(framing, modbus=info.data.get("kind") == "modbus")
        return f"{size}{parity}{stop}"

    @property
    def line(self) -> SerialLine:
        """The settings the daemon opens the port at."""
        default = PUMP_LINE if self.kind == "pumps" else PROBE_LINE
        return SerialLine.parse(self.baud or default.baud, self.framing or default.framing,
                                modbus=self.kind == "modbus")


def slow_bus_problem(buses: Mapping[str, BusSection], device_timeout_s: float) -> str | None:
    """The first bus whose longest exchange (a pump's STATUS with every alarm, a probe's
    4-register read) takes device_timeout_s or more on the wire, as one located line, or None.

    On such a bus a reply could not arrive before the request times out, which looks like a
    dead bus at every poll (at 1200 baud 8E1 a pump's STATUS exchange takes a second)."""
    for name, bus in buses.items():
        chars = STATUS_EXCHANGE_CHARS if bus.kind == "pumps" else READ_EXCHANGE_CHARS
        wire_s = bus.line.wire_s(chars)
        if wire_s >= device_timeout_s:
            return (f"buses.{name}.baud: at {bus.line} a {bus.kind} bus's longest exchange "
                    f"takes {wire_s:.2f} s on the wire, not less than device_timeout_s "
                    f"({device_timeout_s:g} s): raise the baud rate (on the devices too) or "
                    "device_timeout_s")
    return None
