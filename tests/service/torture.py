"""Drives crash torture: start a run, kill at each planned moment, bring everything back, Restart.

`Torture.run(plan)` leaves the run COMPLETE with the daemon and the simulator still up; the test
then stops both and checks what is left (`tests/service/test_crash_torture.py`). In a power cut
the simulator dies with the daemon and comes back from its state file with a new configuration
(new pseudo-terminals and ports, the same data directory); otherwise only the daemon dies.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import tomllib
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from crash_rig import BIN, Daemon, Operator, Simulator, operator_endpoint
from kill_plan import HELD, RESTARTING, TIMELINE, Moment

from simulators.physical_state import read_state

DAEMON_RESTARTED = "daemon restarted"
ENDED = "COMPLETE"


@dataclass
class Cut:
    """What one kill left: the moment, the run's state then, and (power cut) the plant."""

    moment: Moment
    state: str
    step: str
    pump_totals_ul: dict[str, float] = field(default_factory=dict)
    checkpoint: dict | None = None


@dataclass
class Torture:
    """One run under torture; `cuts` records every kill in the order they came."""

    sim: Simulator
    daemon: Daemon
    protocol_text: str
    phases: dict[str, int]  # phase name -> index, to read CurrentStepName
    power_cut: bool = False
    control_period_s: float = 5.0  # read from the configuration at start
    cuts: list[Cut] = field(default_factory=list)
    operator: Operator | None = None
    config: Path | None = None

    @property
    def period_wall_s(self) -> float:
        return self.control_period_s / self.sim.speed

    @property
    def credentials(self) -> Path:
        return self.sim.data_dir / "sim-credentials"

    async def start(self) -> None:
        self.config = self.sim.start()
        self.control_period_s = tomllib.loads(self.config.read_text())["control_period_s"]
        self.daemon.start(self.config)
        self.operator = await Operator.open(operator_endpoint(self.config), self.credentials)
        template, errors = await self._operator.call("LoadProtocol", self.protocol_text)
        assert template and not errors, errors
        await self._operator.call("Start", template, "{}", "crash torture")

    async def run(self, plan: list[Moment]) -> None:
        """Kill at every moment of `plan`, in order; then Restart once more and await the end."""
        for moment in plan:
            if self.cuts and await self._held_again() and moment.kind != HELD:
                await self.restart()
            if moment.kind == TIMELINE:
                await self._operator.wait_until(
                    lambda seen, m=moment: m.reached(seen, self.phases), moment.describe()
                )
            await self.kill(moment)
            await self.come_back()
        if await self._held_again():
            await self.restart()
        await self._operator.wait_until(
            lambda seen: seen.get("State") == ENDED, "end of the run", 300
        )

    @property
    def _operator(self) -> Operator:
        assert self.operator is not None, "the torture has not started"
        return self.operator

    async def _held_again(self) -> bool:
        """After a restart the run is HELD for `daemon restarted` (True), or it had ended."""
        operator = self._operator
        await operator.wait_until(
            lambda seen: seen.get("State") in ("HELD", ENDED), "HELD after the restart"
        )
        if operator.seen["State"] == ENDED:
            return False
        assert operator.seen.get("HoldReason") == DAEMON_RESTARTED, operator.seen
        return True

    async def restart(self) -> None:
        """The operator's Restart: OPC UA in the kill -9 torture, `shuttlectl` after a power cut."""
        assert self.config is not None
        reason = f"checked after kill {len(self.cuts)}"
        if not self.power_cut:
            await self._operator.call("Restart", reason)
            return
        process = await asyncio.create_subprocess_exec(
            str(BIN / "shuttlectl"), "--endpoint", operator_endpoint(self.config),
            "--password-file", str(self.credentials), "restart", "U01", "--reason", reason,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, (out, err)

    async def kill(self, moment: Moment) -> None:
        """SIGKILL a random part of a control period after the moment was seen: the offset is
        part of the moment (where in the tick the kill lands), not a wait for anything. The
        operator's console closes its session first, so no client outlives the daemon."""
        operator = self._operator
        state = str(operator.seen.get("State"))
        step = str(operator.seen.get("CurrentStepName"))
        await self.close()
        periods = 2.0 if moment.kind == RESTARTING else 1.0
        await asyncio.sleep(moment.jitter * periods * self.period_wall_s)
        if self.power_cut:
            # Both at once, as the mains would; which signal goes first is part of the moment.
            power_cut(self.sim, self.daemon, sim_first=moment.jitter < 0.5)
        else:
            self.daemon.kill()
        cut = Cut(moment, state, step)
        if self.power_cut:
            cut.pump_totals_ul = read_totals(self.sim.state_file)
            cut.checkpoint = read_checkpoint(self.sim.data_dir / "journal.sqlite3")
        self.cuts.append(cut)

    async def come_back(self) -> None:
        if self.power_cut:
            self.config = self.sim.start()
        assert self.config is not None
        self.daemon.start(self.config)
        self.operator = await Operator.open(operator_endpoint(self.config), self.credentials)

    async def close(self) -> None:
        if self.operator is not None:
            await self.operator.close()
            self.operator = None


def power_cut(sim: Simulator, daemon: Daemon, sim_first: bool) -> None:
    """SIGKILL the instrument and the daemon within microseconds, then reap both."""
    processes = [sim.process, daemon.process]
    assert processes[0] is not None and processes[1] is not None
    for process in processes if sim_first else processes[::-1]:
        process.send_signal(signal.SIGKILL)
    sim.kill()
    daemon.kill()


def read_totals(state_file: Path) -> dict[str, float]:
    return dict(read_state(state_file).pump_totals_ul)


def read_checkpoint(journal: Path) -> dict | None:
    with closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT data FROM checkpoints WHERE unit = 'U01'").fetchone()
    return None if row is None else json.loads(row[0])
