"""Operator steps through the console scripts (SPEC §12): `shuttled simulate` answers them itself,
marked as the simulation's; with `--no-auto-confirm` it waits until people answer with
`shuttlectl confirm` and `shuttlectl verify`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from shuttled.engine.operator_steps import WaitingStep
from shuttled.records.signatures import read_signatures
from shuttled.records.users import (
    User,
    create_simulation_account,
    hash_password,
    load_users,
    save_users,
    verify_password,
)
from shuttled.simulation.auto_confirm import made_up_value
from simulators.opcua_bioreactor import free_loopback_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROTOCOL = """\
shuttle_protocol: 1
name: bag-steps
version: 1.0.0
phases:
  - name: prepare
    temperature: 37.0
    steps:
      - confirm: {prompt: Connect the apheresis bag, record: [bag_lot]}
      - confirm: {prompt: Record the vector lot, record: [vector_lot], verify: true}
      - transfer: {pump: vector, volume_ml: 5, rate_ml_min: 5}
  - name: rest
    temperature: 37.0
    duration: 1m
"""
WAIT_S = 60.0  # wall-clock bound of every wait on an observable; normally a few seconds


def _step_events(journal: Path) -> list[dict]:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT detail FROM events WHERE kind = 'operator_step' ORDER BY id")
        return [json.loads(detail) for (detail,) in rows.fetchall()]
    except sqlite3.OperationalError:  # the journal is being created
        return []
    finally:
        db.close()


def test_simulate_answers_operator_steps_itself_and_says_so(tmp_path: Path) -> None:
    protocol = tmp_path / "steps.yaml"
    protocol.write_text(PROTOCOL)
    data = tmp_path / "data"
    result = subprocess.run(
        [str(BIN / "shuttled"), "simulate", "--units", "1", "--seed", "4", "--json",
         "--protocol", str(protocol), "--data-dir", str(data), "--confirm", "vector_lot=VL-9"],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    (run,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert run["state"] == "COMPLETE"
    answers = [e for e in _step_events(data / "journal.sqlite3") if e["action"] != "waiting"]
    assert [(e["action"], e["by"], e["auto"]) for e in answers] == [
        ("performed", "sim", True), ("performed", "sim", True), ("verified", "sim-verifier", True)]
    made_up = made_up_value(4, "U01", WaitingStep("prepare", 0, "", [], False, 0.0), "bag_lot")
    assert answers[0]["values"] == {"bag_lot": made_up} and made_up.startswith("SIM-BAG-LOT-")
    assert answers[1]["values"] == {"vector_lot": "VL-9"}  # from --confirm
    signed = read_signatures(data / "journal.sqlite3", "operator_step",
                             f"{run['run_id']}/prepare/1")
    assert [(s.signer, s.meaning, s.comment) for s in signed] == [
        ("sim", "performed", "answered by the simulation"),
        ("sim-verifier", "verified", "answered by the simulation")]


def _ctl(endpoint: str, tmp_path: Path, user: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "shuttlectl"), "--endpoint", endpoint, "--pki-dir", str(tmp_path / "pki"),
         "--password-file", str(tmp_path / f"{user}.pw"), *args,
         "--sign-password-file", str(tmp_path / f"{user}.sign")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )


def _wait_for_step(endpoint: str, tmp_path: Path, prompt: str) -> None:
    """Until U01's CurrentStepName is `prompt`, asked over OPC UA with `shuttlectl status`: each
    question takes its own round trip, so this waits on the daemon, never on a sleep."""
    deadline = time.monotonic() + WAIT_S
    seen: list[str] = []
    while time.monotonic() < deadline:
        status = subprocess.run(
            [str(BIN / "shuttlectl"), "--endpoint", endpoint, "--pki-dir", str(tmp_path / "pki"),
             "--password-file", str(tmp_path / "otto.pw"), "status", "--json"],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )
        if status.returncode == 0:
            seen.append(json.loads(status.stdout)[0].get("step") or "")
            if seen[-1] == prompt:
                return
    raise AssertionError(f"U01 never waited at {prompt!r} within {WAIT_S:.0f} s: {seen[-5:]}")


def test_with_no_auto_confirm_the_run_waits_for_two_people(tmp_path: Path) -> None:
    protocol = tmp_path / "steps.yaml"
    protocol.write_text(PROTOCOL)
    users = {"otto": ("operator", "otto-password-1"), "sue": ("supervisor", "sue-password-22")}
    save_users(tmp_path / "users.toml", {n: User(n, r, hash_password(p), n.title())
                                         for n, (r, p) in users.items()})
    for name, (_, password) in users.items():
        (tmp_path / f"{name}.pw").write_text(f"{name}:{password}\n")
        (tmp_path / f"{name}.sign").write_text(f"{password}\n")
    data, port = tmp_path / "data", free_loopback_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}/shuttled"
    process = subprocess.Popen(
        [str(BIN / "shuttled"), "simulate", "--units", "1", "--speed", "60", "--json",
         "--protocol", str(protocol), "--data-dir", str(data), "--no-auto-confirm",
         "--users", str(tmp_path / "users.toml"), "--opcua-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    journal = data / "journal.sqlite3"
    try:
        _wait_for_step(endpoint, tmp_path, "Connect the apheresis bag")
        confirmed = _ctl(endpoint, tmp_path, "otto", "confirm", "U01", "--value", "bag_lot=AP-7")
        assert confirmed.returncode == 0, confirmed.stderr
        assert "'Connect the apheresis bag' performed by otto" in confirmed.stdout
        _wait_for_step(endpoint, tmp_path, "Record the vector lot")
        missing = _ctl(endpoint, tmp_path, "otto", "confirm", "U01")
        assert missing.returncode == 1 and "Values needs vector_lot" in missing.stderr
        confirmed = _ctl(endpoint, tmp_path, "otto", "confirm", "U01", "--value",
                         "vector_lot=VL-2", "--json")
        assert confirmed.returncode == 0, confirmed.stderr
        assert json.loads(confirmed.stdout)["status"] == "verify"
        own = _ctl(endpoint, tmp_path, "otto", "verify", "U01")
        assert own.returncode == 1 and "cannot also verify" in own.stderr
        verified = _ctl(endpoint, tmp_path, "sue", "verify", "U01", "--comment", "lot checked")
        assert verified.returncode == 0, verified.stderr
        out, err = process.communicate(timeout=WAIT_S)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, err
    (run,) = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert run["state"] == "COMPLETE"
    answers = [(e["action"], e["by"], e["auto"], e["values"]) for e in _step_events(journal)
               if e["action"] != "waiting"]
    assert answers == [("performed", "otto", False, {"bag_lot": "AP-7"}),
                       ("performed", "otto", False, {"vector_lot": "VL-2"}),
                       ("verified", "sue", False, {"vector_lot": "VL-2"})]


def test_the_simulation_verifier_is_a_second_account_nobody_can_sign_in_as(
    tmp_path: Path,
) -> None:
    users_file, credentials = create_simulation_account(tmp_path)
    users = load_users(users_file)
    verifier = users["sim-verifier"]
    assert verifier.role == "operator" and verifier.full_name == "Simulation verifier"
    password = credentials.read_text().strip().split(":", 1)[1]
    assert not verify_password(password, verifier.password_hash)
    assert "sim-verifier" not in credentials.read_text()  # its password exists nowhere
