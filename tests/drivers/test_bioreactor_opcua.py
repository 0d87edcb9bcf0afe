"""The OPC UA bioreactor driver against the simulated controller over loopback TCP, encrypted
(Basic256Sha256 SignAndEncrypt, each side's certificate in the other's trust list)."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import numpy as np
import pytest

from drivers.bioreactor_opcua import Health, OpcUaBioreactor, OpcUaSecurity
from drivers.interfaces import DeviceDisconnected, DeviceError, DeviceTimeout
from simulators.opcua_bioreactor import (
    NAMESPACE_URI,
    ControllerArrays,
    SimulatedBioreactorServer,
    free_loopback_port,
)

UNITS = [f"U{i:02d}" for i in range(1, 17)]


@pytest.fixture
async def controller(tmp_path: Path):
    n = len(UNITS)
    arrays = ControllerArrays(
        measured_temperature=np.linspace(20.0, 35.0, n), volume_ml=np.full(n, 100.0),
        heater_pct=np.zeros(n), stirrer_rpm=np.full(n, 60.0), available=[True] * n,
    )
    server = SimulatedBioreactorServer(UNITS, arrays, port=0, pki_dir=tmp_path / "controller")
    await server.start()
    yield server
    await server.stop()


def _driver(server: SimulatedBioreactorServer) -> OpcUaBioreactor:
    security = server.client_security(server.pki_dir.parent / "client")
    return OpcUaBioreactor(server.endpoint, NAMESPACE_URI, {u: u for u in UNITS}, timeout_s=2.0,
                           security=security)


def _unreachable_security(tmp_path: Path) -> OpcUaSecurity:
    return OpcUaSecurity(pki_dir=str(tmp_path / "client"))


async def test_one_batched_read_returns_every_unit(controller: SimulatedBioreactorServer) -> None:
    driver = _driver(controller)
    await driver.connect()
    assert driver._client is not None
    policy = driver._client.security_policy
    assert policy.URI.endswith("#Basic256Sha256")
    assert policy.Mode == 3  # ua.MessageSecurityMode.SignAndEncrypt
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


class HandClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


async def test_a_lost_controller_raises_and_a_returning_one_is_reconnected_after_backoff(
    controller: SimulatedBioreactorServer,
) -> None:
    clock = HandClock()
    driver = OpcUaBioreactor(
        controller.endpoint, NAMESPACE_URI, {u: u for u in UNITS}, timeout_s=2.0, now=clock,
        security=controller.client_security(controller.pki_dir.parent / "client"),
    )
    await driver.read_units()
    await controller.stop()
    with pytest.raises(DeviceError):
        await driver.read_units()
    assert driver.health == Health.LOST
    await controller.start()
    # Within the backoff a call fails at once, without touching the network.
    with pytest.raises(DeviceDisconnected, match=r"reconnecting in 1\.0 s"):
        await driver.read_units()
    assert driver.connects == 1
    clock.t += 1.0
    readings = await driver.read_units()
    assert readings["U01"].good and driver.health == Health.CONNECTED
    assert driver.connects == 2  # a new client and session, not asyncua's own reconnect
    assert [(c.at, c.health) for c in driver.health_changes] == [
        (100.0, Health.CONNECTED),
        (100.0, Health.LOST),
        (101.0, Health.CONNECTED),
    ]
    await driver.close()


async def test_backoff_doubles_up_to_its_maximum_while_the_endpoint_stays_away(
    tmp_path: Path,
) -> None:
    clock = HandClock()
    driver = OpcUaBioreactor(
        f"opc.tcp://127.0.0.1:{free_loopback_port()}/none", NAMESPACE_URI, {"U01": "U01"},
        timeout_s=0.5, now=clock, backoff_initial_s=1.0, backoff_max_s=4.0,
        security=_unreachable_security(tmp_path),
    )  # fmt: skip
    waits = []
    for _ in range(5):
        with pytest.raises(DeviceError):
            await driver.read_units()
        waits.append(driver._next_attempt - clock.t)
        clock.t = driver._next_attempt
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert driver.health == Health.LOST


async def test_a_controller_that_accepts_but_never_answers_costs_one_timeout(
    tmp_path: Path,
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # take the HEL message and never answer

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    driver = OpcUaBioreactor(f"opc.tcp://127.0.0.1:{port}/x", NAMESPACE_URI, {"U01": "U01"},
                             timeout_s=0.3, security=_unreachable_security(tmp_path))  # fmt: skip
    driver.security.client_certificate()  # made on first start, outside the call's timeout
    started = time.monotonic()
    with pytest.raises(DeviceTimeout):
        await driver.read_units()
    assert time.monotonic() - started < 0.3 + 0.5
    server.close()
    await server.wait_closed()


async def test_an_unreadable_unit_degrades_health_and_a_good_read_restores_it(
    controller: SimulatedBioreactorServer,
) -> None:
    changes = []
    driver = _driver(controller)
    driver.on_health = changes.append
    await driver.read_units()
    controller.arrays.available[2] = False
    await driver.read_units()
    controller.arrays.available[2] = True
    await driver.read_units()
    assert [(c.health, c.reason) for c in changes] == [
        (Health.CONNECTED, "session opened"),
        (Health.DEGRADED, "no good values for U03"),
        (Health.CONNECTED, "every unit reads good"),
    ]
    await driver.close()


async def test_an_unreachable_endpoint_fails_within_the_timeout(tmp_path: Path) -> None:
    driver = OpcUaBioreactor("opc.tcp://127.0.0.1:9/none", NAMESPACE_URI, {"U01": "U01"},
                             timeout_s=0.5, security=_unreachable_security(tmp_path))
    with pytest.raises(DeviceError):
        await driver.read_units()
    assert driver.health == Health.LOST
