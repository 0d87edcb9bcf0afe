"""The OPC UA bioreactor driver against the simulated controller over loopback TCP."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drivers.bioreactor_opcua import Health, OpcUaBioreactor
from drivers.interfaces import DeviceError
from simulators.opcua_bioreactor import (
    NAMESPACE_URI,
    ControllerArrays,
    SimulatedBioreactorServer,
)

UNITS = [f"U{i:02d}" for i in range(1, 17)]


@pytest.fixture
async def controller():
    n = len(UNITS)
    arrays = ControllerArrays(
        measured_temperature=np.linspace(20.0, 35.0, n), volume_ml=np.full(n, 100.0),
        heater_pct=np.zeros(n), stirrer_rpm=np.full(n, 60.0), available=[True] * n,
    )
    server = SimulatedBioreactorServer(UNITS, arrays, port=0)
    await server.start()
    yield server
    await server.stop()


def _driver(server: SimulatedBioreactorServer) -> OpcUaBioreactor:
    return OpcUaBioreactor(server.endpoint, NAMESPACE_URI, {u: u for u in UNITS}, timeout_s=2.0)


async def test_one_batched_read_returns_every_unit(controller: SimulatedBioreactorServer) -> None:
    driver = _driver(controller)
    await driver.connect()
    readings = await driver.read_units()
    assert list(readings) == UNITS
    assert readings["U01"].temperature == pytest.approx(20.0)
    assert readings["U16"].temperature == pytest.approx(35.0)
    assert driver.health == Health.CONNECTED
    await driver.close()


async def test_batched_heater_write_reaches_the_plant_and_bad_values_are_refused(
    controller: SimulatedBioreactorServer,
) -> None:
    driver = _driver(controller)
    accepted = await driver.write_heaters({"U01": 42.5, "U02": math.nan, "U03": 150.0, "U04": 0.0})
    assert accepted == {"U01": True, "U02": False, "U03": False, "U04": True}
    assert controller.arrays.heater_pct[0] == 42.5
    assert controller.arrays.heater_pct[1] == 0.0 and controller.arrays.heater_pct[2] == 0.0
    await driver.close()


async def test_a_unit_the_controller_cannot_measure_reads_as_nan_and_degrades_health(
    controller: SimulatedBioreactorServer,
) -> None:
    controller.arrays.available[4] = False
    driver = _driver(controller)
    readings = await driver.read_units()
    assert math.isnan(readings["U05"].temperature) and not readings["U05"].good
    assert readings["U06"].good
    assert driver.health == Health.DEGRADED
    await driver.close()


async def test_a_lost_controller_raises_and_a_returning_one_is_reconnected(
    controller: SimulatedBioreactorServer,
) -> None:
    driver = _driver(controller)
    await driver.read_units()
    await controller.stop()
    with pytest.raises(DeviceError):
        await driver.read_units()
    assert driver.health == Health.LOST
    await controller.start()
    readings = await driver.read_units()
    assert readings["U01"].good and driver.health == Health.CONNECTED
    await driver.close()


async def test_an_unreachable_endpoint_fails_within_the_timeout() -> None:
    driver = OpcUaBioreactor("opc.tcp://127.0.0.1:9/none", NAMESPACE_URI, {"U01": "U01"},
                             timeout_s=0.5)
    with pytest.raises(DeviceError):
        await driver.read_units()
    assert driver.health == Health.LOST
