"""The parts that carry a batch, without a daemon: the per-tick cartridge check, the MQTT
payloads, the journal's run columns (and their migration), checkpoints, the binding rules."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from drivers.bioreactor_opcua import BioreactorReading
from protocols import load_protocol_file
from protocols.state_machine import RunState
from shuttled.engine import batch_binding
from shuttled.engine.checkpoint import checkpoint_of, restore_run
from shuttled.engine.operations_errors import OperationRefused
from shuttled.engine.unit_run import UnitRun
from shuttled.loop.cartridge_check import CARTRIDGE_CHANGED, CartridgeCheck
from shuttled.records.journal import Journal
from shuttled.telemetry import payloads

DEMO = Path(__file__).resolve().parents[2] / "protocols" / "library" / "demo.yaml"


def _running(batch: str | None = "DIN-1", cartridge: str | None = "CRT-U01") -> UnitRun:
    run = UnitRun("U01")
    run.start(load_protocol_file(DEMO), {}, "CS-U01-0001", 0.0, reason="test")
    run.batch_id, run.cartridge_id = batch, cartridge
    return run


def _reading(cartridge: str | None) -> dict[str, BioreactorReading]:
    return {"U01": BioreactorReading(37.0, 100.0, cartridge)}


class _Alarms:
    def __init__(self) -> None:
        self.active: dict[str, str] = {}

    def raise_alarm(self, unit: str, name: str, message: str) -> None:
        self.active.setdefault(name, message)

    def clear_alarm(self, unit: str, name: str) -> None:
        self.active.pop(name, None)


def test_a_swap_holds_the_run_and_the_original_cartridge_clears_the_alarm_only() -> None:
    run, alarms = _running(), _Alarms()
    devices = SimpleNamespace(cartridges={})
    check = CartridgeCheck(devices, {"U01": run},  # type: ignore[arg-type]
                           alarms.raise_alarm, alarms.clear_alarm)
    check.check(5.0, _reading("CRT-U01"))
    assert run.state == RunState.RUNNING and alarms.active == {}
    check.check(10.0, _reading("CRT-0099"))
    assert run.state == RunState.HOLDING
    assert run.hold_reason == "cartridge changed: CRT-U01 → CRT-0099"
    assert alarms.active == {CARTRIDGE_CHANGED: "cartridge changed: CRT-U01 → CRT-0099"}
    assert devices.cartridges == {"U01": "CRT-0099"}
    check.check(15.0, _reading(None))  # unknown (controller lost): proves nothing either way
    assert CARTRIDGE_CHANGED in alarms.active
    check.check(20.0, _reading("CRT-U01"))
    assert alarms.active == {} and run.state == RunState.HOLDING  # Restart is a person's call


def test_a_run_without_a_bound_cartridge_is_not_watched() -> None:
    run, alarms = _running(batch=None, cartridge=None), _Alarms()
    check = CartridgeCheck(SimpleNamespace(cartridges={}), {"U01": run},  # type: ignore[arg-type]
                           alarms.raise_alarm, alarms.clear_alarm)
    check.check(10.0, _reading("CRT-0099"))
    assert run.state == RunState.RUNNING and alarms.active == {}


def test_the_state_and_telemetry_payloads_carry_the_batch() -> None:
    run = _running()
    state = payloads.state_payload(payloads.state_of(run), 0.0)
    assert state["batch"] == "DIN-1" and state["run_id"] == "CS-U01-0001"
    assert payloads.state_payload(payloads.state_of(UnitRun("U02")), 0.0)["batch"] is None
    sample = payloads.telemetry_payload(1, 0.0, {"temperature": 37.0}, "good", batch="DIN-1")
    assert sample["batch"] == "DIN-1" and sample["temperature"] == 37.0


def test_a_journal_from_before_batches_gains_the_columns_and_keeps_its_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite3"
    with sqlite3.connect(path) as db:  # the runs table as issue 15's daemon wrote it
        db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, unit TEXT NOT NULL, number "
                   "INTEGER NOT NULL, protocol_identity TEXT NOT NULL, protocol_text TEXT NOT "
                   "NULL, parameters TEXT NOT NULL, started_at REAL NOT NULL, final_state TEXT)")
        db.execute("INSERT INTO runs VALUES ('CS-U01-0001', 'U01', 1, 'p@1#a', 't', '{}', 0, "
                   "'COMPLETE')")
    journal = Journal(path)
    try:
        assert journal.run_batch("CS-U01-0001") == (None, None)
        journal.record_run_start("CS-U01-0002", 2, "U01", "p@1#a", "t", {}, 1.0,
                                 batch_id="DIN-2", cartridge_id="CRT-U01")
        assert journal.run_batch("CS-U01-0002") == ("DIN-2", "CRT-U01")
    finally:
        journal.close()
    Journal(path).close()  # opening it again adds nothing twice


def test_a_checkpoint_keeps_the_batch_across_a_restart() -> None:
    data = json.loads(json.dumps(checkpoint_of(_running())))
    restored = restore_run(data, 100.0)
    assert (restored.batch_id, restored.cartridge_id) == ("DIN-1", "CRT-U01")
    assert restored.state == RunState.HOLDING  # daemon restarted
    del data["batch_id"], data["cartridge_id"]  # a checkpoint from before batches
    assert restore_run(data, 100.0).batch_id is None


@pytest.mark.parametrize(("batch", "cartridge", "installed", "gmp", "bound"), [
    (None, None, "CRT-U01", False, (None, None)),
    ("DIN-1", None, "CRT-U01", False, ("DIN-1", "CRT-U01")),
    ("DIN-1", "CRT-U01", "CRT-U01", True, ("DIN-1", "CRT-U01")),
])
def test_the_binding_rules(batch: str | None, cartridge: str | None, installed: str | None,
                           gmp: bool, bound: tuple[str | None, str | None]) -> None:
    binding = batch_binding.bind("U01", batch, cartridge, installed, gmp)
    assert (binding.batch_id, binding.cartridge_id) == bound


def test_a_cartridge_that_cannot_be_read_cannot_be_checked() -> None:
    with pytest.raises(OperationRefused, match="cannot be read"):
        batch_binding.bind("U01", "DIN-1", "CRT-U01", None, False)
