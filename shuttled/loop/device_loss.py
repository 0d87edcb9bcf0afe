"""Device loss (SPEC §4): which devices do not answer, since when, and how to poll them cheaply.

A loss shorter than `device_loss_hold_s` of process time is an alarm that clears by itself when
the device answers again; a longer one holds the run, and resuming it is the operator's call. The
timer runs on the injected clock, so a loss means the same thing at `--speed max` as on an
instrument.

Driver timeouts, however, are real time even under a virtual clock: a cut serial line costs a full
timeout (with retries) per request. Polling every lost device every tick would slow `--speed max`
to a crawl and, on a real instrument, starve the devices that still answer. So a bus is polled
healthy devices first; the first transport failure before anything on that bus has answered this
tick, confirmed by a second one, means the line itself is silent, and the rest of the bus is
skipped (and counted as lost); a known-lost device is probed only once every `probe_every_ticks`
ticks, unless another lost device on its bus has just answered (the line is back: poll everyone
at once).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple, TypeVar

import structlog

from drivers.interfaces import DeviceDisconnected, DeviceError, DeviceRefused, DeviceTimeout

log = structlog.get_logger("shuttled.devices")

T = TypeVar("T")

PROBE_EVERY_TICKS = 3  # one reconnect probe per 15 s at the default 5 s control period


class DeviceKey(NamedTuple):
    """One device as a unit sees it: `device` reads as in a hold reason ("pump media").

    A tuple: looked up in the watch several times a tick for every device, and a tuple hashes
    and compares without a call into Python."""

    unit: str
    device: str

    @property
    def alarm(self) -> str:
        """The alarm name operators already know from earlier versions (PUMP_MEDIA_LOST...)."""
        return _loss_alarm(self.device)


@cache
def _loss_alarm(device: str) -> str:
    return device.upper().replace(" ", "_") + "_LOST"


@dataclass(slots=True)
class Loss:
    since: float  # process time of the first failure
    since_tick: int
    error: str
    collateral: bool = False  # only skipped because its bus was silent, never failed itself


class DeviceWatch:
    """Loss timers for every device, in process time, and the reconnect-probe cadence."""

    def __init__(self, hold_after_s: float, probe_every_ticks: int = PROBE_EVERY_TICKS) -> None:
        self.hold_after_s = hold_after_s
        self.probe_every_ticks = max(1, probe_every_ticks)
        self.lost: dict[DeviceKey, Loss] = {}
        self.tick = 0
        self.held: set[DeviceKey] = set()  # losses that already held their run

    def begin_tick(self) -> None:
        self.tick += 1

    def is_lost(self, key: DeviceKey) -> bool:
        return key in self.lost

    def probe_due(self, key: DeviceKey) -> bool:
        loss = self.lost.get(key)
        return loss is None or (self.tick - loss.since_tick) % self.probe_every_ticks == 0

    def failed(self, key: DeviceKey, now: float, error: str, collateral: bool = False) -> None:
        """Start (or continue) a loss; the first failure's time is what the hold timer counts."""
        loss = self.lost.get(key)
        if loss is None:
            self.lost[key] = Loss(now, self.tick, error, collateral)
            log.warning("device lost", unit=key.unit, device=key.device, error=error)
        elif not collateral:
            loss.error, loss.collateral = error, False

    def poll_order(self, key: DeviceKey) -> tuple[bool, bool]:
        """Healthy devices first, then those lost with their bus, then those that failed
        themselves: a single dead device must not keep a live line looking silent."""
        loss = self.lost.get(key)
        return (loss is not None, loss is not None and not loss.collateral)

    def answered(self, key: DeviceKey, now: float) -> Loss | None:
        """The device answered: end its loss (returned, so callers can re-arm what it forgot)."""
        loss = self.lost.pop(key, None)
        self.held.discard(key)
        if loss is not None:
            log.info(
                "device back", unit=key.unit, device=key.device, lost_s=round(now - loss.since, 1)
            )
        return loss

    def overdue(self, now: float) -> list[tuple[DeviceKey, float]]:
        """Losses that have lasted `hold_after_s` and have not held their run yet."""
        due = []
        for key, loss in sorted(self.lost.items()):
            if key not in self.held and now - loss.since >= self.hold_after_s:
                self.held.add(key)
                due.append((key, now - loss.since))
        return due


def _is_transport_failure(error: BaseException) -> bool:
    return isinstance(error, DeviceTimeout | DeviceDisconnected)


async def poll_bus(
    keys: Sequence[DeviceKey],
    read: Callable[[DeviceKey], Awaitable[T]],
    watch: DeviceWatch,
    now: float,
) -> dict[DeviceKey, T]:
    """Read the devices of one bus in order, healthy ones first, without waiting on a dead line.

    Never raises: a device that fails is recorded in `watch` and has no result this tick. A
    refusal (the device answered "no") is an answer, not a loss.
    """
    results: dict[DeviceKey, T] = {}
    answered = False  # anything on this bus answered this tick
    recovered = False  # a lost device answered this tick: the line is back
    # Stable: config order kept within a group (nothing lost: the order as given).
    ordered = sorted(keys, key=watch.poll_order) if watch.lost else keys
    silent_failures = 0  # transport failures before anything answered
    for index, key in enumerate(ordered):
        if watch.is_lost(key) and not recovered and not watch.probe_due(key):
            continue
        was_lost = watch.is_lost(key)
        try:
            results[key] = await read(key)
        except DeviceRefused:
            answered = True
            recovered = recovered or was_lost
            watch.answered(key, now)
            continue
        except Exception as error:  # nothing may escape into the tick
            if not isinstance(error, DeviceError):
                log.exception("driver raised outside its contract", device=key.device)
            watch.failed(key, now, str(error) or type(error).__name__)
            if _is_transport_failure(error) and not answered:
                silent_failures += 1
                if silent_failures >= 2:
                    for other in ordered[index + 1 :]:
                        watch.failed(other, now, f"bus silent ({error})", collateral=True)
                    break
            continue
        answered = True
        recovered = recovered or was_lost
        watch.answered(key, now)
    return results
