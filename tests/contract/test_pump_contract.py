"""The pump contract (SPEC §7), for the serial driver over a pty and over the in-process bus."""

from __future__ import annotations

import pytest
from contract_rig import Instrument

from drivers.interfaces import DeviceRefused, Pump, PumpIdentity
from simulators.faults import Fault


async def test_identity_and_a_fresh_status(instrument: Instrument) -> None:
    pump = instrument.pumps[("U01", "media")]
    assert isinstance(pump, Pump)
    assert await pump.identify() == PumpIdentity("CSP-100", "1.4.2", "SIM01M")
    status = await pump.status()
    assert (status.state, status.dispensed_ul, status.remaining_ul, status.alarms) == (
        "STOP", 0.0, 0.0, frozenset()
    )  # fmt: skip


async def test_a_dispense_delivers_exactly_its_volume_and_stops_by_itself(
    instrument: Instrument,
) -> None:
    pump = instrument.pumps[("U02", "vector")]
    await pump.dispense(1000.0, 10000.0)
    await instrument.advance(3.0)
    running = await pump.status()
    assert running.state == "RUN" and 0.0 < running.remaining_ul < 1000.0
    await instrument.advance(10.0)
    done = await pump.status()
    assert (done.state, done.dispensed_ul, done.remaining_ul) == ("STOP", 1000.0, 0.0)


async def test_the_watchdog_stops_a_pump_nobody_talks_to(instrument: Instrument) -> None:
    pump = instrument.pumps[("U01", "media")]
    await pump.set_watchdog(2000)
    await pump.dispense(5000.0, 10000.0)
    await instrument.advance(5.0)  # no frame for 5 s: the daemon died
    status = await pump.status()
    assert status.state == "ALARM" and status.alarms == {"WATCHDOG"}
    assert status.dispensed_ul == pytest.approx(10000.0 / 60.0 * 2.0, abs=1.0)
    await pump.clear_alarms()
    assert (await pump.status()).state == "STOP"


async def test_clear_is_refused_while_the_cause_persists(instrument: Instrument) -> None:
    pump = instrument.pumps[("U02", "harvest")]
    await instrument.virtual.inject(Fault("cover_open", unit="U02", pump="harvest", duration_s=60))
    assert (await pump.status()).alarms == {"COVER"}
    with pytest.raises(DeviceRefused) as refused:
        await pump.clear_alarms()
    assert refused.value.code == "ALARM"
    with pytest.raises(DeviceRefused):
        await pump.dispense(100.0, 1000.0)
    await instrument.advance(61.0)
    await pump.clear_alarms()
    assert (await pump.status()).alarms == frozenset()


async def test_refusals_and_bad_arguments(instrument: Instrument) -> None:
    pump = instrument.pumps[("U01", "vector")]
    with pytest.raises(DeviceRefused) as refused:
        await pump.set_speed(500.0)
    assert refused.value.code == "RANGE"
    with pytest.raises(ValueError):
        await pump.set_direction("UP")
    await pump.set_speed(20.0)
    await pump.set_direction("CCW")
    await pump.calibrate(90.0)
    await pump.run()
    status = await pump.status()
    assert (status.state, status.rpm, status.direction) == ("RUN", 20.0, "CCW")
    await pump.stop()
    assert (await pump.status()).state == "STOP"
