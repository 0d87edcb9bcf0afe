"""The far end of a bench's line: what the daemon opened its end at, read where it left it.

On a bench without hardware (docs/hil.md, tests/hil) a socat pair of pseudo-terminals stands in
for two adapters and the wire between them. The kernel moves a pseudo-terminal's bytes whatever
its settings, so `shuttle-sim` plays the wire (`serial_lines.uart_receive`), and for that it must
know both ends' settings. Its own are its options; the daemon's are whatever the daemon's
configuration made of `[buses.<name>]`, which is the very thing a bench is there to check. So
they are read from the daemon's end (`--daemon-pump-port`), where pyserial set them, rather than
assumed: a daemon that ignored its configuration would then meet garbage, as on real wires.

A Linux pseudo-terminal keeps a port's baud rate, its stop bits and odd parity (PARODD), but its
driver forces 8 data bits and clears the parity enable (`pty_set_termios`): even parity cannot be
told from none, nor 7 data bits from 8. For those the far end is taken to agree with shuttle-sim's
own end. Without the daemon's path, or when that is not a pseudo-terminal (a real adapter, whose
UART does the garbling itself), the far end is taken to be at shuttle-sim's own settings, which
is what `--print-config` writes into the daemon's configuration.
"""

from __future__ import annotations

import contextlib
import os
import termios
from typing import Any

from drivers.serial_line import STANDARD_BAUDS, SerialLine

PTY_SLAVE_MAJORS = range(136, 144)  # Unix98 pseudo-terminal slaves (Linux devices.txt)
_RATES = {getattr(termios, f"B{rate}"): rate for rate in STANDARD_BAUDS}


def is_pseudo_terminal(fd: int) -> bool:
    """Whether `fd` is the slave of a pseudo-terminal (a socat pair), not a UART."""
    with contextlib.suppress(OSError):
        if os.ttyname(fd).startswith("/dev/pts/"):
            return True
    return os.major(os.fstat(fd).st_rdev) in PTY_SLAVE_MAJORS


def settings_seen(attributes: list[Any], assumed: SerialLine) -> SerialLine:
    """The line settings a pseudo-terminal's termios `attributes` show, the parts it does not
    keep (data bits, even parity) taken from `assumed`."""
    cflag, speed = attributes[2], attributes[5]
    # Without PARODD: none or even, which a pseudo-terminal does not tell apart.
    not_odd = "N" if assumed.parity == "O" else assumed.parity
    parity = "O" if cflag & termios.PARODD else not_odd
    stopbits = 2 if cflag & termios.CSTOPB else 1
    return SerialLine(_RATES.get(speed, assumed.baud), assumed.bytesize, parity, stopbits)


class FarEnd:
    """The settings at the other end of a line: read from the daemon's pseudo-terminal at
    `path` when there is one, else `assumed`.

    The daemon's end is held open once found, read-only: reading its settings never takes its
    bytes, and a daemon that closes and reopens its port (a restart) then does not hang up the
    socat pair under the simulator."""

    def __init__(self, assumed: SerialLine, path: str | None = None) -> None:
        self.assumed = assumed
        self.path = path
        self._fd = -1

    def line(self) -> SerialLine:
        """The far end's settings now (the daemon may have reopened its port since)."""
        if not self._open():
            return self.assumed
        try:
            attributes = termios.tcgetattr(self._fd)
        except termios.error:  # the pair is gone: nothing crosses it anyway
            return self.assumed
        return settings_seen(attributes, self.assumed)

    def _open(self) -> bool:
        if self._fd >= 0:
            return True
        if self.path is None:
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # not there (yet): the daemon's end is on another machine, or not made
            return False
        if not is_pseudo_terminal(fd):
            os.close(fd)
            self.path = None  # a real device: its own UART garbles, nothing to play
            return False
        self._fd = fd
        return True

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = -1
