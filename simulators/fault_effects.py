"""What each fault of SPEC.md §1 does to the virtual instrument, when it starts and when it ends.

Every effect acts where the hardware would fail, below the device interfaces, so the daemon's
drivers see what they would see on an instrument: refused TCP connections when the controller
is down, silence or corrupted frames on a serial line, frozen, NaN or absurd sensor values,
latched pump alarms, a heater that no longer heats, cold liquid in the vessel.

Choices a fault file does not spell out:

* `sensor_*` hits the unit's density probe and its temperature sensor unless `sensor:` names
  one (`probe` or `temperature`). A stuck sensor repeats its last value bit for bit; a NaN probe
  also sets its sensor-failure and invalid bits (SPEC §8), while the controller's temperature
  reads NaN with a Good status, the nastier case a driver must still catch; a spike reads
  `SPIKE_TEMPERATURE_K` too hot on the temperature sensor and `SPIKE_DENSITY_FACTOR` × the
  density on the probe (the probe's own temperature channel is not disturbed by a bubble).
* `pump_stall` / `cover_open` latch the alarm (the pump stops, CLEAR clears it); with a
  `duration` the cause persists that long and CLEAR is refused until it is gone.
* `cartridge_swap` puts another cartridge id in the unit's controller (as if the cartridge had
  been taken out and another clamped in; the liquid model is not touched); with a `duration` the
  original id comes back when it ends.
* `garbage` corrupts replies with a generator seeded from the instrument's seed, the bus and the
  fault's line, so the same file and seed corrupt the same frames.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from firmware_stubs.probe import STATUS_INVALID, STATUS_SENSOR_FAILURE
from simulators import plant
from simulators.faults import FaultEvent

if TYPE_CHECKING:
    from simulators.instrument import VirtualInstrument

SPIKE_TEMPERATURE_K = 8.0  # a loose Pt100 contact reads high (assumption)
SPIKE_DENSITY_FACTOR = 3.0  # a bubble on the capacitance electrode (assumption)
PUMP_ALARMS = {"pump_stall": "STALL", "cover_open": "COVER"}
SENSOR_MODES = {"sensor_stuck": "stuck", "sensor_nan": "nan", "sensor_spike": "spike"}


async def apply(instrument: VirtualInstrument, event: FaultEvent) -> None:
    """Start or end one fault on `instrument`."""
    fault, on = event.fault, event.starting
    kind = fault.kind
    if kind == "opcua_down":
        await (instrument.opcua.suspend() if on else instrument.opcua.resume())
    elif kind in ("serial_cut", "garbage"):
        buses = instrument.pump_buses if fault.bus == "pumps" else instrument.probe_buses
        for index, (bus, _) in enumerate(buses):
            if kind == "serial_cut":
                bus.set_cut(on)
            else:
                rng = random.Random(f"{instrument.seed}:{fault.bus}:{index}:{fault.line}")
                bus.set_garbage((fault.rate or 0.0) if on else 0.0, rng)
    elif kind in SENSOR_MODES:
        faults = instrument.sensor_faults[_unit(instrument, fault.unit)]
        for sensor in (fault.sensor,) if fault.sensor else ("probe", "temperature"):
            if on:
                faults[sensor] = SENSOR_MODES[kind]
            elif faults.get(sensor) == SENSOR_MODES[kind]:
                del faults[sensor]
    elif kind in PUMP_ALARMS:
        pump = instrument.pump_firmware[(str(fault.unit), str(fault.pump))]
        if on:
            pump.inject_alarm(PUMP_ALARMS[kind], persist=fault.duration_s is not None)
        else:
            pump.clear_cause(PUMP_ALARMS[kind])
    elif kind == "heater_fail":
        instrument.heater_works[_unit(instrument, fault.unit)] = not on
    elif kind == "cold_bolus" and on:
        plant.add_medium(
            instrument.state,
            instrument.plant_params,
            _unit(instrument, fault.unit),
            float(fault.volume_ml or 0.0),
            float(fault.temperature if fault.temperature is not None else 4.0),
        )
    elif kind == "cartridge_swap":
        cartridges = instrument.arrays.cartridges
        index = _unit(instrument, fault.unit)
        if on:
            instrument.cartridges_before[fault] = cartridges[index]
            cartridges[index] = str(fault.cartridge)
        elif fault in instrument.cartridges_before:
            cartridges[index] = instrument.cartridges_before.pop(fault)
    elif kind == "ambient_step":
        column = instrument.plant_params[:, plant.AMBIENT_C]
        if on:
            instrument.ambient_before[fault] = column.copy()
            column[:] = fault.temperature
        elif fault in instrument.ambient_before:
            column[:] = instrument.ambient_before.pop(fault)


def _unit(instrument: VirtualInstrument, unit_id: str | None) -> int:
    if unit_id not in instrument.unit_ids:
        raise ValueError(f"unknown unit {unit_id!r}; units: {', '.join(instrument.unit_ids)}")
    return instrument.unit_ids.index(unit_id)


def sensor_value(mode: str | None, value: float, *, density: bool = False) -> float | None:
    """The value a sensor reports under `mode`; None means: keep the last one (stuck)."""
    if mode == "stuck":
        return None
    if mode == "nan":
        return math.nan
    if mode == "spike":
        return value * SPIKE_DENSITY_FACTOR if density else value + SPIKE_TEMPERATURE_K
    return value


def probe_status(mode: str | None) -> int:
    return STATUS_SENSOR_FAILURE | STATUS_INVALID if mode == "nan" else 0
