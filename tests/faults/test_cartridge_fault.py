"""The cartridge a unit holds, through the real OPC UA driver: the controller's `CartridgeId`
in the one batched read, and the `cartridge_swap` fault changing it for its duration."""

from __future__ import annotations

from drivers.bioreactor_opcua import BioreactorReading
from simulators.faults import Fault

from .conftest import Rig


async def _cartridges(rig: Rig) -> dict[str, str | None]:
    readings: dict[str, BioreactorReading] = await rig.bioreactor.read_units()
    return {unit: reading.cartridge for unit, reading in readings.items()}


async def test_the_controller_reports_each_units_cartridge_and_a_swap_for_its_duration(
    rig: Rig,
) -> None:
    assert await _cartridges(rig) == {"U01": "CRT-U01", "U02": "CRT-U02"}
    rig.schedule.add(Fault("cartridge_swap", at_s=60.0, duration_s=120.0, unit="U02",
                           cartridge="CRT-0099"))
    await rig.advance(60.0)
    assert await _cartridges(rig) == {"U01": "CRT-U01", "U02": "CRT-0099"}
    await rig.advance(120.0)
    assert await _cartridges(rig) == {"U01": "CRT-U01", "U02": "CRT-U02"}  # put back


async def test_a_unit_the_controller_cannot_reach_reports_no_cartridge(rig: Rig) -> None:
    rig.instrument.arrays.available[0] = False  # the controller answers Bad for U01
    assert (await _cartridges(rig))["U01"] is None
