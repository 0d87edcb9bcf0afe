"""One unit's run engine: the ISA-88 state machine driving a protocol's phases and steps.

Pure: `step(snapshot)` returns actions, `command(...)` changes state or raises `CommandRefused`.
Every state change is appended to `events` before it takes effect, which is what the journal and
the operator interfaces mirror; the engine's own fields are the one source of truth for a run.

Phase time only advances while RUNNING: a 24 h activation that was held for an hour still gives
the cells 24 h of activation, and an interrupted transfer is resumed for its remainder only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from protocols.model import Confirm, Phase, Protocol, Transfer
from protocols.state_machine import (
    ACTIVE_STATES,
    Command,
    CommandRefused,
    RunState,
    apply_command,
    complete,
    settle,
)
from shuttled.control.density_control import dilution_volume_ml
from shuttled.engine.actions import Action, StopPump, UnitSnapshot
from shuttled.engine.operator_steps import WaitingStep, wait_at
from shuttled.engine.transfer import TransferProgress

HEATER_OFF_REASON_PREFIX = "temperature"
DILUTION_TARGET = 0.9  # dilute to 90 % of max_density, so probe noise does not re-trigger at once
# Below every fitted media pump's maximum (24 mL/min on the Cell Shuttle); the control loop also
# bounds each Dispense by the pump's configured maximum.
DILUTION_RATE_ML_MIN = 10.0
MIN_DILUTION_ML = 1.0
DILUTION_LOOKAHEAD_S = 5.0  # one control period: the earliest a later decision could act


@dataclass(frozen=True, slots=True)
class RunEvent:
    """A state change or a noteworthy moment of a run, in process time."""

    at: float
    kind: str  # "state", "phase", "step", "alarm"
    state: RunState
    detail: str
    user: str = "system"


@dataclass
class UnitRun:
    """The run state of one cartridge; one instance lives as long as the daemon serves the unit."""

    unit_id: str
    state: RunState = RunState.IDLE
    protocol: Protocol | None = None
    run_id: str | None = None
    parameters: dict[str, float] = field(default_factory=dict)
    hold_reason: str = ""
    phase_index: int = -1
    phase_elapsed_s: float = 0.0
    run_started_at: float = math.nan
    ended_at: float = math.nan
    step_index: int = 0
    transfer: TransferProgress | None = None
    operator_step: WaitingStep | None = None  # a confirm step waiting for people (SPEC §12)
    last_now: float = math.nan
    events: list[RunEvent] = field(default_factory=list)
    delivered_ul: dict[str, float] = field(default_factory=dict)
    _volume_cap_reported: bool = False
    # The chain of identity (SPEC §12): the patient's batch and the cartridge the run is bound
    # to, set by Operations.start (None: an unbound run, outside GMP mode only).
    batch_id: str | None = None
    cartridge_id: str | None = None

    # --- queries -----

    @property
    def phase(self) -> Phase | None:
        if self.protocol is None or not 0 <= self.phase_index < len(self.protocol.phases):
            return None
        return self.protocol.phases[self.phase_index]

    @property
    def temperature_setpoint(self) -> float | None:
        """None means the heater stays off (idle, aborted, or held for a temperature fault)."""
        phase = self.phase
        if phase is None or self.state in (RunState.IDLE, RunState.ABORTING, RunState.ABORTED):
            return None
        if self.state == RunState.COMPLETE:
            return phase.temperature  # keep the product warm until it is taken out
        if self.state == RunState.HELD and self.hold_reason.startswith(HEATER_OFF_REASON_PREFIX):
            return None
        return phase.temperature

    def run_time_s(self, now: float) -> float:
        if math.isnan(self.run_started_at):
            return 0.0
        end = self.ended_at if not math.isnan(self.ended_at) else now
        return end - self.run_started_at

    # --- operator commands -----

    def start(
        self,
        protocol: Protocol,
        parameters: dict[str, float],
        run_id: str,
        now: float,
        reason: str,
        user: str = "system",
    ) -> None:
        """Start a run; parameters must already be resolved and bounded by the protocol."""
        new_state = apply_command(self.state, Command.START)
        self.protocol = protocol
        self.parameters = dict(parameters)
        self.run_id = run_id
        self.run_started_at = now
        self.ended_at = math.nan
        self.last_now = now
        self.hold_reason = ""
        self.transfer = None
        self.delivered_ul = {}
        self._record(now, "state", new_state, f"start {protocol.identity}: {reason}", user)
        self.state = new_state
        self._enter_phase(0, now)

    def command(self, command: Command, reason: str, now: float, user: str = "system") -> None:
        """Hold, Restart, Stop, Abort or Reset; raises CommandRefused and changes nothing if the
        state does not allow it."""
        if command == Command.START:
            raise CommandRefused(self.state, command, "Start needs a protocol: use start()")
        new_state = apply_command(self.state, command)
        self._record(now, "state", new_state, f"{command.value.lower()}: {reason}", user)
        if command == Command.HOLD:
            self.hold_reason = reason
        if command == Command.RESET:
            self.phase_index = -1
            self.run_id = None
            self.batch_id = self.cartridge_id = None
            self.hold_reason = ""
        self.state = new_state

    # --- the tick -----

    def step(self, snapshot: UnitSnapshot) -> list[Action]:
        """Advance the run to `snapshot.now` and return what the instrument must do now."""
        now = snapshot.now
        elapsed = 0.0 if math.isnan(self.last_now) else max(now - self.last_now, 0.0)
        self.last_now = now
        if self.state in (RunState.HOLDING, RunState.STOPPING, RunState.ABORTING):
            return self._finish_transient(snapshot)
        if self.state == RunState.RESTARTING:
            self._settle(now, "restarted")
            return []
        if self.state != RunState.RUNNING:
            return []
        self.phase_elapsed_s += elapsed
        return self._run_phase(snapshot)

    def _run_phase(self, snapshot: UnitSnapshot) -> list[Action]:
        phase = self.phase
        assert phase is not None and self.protocol is not None
        actions: list[Action] = []
        if self.transfer is not None and self.transfer.kind == "dilution":
            actions.extend(self._advance_dilution(snapshot))
        elif self.step_index < len(phase.steps):
            actions.extend(self._advance_step(phase.steps[self.step_index], snapshot))
        if self.state != RunState.RUNNING:
            return actions

        if phase.timeout_s is not None and self.phase_elapsed_s >= phase.timeout_s:
            return actions + self._on_timeout(phase, snapshot.now)
        if self.step_index < len(phase.steps) or self.transfer is not None:
            return actions  # a phase never ends in the middle of moving liquid
        if phase.density_control is not None:
            actions.extend(self._start_dilution_if_needed(phase, snapshot))
            if self.transfer is not None:
                return actions
        if phase.until is not None and bool(phase.until.evaluate(self._signals(snapshot))):
            self._next_phase(snapshot.now, f"until {phase.until_text} held")
        elif phase.duration_s is not None and self.phase_elapsed_s >= phase.duration_s:
            self._next_phase(snapshot.now, "duration elapsed")
        elif phase.ends_by_steps:
            self._next_phase(snapshot.now, "steps done")
        return actions

    def _advance_step(self, transfer: Transfer | Confirm, snapshot: UnitSnapshot) -> list[Action]:
        if isinstance(transfer, Confirm):  # an operator step: wait in RUNNING, move nothing
            return wait_at(self, transfer, snapshot.now)
        if self.transfer is None:
            volume_ml = snapshot.volume_ml if transfer.is_all else transfer.volume_ml
            if volume_ml is None or math.isnan(volume_ml):
                return []  # `volume: all` needs a volume reading
            self.transfer = TransferProgress(
                transfer.pump, volume_ml * 1000.0, transfer.rate_ml_min * 1000.0
            )
            self._record(
                snapshot.now,
                "step",
                self.state,
                f"transfer {transfer.pump} {volume_ml:.1f} mL started",
            )
        actions, done = self._drive(self.transfer, snapshot)
        if done:
            self.step_index += 1
        return actions

    def _start_dilution_if_needed(self, phase: Phase, snapshot: UnitSnapshot) -> list[Action]:
        """Dilute when the density predicted for the end of a dilution would exceed the limit, back
        to DILUTION_TARGET of it (the density-control kernel's law: growth-aware, hysteresis
        against probe noise, never beyond the protocol's volume cap)."""
        assert phase.density_control is not None and self.protocol is not None
        control = phase.density_control
        limit = self.protocol.phase_max_density(phase, self.parameters)
        density, volume = snapshot.density, snapshot.volume_ml
        if limit is None or math.isnan(density) or math.isnan(volume):
            return []
        volume_ml = dilution_volume_ml(
            density,
            snapshot.growth_rate,
            volume,
            limit,
            control.max_volume_ml,
            DILUTION_RATE_ML_MIN,
            DILUTION_LOOKAHEAD_S,
            DILUTION_TARGET,
            MIN_DILUTION_ML,
        )
        if volume_ml <= 0.0:
            if density > limit and not self._volume_cap_reported:
                self._volume_cap_reported = True
                self._record(
                    snapshot.now,
                    "alarm",
                    self.state,
                    f"density {density:.3g}/mL above {limit:.3g}/mL but the vessel is at "
                    f"its {control.max_volume_ml:g} mL cap",
                )
            return []
        self.transfer = TransferProgress(
            control.pump, volume_ml * 1000.0, DILUTION_RATE_ML_MIN * 1000.0, kind="dilution"
        )
        self._record(
            snapshot.now,
            "step",
            self.state,
            f"dilution {control.pump} {volume_ml:.1f} mL (density {density:.3g}/mL "
            f"above {limit:.3g}/mL)",
        )
        return self._advance_dilution(snapshot)

    def _advance_dilution(self, snapshot: UnitSnapshot) -> list[Action]:
        assert self.transfer is not None
        actions, _ = self._drive(self.transfer, snapshot)
        return actions

    def _drive(
        self, progress: TransferProgress, snapshot: UnitSnapshot
    ) -> tuple[list[Action], bool]:
        """Follow one transfer by the pump's counter; returns the actions and whether it is done."""
        view = snapshot.pumps.get(progress.pump)
        if view is None:
            return [], False  # no fresh status this tick: wait rather than guess
        counted = progress.follow(view)
        if counted is not None:
            self._record(
                snapshot.now,
                "alarm",
                self.state,
                f"pump {progress.pump} counter restarted (power lost?): {counted / 1000:.2f} mL "
                "of the open segment counted up to its last reading, what moved after it unknown",
            )
        if progress.is_done(view):
            delivered = progress.delivered_ul(view)
            self.delivered_ul[progress.pump] = self.delivered_ul.get(progress.pump, 0.0) + delivered
            self._record(
                snapshot.now,
                "step",
                self.state,
                f"{progress.kind} {progress.pump} done: {delivered / 1000:.2f} mL",
            )
            self.transfer = None
            return [], True
        if progress.segment_baseline_ul is not None and view.running:
            return [], False
        if view.alarms:
            self._auto_hold(
                snapshot.now, f"pump {progress.pump} alarm: {','.join(sorted(view.alarms))}"
            )
            return [], False
        return [progress.next_command(view)], False  # new, or stopped short: only the remainder

    def _on_timeout(self, phase: Phase, now: float) -> list[Action]:
        message = f"phase {phase.name} timed out after {self.phase_elapsed_s / 3600:.2f} h"
        if phase.on_timeout == "continue":
            self._next_phase(now, message)
            return []
        if phase.on_timeout == "abort":
            self._record(now, "state", RunState.ABORTING, message)
            self.state = RunState.ABORTING
            return self._stop_transfer()
        self._auto_hold(now, message)
        return self._stop_transfer()

    def _auto_hold(self, now: float, reason: str) -> None:
        self.command(Command.HOLD, reason, now)

    def action_failed(self, now: float, reason: str) -> None:
        """The instrument could not carry out an action: hold rather than carry on blind."""
        if self.state == RunState.RUNNING:
            self._auto_hold(now, reason)

    def hold_after_restart(self, now: float, reason: str) -> None:
        """Restore-only: an active run comes back holding, whatever it was doing (SPEC §4).

        Not a Hold command: a run that was already HELD also passes through HOLDING once, so the
        first tick stops any pump a dispense may have left running while the daemon was down.
        """
        self._record(now, "state", RunState.HOLDING, f"hold: {reason}")
        self.state = RunState.HOLDING
        self.hold_reason = reason

    def _finish_transient(self, snapshot: UnitSnapshot) -> list[Action]:
        actions = self._stop_transfer()
        self._settle(snapshot.now, "settled")
        return actions

    def _stop_transfer(self) -> list[Action]:
        """Stop the pump but leave the segment open: the pump moves on until STOP reaches it,
        so what it delivered is read from its counter when the remainder is commanded."""
        if self.transfer is None:
            return []
        return [StopPump(self.transfer.pump)]

    def _settle(self, now: float, detail: str) -> None:
        new_state = settle(self.state)
        self._record(now, "state", new_state, detail)
        self.state = new_state
        if new_state in (RunState.STOPPED, RunState.ABORTED):
            self.ended_at = now
        if new_state == RunState.RUNNING:
            self.hold_reason = ""

    def _enter_phase(self, index: int, now: float) -> None:
        self.phase_index = index
        self.phase_elapsed_s = 0.0
        self.step_index = 0
        self._volume_cap_reported = False
        self.transfer = None
        self.operator_step = None
        assert self.protocol is not None
        phase = self.protocol.phases[index]
        self._record(now, "phase", self.state, f"phase {phase.name} at {phase.temperature:.1f} °C")

    def _next_phase(self, now: float, why: str) -> None:
        assert self.protocol is not None
        if self.phase_index + 1 < len(self.protocol.phases):
            self._enter_phase(self.phase_index + 1, now)
            return
        new_state = complete(self.state)
        self._record(now, "state", new_state, f"protocol complete ({why})")
        self.state = new_state
        self.ended_at = now

    def _signals(self, snapshot: UnitSnapshot) -> dict[str, float]:
        growth = snapshot.growth_rate
        values = dict(self.parameters)
        values.update(
            temperature=snapshot.temperature,
            density=snapshot.density,
            volume_ml=snapshot.volume_ml,
            total_cells=snapshot.density * snapshot.volume_ml,
            growth_rate=growth,
            doubling_time_h=math.log(2.0) / growth if growth > 0 else math.inf,
            phase_time_h=self.phase_elapsed_s / 3600.0,
            run_time_h=self.run_time_s(snapshot.now) / 3600.0,
        )
        return values

    def _record(
        self, now: float, kind: str, state: RunState, detail: str, user: str = "system"
    ) -> None:
        self.events.append(RunEvent(now, kind, state, detail, user))

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES
