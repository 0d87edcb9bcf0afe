"""The settings of one serial line: baud rate and character framing (data bits, parity, stop bits).

Both ends of a line must agree, and two programs set them: the daemon from its `[buses.<name>]`
sections (SPEC §2), `shuttle-sim` from `--pump-baud/--pump-framing` and the like, and
`shuttle-sim --print-config` writes the one into the other. So the settings, their spelling
("8N1") and what an instrument's bus may be set to live here, below both (docs/architecture.md),
and the drivers open their ports with them.

What a bus may be set to is narrower than what a UART can do, on purpose: the standard rates
every adapter we support (FTDI, CP210x) and pyserial set exactly, 7 or 8 data bits, no, even or
odd parity, 1 or 2 stop bits. Mark and space parity, 5 or 6 data bits and 1.5 stop bits exist,
but no pump module or Modbus device of the instrument uses them, and a value nobody can check
on a device label is more likely a typing error than a choice.

Modbus RTU (the probe bus) moves 8-bit bytes, so 7 data bits are refused there. Its serial line
specification also asks for two stop bits when there is no parity (8N2); many devices ship at
8N1 all the same, so that is only worth a warning (`modbus_deviation`), not a refusal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STANDARD_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
FRAMING_HELP = "data bits 7 or 8, parity N, E or O, stop bits 1 or 2, written together (8N1, 8E1)"
# Loose on purpose: anything shaped like a framing gets a message naming the part that is wrong.
_FRAMING_SHAPE = re.compile(r"^(\d)([A-Z])(\d(?:\.\d)?)$")


@dataclass(frozen=True)
class SerialLine:
    """A line's baud rate and framing, as a device's label states them (`str`: "9600 8E1").

    The constructor takes any rate a UART could be set to (a model of two UARTs a few per cent
    apart needs that); `parse` takes what a user may write for a bus."""

    baud: int
    bytesize: int = 8
    parity: str = "N"  # N(one), E(ven), O(dd)
    stopbits: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.baud, bool) or not isinstance(self.baud, int) or self.baud <= 0:
            raise ValueError(f"a baud rate is a positive whole number, not {self.baud!r}")
        if (self.bytesize, self.parity, self.stopbits) != _framing_parts(self.framing):
            raise ValueError(f"framing {self.framing!r}: {FRAMING_HELP}")

    @classmethod
    def parse(cls, baud: object, framing: object, *, modbus: bool = False) -> SerialLine:
        """The line a user wrote (`baud` 9600, `framing` "8e1"), for a Modbus RTU bus if
        `modbus`; ValueError with one line saying what is wrong otherwise."""
        size, parity, stop = parse_framing(framing, modbus=modbus)
        return cls(standard_baud(baud), size, parity, stop)

    @property
    def framing(self) -> str:
        return f"{self.bytesize}{self.parity}{self.stopbits}"

    @property
    def bits_per_char(self) -> int:
        """Bits one character takes on the wire: start, data, parity if any, stop."""
        return 1 + self.bytesize + (self.parity != "N") + self.stopbits

    def wire_s(self, chars: float) -> float:
        """Seconds `chars` characters take on the wire, back to back."""
        return chars * self.bits_per_char / self.baud

    def __str__(self) -> str:
        return f"{self.baud} {self.framing}"


def standard_baud(baud: object) -> int:
    """`baud` as a whole number when it is one of STANDARD_BAUDS (9600.0 from a command line
    too); ValueError naming the rates otherwise."""
    number = baud if isinstance(baud, int | float) and not isinstance(baud, bool) else None
    if number is None or not float(number).is_integer():
        raise ValueError(f"baud {baud!r} is not a whole number (such as 9600)")
    if int(number) not in STANDARD_BAUDS:
        rates = ", ".join(map(str, STANDARD_BAUDS))
        raise ValueError(f"baud {int(number)} is not a standard rate: one of {rates}")
    return int(number)


def parse_framing(framing: object, *, modbus: bool = False) -> tuple[int, str, int]:
    """(data bits, parity, stop bits) of a framing such as "8N1" (any case); ValueError with
    the part that is wrong otherwise."""
    if not isinstance(framing, str):
        raise ValueError(f"framing {framing!r} is not text: {FRAMING_HELP}")
    shape = _FRAMING_SHAPE.match(framing.strip().upper())
    if shape is None:
        raise ValueError(f"framing {framing!r}: {FRAMING_HELP}")
    size, parity, stop = shape.groups()
    for part, allowed, what in ((size, ("7", "8"), "data bits"),
                                (parity, ("N", "E", "O"), "parity"),
                                (stop, ("1", "2"), "stop bits")):  # fmt: skip
        if part not in allowed:
            choices = ", ".join(allowed[:-1]) + " or " + allowed[-1]
            raise ValueError(f"framing {framing!r}: {what} {part}, not {choices}")
    if modbus and size != "8":
        raise ValueError(f"framing {framing!r}: Modbus RTU moves 8-bit bytes, so 8 data bits "
                         "(8N2, 8E1, 8O1; 7 data bits are Modbus ASCII, which probes do not speak)")
    return int(size), parity, int(stop)


def _framing_parts(framing: str) -> tuple[int, str, int] | None:
    try:
        return parse_framing(framing)
    except ValueError:
        return None


def modbus_deviation(line: SerialLine) -> str | None:
    """Why a Modbus RTU line at these settings deserves a warning, or None when it does not."""
    if line.parity == "N" and line.stopbits == 1:
        return ("Modbus RTU specifies 11-bit characters, so two stop bits without parity "
                "(8N2); 8N1 is common but not the standard: check the devices' setting")
    return None


PUMP_LINE = SerialLine(115200, 8, "N", 1)  # SPEC §7
PROBE_LINE = SerialLine(19200, 8, "N", 2)  # SPEC §8
