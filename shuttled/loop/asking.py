"""Asking the instrument's lines at once, and when one after the other is the same thing.

A tick asks the controllers, the probe lines and the pump lines at once (asyncio.gather), so it
waits for the slowest line and not for their sum. That costs a task per line and a few passes
of the event loop, which is nothing next to a serial exchange but most of a tick when every
transport answers in process without waiting (the digital twin's, simulators/direct_transport.py,
`shuttlectl analyze`): asked at once, each of them would still run to its end in turn. Such a
transport says so with a true `answers_in_process`; when every transport of the daemon does,
the tick asks them one after the other, in the same order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from shuttled.devices import Devices


def answers_in_process(devices: Devices) -> bool:
    """Every controller and every line answers in process, without waiting."""
    transports = [
        *devices.bioreactors.values(), *devices.pump_buses.values(),
        *devices.probe_buses.values(),
    ]  # fmt: skip
    return all(getattr(transport, "answers_in_process", False) for transport in transports)


async def ask(in_process: bool, *asking: Coroutine[Any, Any, Any]) -> list[Any]:
    """The results of `asking`, in order: at once, or in turn where nothing waits (the same)."""
    if not in_process:
        return list(await asyncio.gather(*asking))
    answers = []
    for one in asking:
        answers.append(await one)
    return answers
