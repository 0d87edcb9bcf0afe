"""`shuttlectl analyze`: a protocol's dry run on the digital twin, before it touches cells.

The daemon itself, built by the same composition root as the service (`shuttled/composition.py`):
the same engine, control loop, kernels and drivers, on one virtual unit with the virtual clock
and in-process transports (simulators/direct_transport.py), so the prediction is
what `shuttled simulate` — and, as far as the plant model is faithful, the instrument — will do.
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from drivers.clock import VirtualClock
from protocols import load_protocol_file
from protocols.state_machine import RunState
from shuttled.composition import Daemon
from shuttled.engine.unit_run import UnitRun
from shuttled.loop.control_loop import ControlLoop
from shuttled.reports.summary import summarise
from shuttled.simulation.auto_confirm import AutoConfirm, operator_steps_of
from shuttled.simulation.instrument_config import config_for_instrument
from simulators.direct_transport import direct_transports
from simulators.instrument import VirtualInstrument
from simulators.plant_parameters import InitialConditions, PlantParameters

ANALYSIS_MARGIN = 1.2  # run past the protocol's longest possible duration to see it end
# The twin's journal is scratch, thrown away with the run: kept in memory where there is a tmpfs,
# so its fsyncs (a transfer's progress every tick, SQLite's checkpoints) cost no disk.
_SCRATCH_IN_MEMORY = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


class _TwinClock(VirtualClock):
    """The virtual clock without its pass of the event loop per tick: that pass lets replies on
    sockets and pseudo-terminals arrive, and the twin's transports have none (they answer in
    process, simulators/direct_transport.py). The same moments and the same listeners, so the
    same run; a tick that does wait on something still waits for it."""

    async def sleep_until(self, t: float) -> None:
        if t > self._now:
            self._now = t
        await self._notify(self._now)


@dataclass
class PhaseForecast:
    name: str
    start_h: float
    end_h: float | None
    ended_by: str


@dataclass
class Analysis:
    protocol: str
    parameters: dict[str, float]
    final_state: str
    duration_h: float
    phases: list[PhaseForecast]
    peak_volume_ml: float
    media_ml: float
    final_cells: float
    temp_in_band_pct: float
    max_density_ratio: float
    violations: list[str] = field(default_factory=list)
    # Where the run waits for people (SPEC §12): phase, step, prompt, recorded names, whether a
    # second person verifies, and when (h); the twin answered each at once (`auto`).
    operator_steps: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "parameters": self.parameters,
            "final_state": self.final_state,
            "duration_h": round(self.duration_h, 3),
            "phases": [vars(p) for p in self.phases],
            "peak_volume_ml": round(self.peak_volume_ml, 1),
            "media_ml": round(self.media_ml, 1),
            "final_cells": float(f"{self.final_cells:.4g}"),
            "temp_in_band_pct": self.temp_in_band_pct,
            "max_density_ratio": self.max_density_ratio,
            "violations": self.violations,
            "operator_steps": self.operator_steps,
        }


def _longest_seconds(protocol) -> float:
    return sum(p.timeout_s or p.duration_s or 3600.0 for p in protocol.phases) + 3600.0


async def analyze(
    path: Path,
    overrides: dict[str, float],
    seed: int = 0,
    *,
    plant: PlantParameters | None = None,
    initial: InitialConditions | None = None,
) -> Analysis:
    """Run the protocol on a twin unit; refuses what loading on a unit would refuse.

    `plant` and `initial` replace the nominal plant and starting state (one virtual patient of
    `shuttlectl analyze --patients`, simulators/patient_variability.py); None: the nominal.
    """
    protocol = load_protocol_file(path)
    protocol.resolve_parameters(overrides)  # refuse bad parameters before any work
    clock = _TwinClock()
    instrument = VirtualInstrument(1, now=clock.now, seed=seed, parameters=plant, initial=initial)
    clock.add_advance_listener(instrument.advance_to)
    with tempfile.TemporaryDirectory(prefix="shuttled-analyze-", dir=_SCRATCH_IN_MEMORY) as scratch:
        config = config_for_instrument(
            instrument.endpoints(), Path(scratch), 0, users_file=None
        ).to_daemon_config()
        # The twin has no operators and no broker: nothing to serve, nothing to publish.
        daemon = Daemon(
            replace(config, operator=None),
            clock,
            direct_transports(instrument, clock.now),
            restore_runs=False,
        )
        unit = config.units[0]
        try:
            await daemon.start()
            loaded = daemon.operations.load_protocol(unit.unit_id, protocol.text, user="analyze")
            if not loaded.template_id:
                raise ValueError("; ".join(loaded.errors))
            daemon.operations.start(
                unit.unit_id, loaded.template_id, overrides, "analysis", "analyze"
            )
            run = daemon.runs[unit.unit_id]
            watch = _Watch(
                unit.limits.max_volume_ml, unit.limits.temperature_min, unit.limits.temperature_max
            )
            deadline = clock.now() + _longest_seconds(protocol) * ANALYSIS_MARGIN
            await daemon.run_until(
                lambda: (
                    run.state
                    in (RunState.COMPLETE, RunState.STOPPED, RunState.ABORTED, RunState.HELD)
                    or clock.now() >= deadline
                ),
                [AutoConfirm(daemon.operations, [unit.unit_id], {}, seed),
                 lambda d: watch.observe(d.control, unit.unit_id, run)],
            )
            summary = summarise(run, daemon.control, clock.now(), 0.0)
        finally:
            await daemon.stop()
    return Analysis(
        protocol=protocol.identity,
        parameters=run.parameters,
        final_state=run.state.value,
        duration_h=summary.duration_h,
        phases=_phases(run),
        peak_volume_ml=watch.peak_volume_ml,
        media_ml=summary.media_ml,
        final_cells=summary.final_cells,
        temp_in_band_pct=summary.temp_in_band_pct,
        max_density_ratio=summary.max_density_ratio,
        violations=watch.violations(run),
        operator_steps=operator_steps_of(run),
    )


def _phases(run: UnitRun) -> list[PhaseForecast]:
    forecast: list[PhaseForecast] = []
    start = run.run_started_at
    for event in run.events:
        if event.kind == "phase":
            if forecast:
                forecast[-1].end_h = (event.at - start) / 3600.0
            name = event.detail.split()[1]
            forecast.append(PhaseForecast(name, (event.at - start) / 3600.0, None, ""))
        elif forecast and event.kind == "state" and event.state != RunState.RUNNING:
            forecast[-1].ended_by = event.detail
    for previous, following in itertools.pairwise(forecast):
        previous.ended_by = previous.ended_by or f"next phase {following.name}"
    if forecast and forecast[-1].end_h is None and not math.isnan(run.ended_at):
        forecast[-1].end_h = (run.ended_at - start) / 3600.0
    return forecast


class _Watch:
    """Limits checked every tick of the dry run."""

    def __init__(self, max_volume_ml: float, t_min: float, t_max: float) -> None:
        self.max_volume_ml = max_volume_ml
        self.t_min = t_min
        self.t_max = t_max
        self.peak_volume_ml = 0.0
        self.hottest = -math.inf
        self.coldest_after_warm_up = math.inf
        self._warm = False

    def observe(self, loop: ControlLoop, unit: str, run: UnitRun) -> None:
        reading = loop.last_readings.get(unit)
        if reading is None:
            return
        volume, temperature = reading.volume_ml, reading.temperature
        if not math.isnan(volume) and volume > self.peak_volume_ml:
            self.peak_volume_ml = volume
        if math.isnan(temperature):
            return
        if temperature > self.hottest:
            self.hottest = temperature
        if not self._warm:  # every tick of 182 h: the setpoint only until warm
            setpoint = run.temperature_setpoint
            self._warm = setpoint is not None and temperature >= setpoint - 0.2
        if self._warm and temperature < self.coldest_after_warm_up:
            self.coldest_after_warm_up = temperature

    def violations(self, run: UnitRun) -> list[str]:
        found = []
        if run.state != RunState.COMPLETE:
            found.append(
                f"run ends {run.state.value}" + (f": {run.hold_reason}" if run.hold_reason else "")
            )
        if self.peak_volume_ml > self.max_volume_ml:
            found.append(
                f"volume reaches {self.peak_volume_ml:.0f} mL, above the vessel's "
                f"{self.max_volume_ml:.0f} mL"
            )
        if self.hottest > self.t_max:
            found.append(
                f"temperature reaches {self.hottest:.2f} °C, above the unit's {self.t_max} °C"
            )
        if self.coldest_after_warm_up < self.t_min:
            found.append(f"temperature falls to {self.coldest_after_warm_up:.2f} °C after warm-up")
        return found
