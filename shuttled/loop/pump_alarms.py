"""What the daemon does about a pump's latched alarms and its watchdog (SPEC §7).

Policy, so that a short fault ends without an operator when nothing about the batch is in doubt:

* ``WATCHDOG`` is our own safety net: the pump heard nothing from us for longer than the watchdog
  (a bus cut, a stalled daemon) and stopped. Its cause is gone once we talk to it again, so the
  daemon clears it and re-arms the watchdog; a transfer that was interrupted resumes for its
  remainder only (the engine reads what moved from the pump's counter).
* ``STALL``, ``COVER``, ``OVERCURRENT`` in the middle of a transfer (the engine has an open
  segment on that pump) are process events: the engine sees them and holds the run, and resuming
  is the operator's call. The alarm itself is cleared by the daemon once the pump accepts CLEAR
  (the firmware refuses it while the cause persists), so that the operator's Restart can move the
  remainder without a trip to the instrument.
* The same alarms on a pump that is not mid-transfer (idle, or held) are cleared as soon as the
  pump accepts CLEAR. Until then the pump is unavailable: the engine gets no status for it and
  waits, and the device-loss timer runs, so a cause that persists beyond `device_loss_hold_s`
  holds the run like a lost device.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.interfaces import DeviceError, DeviceRefused, Pump, PumpStatus
from shuttled.engine.unit_run import UnitRun

WATCHDOG = "WATCHDOG"


class PumpUnavailable(DeviceError):
    """The pump answers but holds an alarm whose cause persists (CLEAR refused)."""


@dataclass
class PumpCheck:
    """The status to give the engine, and what happened on the way (for alarms and logs)."""

    status: PumpStatus
    cleared: frozenset[str] = frozenset()


def mid_transfer(run: UnitRun, pump: str) -> bool:
    transfer = run.transfer
    return (
        transfer is not None and transfer.pump == pump and transfer.segment_baseline_ul is not None
    )


async def settle_alarms(pump: Pump, status: PumpStatus, *, mid: bool, wdog_ms: int) -> PumpCheck:
    """Apply the policy above to one STATUS; raises PumpUnavailable or DeviceError."""
    alarms = status.alarms
    if not alarms:
        return PumpCheck(status)
    process_alarms = alarms - {WATCHDOG}
    if process_alarms and mid:
        return PumpCheck(status)  # the engine holds the run on it
    try:
        await pump.clear_alarms()
    except DeviceRefused as refused:
        if process_alarms:
            raise PumpUnavailable(
                f"alarm {','.join(sorted(process_alarms))} (cause persists: {refused.text})"
            ) from refused
        raise
    if WATCHDOG in alarms:
        await pump.set_watchdog(wdog_ms)
    return PumpCheck(await pump.status(), cleared=alarms)
