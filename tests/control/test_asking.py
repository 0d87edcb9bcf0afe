"""The tick asks its lines at once, or in turn when every transport answers in process."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from drivers.probe_modbus import ProbeBus
from shuttled.devices import Devices
from shuttled.loop.asking import answers_in_process, ask
from simulators.direct_transport import DirectProbeBus


def _devices(*probe_buses: object) -> Devices:
    buses = {f"/dev/probe{i}": bus for i, bus in enumerate(probe_buses)}
    return cast(Devices, SimpleNamespace(bioreactors={}, pump_buses={}, probe_buses=buses))


async def test_only_the_twins_transports_are_asked_in_turn() -> None:
    direct = DirectProbeBus("/dev/probe0", [])
    assert answers_in_process(_devices(direct, direct))
    assert not answers_in_process(_devices(direct, ProbeBus("/dev/ttyUSB0")))  # a real line


async def test_lines_that_wait_are_still_asked_at_once() -> None:
    reply = asyncio.get_running_loop().create_future()

    async def waits() -> Any:
        return await reply

    async def answers() -> str:
        reply.set_result("reply")
        return "sent"

    assert await ask(False, waits(), answers()) == ["reply", "sent"]  # in turn: a deadlock
    assert await ask(True, asyncio.sleep(0, "first"), asyncio.sleep(0, "second")) == [
        "first",
        "second",
    ]
