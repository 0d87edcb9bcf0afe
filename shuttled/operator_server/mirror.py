"""Copy the engine's and the control loop's state into the address space.

The engine owns run state; OPC UA only mirrors it (ARCHITECTURE.md). Values are written into the
address space (not served from read callbacks) so that subscriptions — what UaExpert and most
HMIs use — get data-change notifications. Only values that changed are written, so an idle
instrument costs almost nothing per tick.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from asyncua import Server, ua

from drivers.clock import Clock
from protocols.state_machine import RunState
from shuttled.engine.operations import Operations
from shuttled.engine.unit_run import UnitRun
from shuttled.operator_server.address_space import DOUBLE, STRING, AddressSpaceBuilder, UnitNodes
from shuttled.records.journal import Journal

ENDED = (RunState.COMPLETE, RunState.STOPPED, RunState.ABORTED)
NAN = float("nan")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def device_health(alarms: dict[str, dict[str, str]]) -> str:
    """NAMUR NE 107 as LADS uses it: lost or unusable devices are a FAILURE, a tripped
    interlock is OFF_SPEC, any other alarm asks for CHECK_FUNCTION."""
    names = {name for unit in alarms.values() for name in unit}
    if any(n.endswith("_LOST") or n.endswith("_BAD") for n in names):
        return "FAILURE"
    if "OVER_TEMPERATURE" in names:
        return "OFF_SPEC"
    return "CHECK_FUNCTION" if names else "NORMAL"


def estimated_remaining_s(run: UnitRun) -> float:
    """Planned time left: the rest of this phase and every later one (an `until` phase counts
    with its timeout, the longest it can take); 0 when no run is active."""
    if run.protocol is None or not run.is_active or run.phase is None:
        return 0.0
    phases = run.protocol.phases
    total = 0.0
    for index in range(run.phase_index, len(phases)):
        phase = phases[index]
        planned = phase.duration_s or phase.timeout_s or 0.0
        total += max(planned - run.phase_elapsed_s, 0.0) if index == run.phase_index else planned
    return total


class Mirror:
    def __init__(
        self,
        server: Server,
        builder: AddressSpaceBuilder,
        units: dict[str, UnitNodes],
        health_node: ua.NodeId,
        operations: Operations,
        journal: Journal,
        clock: Clock,
        loop: Any = None,
    ) -> None:
        self.server = server
        self.builder = builder
        self.units = units
        self.health_node = health_node
        self.operations = operations
        self.journal = journal
        self.clock = clock
        self.loop = loop  # the ControlLoop, once it exists
        self._written: dict[ua.NodeId, Any] = {}
        self._epoch = clock.to_epoch(clock.now())  # the daemon's time of this refresh, UTC

    async def _write(self, node: ua.NodeId, value: Any, kind: ua.VariantType) -> None:
        if node in self._written and _same(self._written[node], value):
            return
        self._written[node] = value
        # SourceTimestamp is the daemon clock's UTC, like the history (history.py) and MQTT, so a
        # trend joins its history without a seam even in a scaled simulation; ServerTimestamp is
        # the wall time the value was written (the service's two are the same).
        await self.server.iserver.write_attribute_value(
            node,
            ua.DataValue(ua.Variant(value, kind),
                         SourceTimestamp=datetime.fromtimestamp(self._epoch, UTC),
                         ServerTimestamp=datetime.now(UTC)),
        )

    async def refresh(self) -> None:
        self._epoch = self.clock.to_epoch(self.clock.now())
        for unit in self.units:
            await self.refresh_unit(unit)
        alarms = self.loop.alarms if self.loop is not None else {}
        await self._write(self.health_node, device_health(alarms), STRING)

    async def refresh_unit(self, unit: str) -> None:
        self._epoch = self.clock.to_epoch(self.clock.now())
        nodes = self.units[unit]
        run = self.operations.runs[unit]
        values = self._unit_values(unit, run)
        for key, value in values.items():
            kind = STRING if isinstance(value, str) else DOUBLE
            await self._write(nodes.variables[key], value, kind)
        for identity, protocol in self.operations.templates[unit].items():
            if identity not in nodes.templates:
                await self.builder.add_template(nodes, protocol, loaded_by="")
        if run.run_id and run.state in ENDED and run.run_id not in nodes.results:
            await self.builder.add_result(nodes, run.run_id, self._result_of(run))

    def _result_of(self, run: UnitRun) -> dict[str, object]:
        return {
            "ProgramTemplateId": run.protocol.identity if run.protocol else "",
            "State": run.state.value,
            "Parameters": json.dumps(run.parameters, sort_keys=True),
            "Runtime": float(run.run_time_s(self.clock.now())),
            "BatchId": run.batch_id or "",
        }

    async def add_past_results(self) -> None:
        """Runs that ended before this daemon started (the journal keeps them)."""
        for run_id, unit, identity, parameters, final_state in self.journal.run_summaries():
            nodes = self.units.get(unit)
            current = self.operations.runs.get(unit)
            if nodes is None or (current is not None and current.run_id == run_id):
                continue
            await self.builder.add_result(nodes, run_id, {
                "ProgramTemplateId": identity,
                "State": final_state or "",
                "Parameters": parameters,
                "BatchId": self.journal.run_batch(run_id)[0] or "",
            })

    def _unit_values(self, unit: str, run: UnitRun) -> dict[str, Any]:
        loop = self.loop
        temperature = volume = heater = density = growth = NAN
        alarms: list[dict[str, str]] = []
        if loop is not None:
            i = loop.index[unit]
            reading = loop.last_readings.get(unit)
            if reading is not None:
                temperature, volume = float(reading.temperature), float(reading.volume_ml)
            heater = float(loop.heater[i])
            density = float(loop.density[i])
            growth = float(loop.growth_rate[i])
            alarms = [{"name": n, "message": m} for n, m in sorted(loop.alarms[unit].items())]
        setpoint = run.temperature_setpoint
        active = run.state != RunState.IDLE and run.protocol is not None
        step = ""
        if active and run.phase is not None:
            step = run.phase.name
            if run.transfer is not None:
                step += f" / {run.transfer.kind} {run.transfer.pump}"
            if run.operator_step is not None and run.is_active:  # SPEC §12: the prompt to answer
                step = run.operator_step.prompt
        values: dict[str, Any] = {
            "State": run.state.value,
            "HoldReason": run.hold_reason,
            "Alarms": json.dumps(alarms),
            "Temperature.CurrentValue": temperature,
            "Temperature.TargetValue": NAN if setpoint is None else float(setpoint),
            "Temperature.ControllerOutput": heater,
            "CellDensity.SensorValue": density,
            "CellDensity.GrowthRate": growth,
            "Volume.CurrentValue": volume,
            "ActiveProgram.ProgramTemplateId": run.protocol.identity if active else "",
            "ActiveProgram.CurrentStepName": step,
            "ActiveProgram.DeviceProgramRunId": run.run_id or "",
            "ActiveProgram.BatchId": (run.batch_id or "") if active else "",
            "ActiveProgram.CartridgeId": (run.cartridge_id or "") if active else "",
            "ActiveProgram.CurrentRuntime": float(run.run_time_s(self.clock.now()))
            if active else 0.0,
            "ActiveProgram.EstimatedRemaining": float(estimated_remaining_s(run)),
        }
        for pump in self.units[unit].pumps:
            transfer = run.transfer if active else None
            moving = (
                transfer is not None
                and transfer.pump == pump
                and transfer.segment_baseline_ul is not None
                and run.state == RunState.RUNNING
            )
            delivered = run.delivered_ul.get(pump, 0.0) if active else 0.0
            if transfer is not None and transfer.pump == pump:
                delivered += transfer.delivered_before_ul
            values[f"{pump}.FlowRate"] = transfer.rate_ul_min / 1000.0 if moving else 0.0
            values[f"{pump}.TotalizedValue"] = delivered / 1000.0
        return values
