"""Firmware of a peristaltic pump module speaking the ASCII protocol of SPEC.md §7.

Pure: bytes in, bytes out, time passed in by the caller. The simulator owns the clock and the
pseudo-terminal; tests drive this class directly with a counter for ``now_s``.

Design choices where §7 is silent (documented here because the driver relies on them):

- ``STATUS`` reports the speed *setpoint* in rpm (also while stopped); ``RUN``/``STOP`` in the
  state field tells whether it turns. During a ``DISPENSE`` the setpoint is the dispense speed.
- ``remaining_ul`` is the volume still to go of the active ``DISPENSE``; 0 when none is active.
  ``STOP`` or an alarm aborts a dispense and sets it to 0 (the cumulative ``dispensed_ul`` tells
  how much went through).
- ``dispensed_ul`` counts volume moved in either direction, in whole tacho pulses
  (``PULSES_PER_REV`` per revolution); the fraction of a pulse is kept so nothing is lost. The
  last step of a dispense delivers exactly the remainder, so a dispense ends on its volume.
- The watchdog stops a *running* motor; an idle pump does not latch a ``WATCHDOG`` alarm, since
  nothing needs stopping. Any CRC-valid frame for this address feeds it, even one answered ERR.
- ``SPEED`` is accepted while running continuously (changes speed on the fly); ``DIR``, ``CAL``
  and ``SPEED`` during a dispense are refused with ``STATE``.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Callable

PULSES_PER_REV = 200
ALARM_NAMES = ("STALL", "COVER", "OVERCURRENT", "WATCHDOG")
MIN_RPM = 0.1
MAX_DISPENSE_UL = 1_000_000.0
MAX_WDOG_MS = 600_000
_EPS = 1e-9


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE; ``binascii.crc_hqx`` is exactly poly 0x1021 with the given init."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode_frame(body: str) -> bytes:
    """Append ``*<crc>\\r\\n`` to a frame body that starts with ``@`` or ``!``."""
    raw = body.encode("ascii")
    return raw + b"*%04X\r\n" % crc16_ccitt_false(raw)


def decode_frame(line: bytes) -> str | None:
    """Return the body (without ``*crc``) of a CRC-valid frame line, else None."""
    line = line.strip()
    star = line.rfind(b"*")
    if star < 1 or len(line) - star - 1 != 4:
        return None
    try:
        crc = int(line[star + 1 :], 16)
        body = line[:star].decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None
    if crc != crc16_ccitt_false(line[:star]):
        return None
    return body


class CommandError(Exception):
    """An ERR reply; raised inside a command handler and turned into a frame."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text.replace("*", " ")


def _parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandError("SYNTAX", f"not a number: {text}") from None
    if not math.isfinite(value):
        raise CommandError("RANGE", f"not finite: {text}")
    return value


class PumpFirmware:
    """One pump module: command parser, motor integration, alarms and watchdog."""

    def __init__(
        self,
        address: int,
        *,
        model: str = "CSP-100",
        firmware: str = "1.4.2",
        serial_number: str,
        ul_per_rev: float = 80.0,
        max_rpm: float = 300.0,
    ) -> None:
        if not 1 <= address <= 32:
            raise ValueError("address must be 1-32")
        self.address = address
        self.model = model
        self.firmware = firmware
        self.serial_number = serial_number
        self.ul_per_rev = ul_per_rev
        self.max_rpm = max_rpm
        self._speed_rpm = 10.0
        self._running = False
        self._direction = "CW"
        self._dispensed_ul = 0.0
        self._remaining_ul = 0.0
        self._dispensing = False
        self._pulse_frac = 0.0
        self._alarms: set[str] = set()
        self._causes: set[str] = set()
        self._wdog_s = 0.0
        self._last_frame_s = 0.0
        self._commands: dict[str, Callable[[list[str]], list[str]]] = {
            "ID": self._cmd_id,
            "STATUS": self._cmd_status,
            "CAL": self._cmd_cal,
            "SPEED": self._cmd_speed,
            "DIR": self._cmd_dir,
            "RUN": self._cmd_run,
            "STOP": self._cmd_stop,
            "DISPENSE": self._cmd_dispense,
            "WDOG": self._cmd_wdog,
            "CLEAR": self._cmd_clear,
        }

    # --- observable state (for the simulator's physics and for tests) -------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def direction(self) -> str:
        return self._direction

    @property
    def rpm(self) -> float:
        return self._speed_rpm

    @property
    def dispensed_ul(self) -> float:
        return self._dispensed_ul

    @property
    def remaining_ul(self) -> float:
        return self._remaining_ul

    @property
    def alarms(self) -> frozenset[str]:
        return frozenset(self._alarms)

    @property
    def flow_ul_per_min(self) -> float:
        return self._speed_rpm * self.ul_per_rev if self._running else 0.0

    # --- fault hooks ------------------------------------------------------------------------------

    def inject_alarm(self, name: str, persist: bool) -> None:
        """Latch an alarm and stop the motor; with ``persist`` CLEAR fails until clear_cause."""
        if name not in ALARM_NAMES:
            raise ValueError(f"unknown alarm {name}")
        self._alarms.add(name)
        if persist:
            self._causes.add(name)
        self._halt()

    def clear_cause(self, name: str) -> None:
        """The physical cause is gone (cover closed...); the alarm stays latched until CLEAR."""
        self._causes.discard(name)

    # --- time -----------------------------------------------------------------------

    def advance(self, dt_s: float, now_s: float) -> float:
        """Turn the motor over the interval ``[now_s - dt_s, now_s]``; return µL moved in it.

        When the watchdog expires inside the interval the motor only turns until that instant.
        """
        if dt_s < 0:
            raise ValueError("dt_s must be >= 0")
        if not self._running:
            return 0.0
        run_s = dt_s
        if self._wdog_s > 0:
            deadline = self._last_frame_s + self._wdog_s
            run_s = max(0.0, min(dt_s, deadline - (now_s - dt_s)))
        moved = self._turn(run_s)
        self._check_watchdog(now_s)
        return moved

    def _turn(self, run_s: float) -> float:
        ul_per_pulse = self.ul_per_rev / PULSES_PER_REV
        pulses = self._speed_rpm / 60.0 * run_s * PULSES_PER_REV + self._pulse_frac
        whole = math.floor(pulses)
        self._pulse_frac = pulses - whole
        moved = whole * ul_per_pulse
        # The motor stops at the exact end position, even inside a tacho pulse.
        if self._dispensing and pulses * ul_per_pulse >= self._remaining_ul - _EPS:
            moved = self._remaining_ul
            self._remaining_ul = 0.0
            self._dispensing = False
            self._running = False
            self._pulse_frac = 0.0
        elif self._dispensing:
            self._remaining_ul -= moved
        self._dispensed_ul += moved
        return moved

    def _check_watchdog(self, now_s: float) -> None:
        if self._wdog_s > 0 and self._running and now_s - self._last_frame_s >= self._wdog_s:
            self._alarms.add("WATCHDOG")
            self._halt()

    def _halt(self) -> None:
        self._running = False
        self._dispensing = False
        self._remaining_ul = 0.0

    # --- protocol -----------------------------------------------------------------------

    def handle_line(self, line: bytes, now_s: float) -> bytes | None:
        """Answer one request line; None for a bad CRC, another address or a non-request."""
        body = decode_frame(line)
        if body is None or not body.startswith("@"):
            return None
        head, _, rest = body[1:].partition(" ")
        addr_text, colon, seq_text = head.partition(":")
        if not (colon and addr_text.isdigit() and seq_text.isdigit()):
            return None
        if int(addr_text) != self.address or int(seq_text) > 255:
            return None
        self._check_watchdog(now_s)
        self._last_frame_s = now_s
        prefix = f"!{self.address}:{int(seq_text)}"
        words = rest.split()
        try:
            if not words:
                raise CommandError("SYNTAX", "missing command")
            handler = self._commands.get(words[0])
            if handler is None:
                raise CommandError("UNKNOWN", f"unknown command {words[0]}")
            data = handler(words[1:])
        except CommandError as err:
            return encode_frame(f"{prefix} ERR {err.code} {err.text}")
        return encode_frame(" ".join([prefix, "OK", *data]))

    @staticmethod
    def _nargs(args: list[str], n: int) -> None:
        if len(args) != n:
            raise CommandError("SYNTAX", f"expected {n} argument(s), got {len(args)}")

    def _refuse_if_alarm(self) -> None:
        if self._alarms:
            raise CommandError("ALARM", "alarm active: " + ",".join(sorted(self._alarms)))

    def _cmd_id(self, args: list[str]) -> list[str]:
        self._nargs(args, 0)
        return [self.model, self.firmware, self.serial_number]

    def _cmd_status(self, args: list[str]) -> list[str]:
        self._nargs(args, 0)
        state = "ALARM" if self._alarms else ("RUN" if self._running else "STOP")
        alarms = ",".join(a for a in ALARM_NAMES if a in self._alarms) or "-"
        return [
            state,
            f"{self._speed_rpm:.1f}",
            self._direction,
            f"{self._dispensed_ul:.1f}",
            f"{self._remaining_ul:.1f}",
            alarms,
        ]

    def _cmd_cal(self, args: list[str]) -> list[str]:
        self._nargs(args, 1)
        value = _parse_float(args[0])
        if self._running:
            raise CommandError("STATE", "cannot calibrate while running")
        if not 0.1 <= value <= 100_000.0:
            raise CommandError("RANGE", "ul_per_rev out of range 0.1-100000")
        self.ul_per_rev = value
        return []

    def _cmd_speed(self, args: list[str]) -> list[str]:
        self._nargs(args, 1)
        value = _parse_float(args[0])
        if not MIN_RPM <= value <= self.max_rpm:
            raise CommandError("RANGE", f"rpm out of range {MIN_RPM}-{self.max_rpm}")
        if self._dispensing:
            raise CommandError("STATE", "dispense in progress")
        self._speed_rpm = value
        return []

    def _cmd_dir(self, args: list[str]) -> list[str]:
        self._nargs(args, 1)
        if args[0] not in ("CW", "CCW"):
            raise CommandError("SYNTAX", "direction must be CW or CCW")
        if self._running and args[0] != self._direction:
            raise CommandError("STATE", "cannot reverse while running")
        self._direction = args[0]
        return []

    def _cmd_run(self, args: list[str]) -> list[str]:
        self._nargs(args, 0)
        self._refuse_if_alarm()
        if self._dispensing:
            raise CommandError("STATE", "dispense in progress")
        self._running = True
        return []

    def _cmd_stop(self, args: list[str]) -> list[str]:
        self._nargs(args, 0)
        self._halt()
        return []

    def _cmd_dispense(self, args: list[str]) -> list[str]:
        self._nargs(args, 2)
        volume = _parse_float(args[0])
        rate = _parse_float(args[1])
        if not 0.0 < volume <= MAX_DISPENSE_UL:
            raise CommandError("RANGE", f"volume out of range 0-{MAX_DISPENSE_UL:g}")
        rpm = rate / self.ul_per_rev
        if not MIN_RPM - _EPS <= rpm <= self.max_rpm + _EPS:
            raise CommandError("RANGE", "rate gives rpm out of range")
        self._refuse_if_alarm()
        if self._running:
            raise CommandError("STATE", "already running")
        self._speed_rpm = rpm
        self._remaining_ul = volume
        self._dispensing = True
        self._running = True
        return []

    def _cmd_wdog(self, args: list[str]) -> list[str]:
        self._nargs(args, 1)
        if not args[0].isdigit():
            raise CommandError("SYNTAX", "ms must be a whole number")
        ms = int(args[0])
        if ms > MAX_WDOG_MS:
            raise CommandError("RANGE", f"ms out of range 0-{MAX_WDOG_MS}")
        self._wdog_s = ms / 1000.0
        return []

    def _cmd_clear(self, args: list[str]) -> list[str]:
        self._nargs(args, 0)
        persisting = self._causes & self._alarms
        if persisting:
            raise CommandError("ALARM", "cause persists: " + ",".join(sorted(persisting)))
        self._alarms.clear()
        return []


class PumpBusFirmware:
    """The pumps on one multi-drop line: splits the byte stream into lines, one reply per line."""

    MAX_LINE = 512

    def __init__(self, pumps: list[PumpFirmware]) -> None:
        addresses = [p.address for p in pumps]
        if len(set(addresses)) != len(addresses):
            raise ValueError("duplicate pump address on one bus")
        self.pumps = list(pumps)
        self._by_address = {p.address: p for p in pumps}
        self._buffer = b""

    def pump(self, address: int) -> PumpFirmware:
        return next(p for p in self.pumps if p.address == address)

    def feed(self, data: bytes, now_s: float) -> bytes:
        """Accept bytes from the line; return the replies to every complete request in them."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > self.MAX_LINE:  # a flood without newline: drop, resync later
            self._buffer = b""
        replies = []
        for line in lines:
            line = line.strip()
            if not line.startswith(b"@"):
                continue
            # Only the addressed module can answer (`handle_line` checks address, CRC, syntax):
            # no need for every module on the bus to check the CRC of every request.
            pump = self._by_address.get(_address_of(line))
            if pump is not None:
                reply = pump.handle_line(line, now_s)
                if reply is not None:
                    replies.append(reply)
        return b"".join(replies)

    def advance(self, dt_s: float, now_s: float) -> dict[int, float]:
        """Advance every pump; µL moved per address."""
        return {p.address: p.advance(dt_s, now_s) for p in self.pumps}


def _address_of(line: bytes) -> int | None:
    """The address a request line is sent to (`@<addr>:`), None when it has none; whether the
    frame is valid is left to the module."""
    colon = line.find(b":")
    try:
        return int(line[1:colon]) if colon > 1 else None
    except ValueError:
        return None
