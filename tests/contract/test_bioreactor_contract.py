"""The bioreactor controller contract, for the OPC UA driver and the in-process transport."""

from __future__ import annotations

import inspect
import math

import pytest
from contract_rig import Instrument

from drivers.bioreactor_opcua import BioreactorReading, Health


async def test_one_read_returns_every_unit_as_the_controller_measures_it(
    instrument: Instrument,
) -> None:
    bioreactor = instrument.bioreactor
    assert list(bioreactor.unit_ids) == ["U01", "U02"]
    readings = await bioreactor.read_units()
    assert list(readings) == ["U01", "U02"]
    arrays = instrument.virtual.arrays
    for index, reading in enumerate(readings.values()):
        assert isinstance(reading, BioreactorReading) and reading.good
        assert reading.temperature == pytest.approx(arrays.measured_temperature[index])
        assert reading.volume_ml == pytest.approx(100.0)
    assert bioreactor.health == Health.CONNECTED


async def test_heater_outputs_reach_the_controller_and_bad_ones_are_refused(
    instrument: Instrument,
) -> None:
    accepted = await instrument.bioreactor.write_heaters({"U01": 40.0, "U02": math.nan})
    assert accepted == {"U01": True, "U02": False}
    assert instrument.virtual.arrays.heater_pct[0] == 40.0
    assert instrument.virtual.arrays.heater_pct[1] == 0.0
    assert await instrument.bioreactor.write_heaters({"U02": 150.0}) == {"U02": False}
    await instrument.advance(60.0)
    readings = await instrument.bioreactor.read_units()
    assert instrument.virtual.arrays.heater_pct[0] == 40.0
    assert readings["U01"].temperature > readings["U02"].temperature  # the heater heats


async def test_a_unit_the_controller_cannot_measure_reads_nan(instrument: Instrument) -> None:
    instrument.virtual.arrays.available[1] = False
    readings = await instrument.bioreactor.read_units()
    assert readings["U01"].good
    assert not readings["U02"].good and math.isnan(readings["U02"].temperature)


async def test_a_unit_the_controller_cannot_measure_degrades_health(
    instrument: Instrument,
) -> None:
    instrument.virtual.arrays.available[1] = False
    await instrument.bioreactor.read_units()
    assert instrument.bioreactor.health == Health.DEGRADED
    instrument.virtual.arrays.available[1] = True
    await instrument.bioreactor.read_units()
    assert instrument.bioreactor.health == Health.CONNECTED


def test_every_call_is_a_coroutine(instrument: Instrument) -> None:
    for name in ("connect", "close", "read_units", "write_heaters"):
        assert inspect.iscoroutinefunction(getattr(instrument.bioreactor, name)), name
