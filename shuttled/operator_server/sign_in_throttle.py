"""Sign-in throttling per client host: password guessing must not be cheap, nor stall control.

Each password check is a deliberate half second of scrypt (N=2^17), run in a worker thread
(sign_in_off_loop.py) so it never holds up the control tick, but a client guessing passwords
would still keep a core busy and try many. After `MAX_FAILURES` failed sign-ins from one host
within `WINDOW_S`, that host's sign-ins are refused for `LOCKOUT_S` without checking the
password at all (a correct one included: the lock must not answer whether a guess was right).
Counted per host rather than per account so a guesser cannot lock an operator out of a console
elsewhere. Time is the wall clock: a lockout is about people and networks, not process time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_FAILURES = 10
WINDOW_S = 300.0
LOCKOUT_S = 300.0


class SignInThrottle:
    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}

    def locked(self, host: str) -> bool:
        until = self._locked_until.get(host)
        if until is None:
            return False
        if self._now() < until:
            return True
        del self._locked_until[host]
        return False

    def failed(self, host: str) -> bool:
        """Count a failure; True when it locks the host."""
        now = self._now()
        recent = [t for t in self._failures.get(host, []) if now - t < WINDOW_S] + [now]
        if len(recent) >= MAX_FAILURES:
            self._failures.pop(host, None)
            self._locked_until[host] = now + LOCKOUT_S
            return True
        self._failures[host] = recent
        return False

    def succeeded(self, host: str) -> None:
        self._failures.pop(host, None)
