"""Checks of a valid protocol against the unit it is loaded on (SPEC §3, load time).

The file itself can be valid and still not fit a unit: a pump it names is not fitted, a setpoint
is outside what this cartridge may reach, a rate is beyond the pump's tubing. Refusing at load
time, with every reason, is cheaper than a hold at 3 a.m.
"""

from __future__ import annotations

from protocols.model import Protocol
from shuttled.config import UnitConfig


def check_protocol_fits_unit(protocol: Protocol, unit: UnitConfig) -> list[str]:
    problems: list[str] = []
    limits = unit.limits
    for phase in protocol.phases:
        where = f"phase '{phase.name}'"
        if not limits.temperature_min <= phase.temperature <= limits.temperature_max:
            problems.append(
                f"{where}: temperature {phase.temperature:g} °C is outside this unit's limits "
                f"{limits.temperature_min:g}–{limits.temperature_max:g} °C"
            )
        pumps = [(t.pump, t.rate_ml_min, t.volume_ml) for t in phase.transfers]
        if phase.density_control is not None:
            control = phase.density_control
            pumps.append((control.pump, None, None))
            if control.max_volume_ml > limits.max_volume_ml:
                problems.append(
                    f"{where}: density control max_volume_ml {control.max_volume_ml:g} exceeds "
                    f"the vessel's {limits.max_volume_ml:g} mL"
                )
        for name, rate_ml_min, volume_ml in pumps:
            pump = unit.pumps.get(name)
            if pump is None:
                fitted = ", ".join(sorted(unit.pumps)) or "none"
                problems.append(
                    f"{where}: pump '{name}' is not fitted on {unit.unit_id} (pumps: {fitted})"
                )
                continue
            if rate_ml_min is not None and rate_ml_min * 1000.0 > pump.max_rate_ul_min:
                problems.append(
                    f"{where}: rate {rate_ml_min:g} mL/min exceeds pump '{name}''s maximum "
                    f"{pump.max_rate_ul_min / 1000.0:g} mL/min"
                )
            if volume_ml is not None and volume_ml > limits.max_volume_ml:
                problems.append(
                    f"{where}: transfer of {volume_ml:g} mL exceeds the vessel's "
                    f"{limits.max_volume_ml:g} mL"
                )
    return problems
