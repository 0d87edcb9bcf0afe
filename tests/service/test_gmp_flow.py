"""The GMP flow of the README with shuttlectl against `shuttled serve` (gmp = true): add a qa
user, load, see Start refused, submit, approve, start; signatures in `protocol list`, after a
restart, and in the run report; stop the batch and have QA review and release its record;
export a package; print the site key."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from crash_rig import BIN, Daemon, operator_endpoint

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "protocols" / "library" / "demo.yaml"


def _users_file(config: Path) -> Path:
    for line in config.read_text().splitlines():
        if line.startswith("users_file"):
            return Path(line.split("=", 1)[1].strip().strip('"'))
    raise AssertionError("no users_file in the configuration")


def test_the_gmp_flow_through_shuttlectl_against_shuttled_serve(
    start_simulator: Callable[[int, float], Path], tmp_path: Path,
) -> None:
    config = start_simulator(1, 20)
    config.write_text(config.read_text().replace("gmp = false", "gmp = true", 1))
    assert "gmp = true" in config.read_text()
    data_dir = _users_file(config).parent
    sim_password = tmp_path / "sim-password"
    sim_password.write_text(
        (data_dir / "sim-credentials").read_text().strip().split(":", 1)[1] + "\n")
    quinn_password = tmp_path / "quinn-password"
    quinn_password.write_text("quinn approves carefully\n")
    env = dict(os.environ, HOME=str(tmp_path / "home"))

    def ctl(*args: str, user: str = "sim", online: bool = True) -> subprocess.CompletedProcess:
        password = sim_password if user == "sim" else quinn_password
        auth = ["--endpoint", operator_endpoint(config), "--user", user,
                "--password-file", str(password)] if online else []
        return subprocess.run([str(BIN / "shuttlectl"), *auth, *args], capture_output=True,
                              text=True, timeout=120, env=env)

    added = ctl("user", "add", "quinn", "--role", "qa", "--full-name", "Quinn Adams",
                "--users-file", str(_users_file(config)), "--password-file",
                str(quinn_password), online=False)
    assert added.returncode == 0, added.stderr
    daemon = Daemon(tmp_path)
    daemon.start(config)
    try:
        loaded = ctl("load", "U01", str(DEMO))
        assert loaded.returncode == 0, loaded.stderr
        identity = loaded.stdout.strip()
        refused = ctl("start", "U01", "--protocol", identity, "--reason", "batch 1")
        assert refused.returncode == 1 and "only approved protocols start" in refused.stderr
        submitted = ctl("protocol", "submit", identity, "--comment", "ready for review",
                        "--sign-password-file", str(sim_password))
        assert submitted.returncode == 0, submitted.stderr
        wrong = ctl("protocol", "approve", identity, "--sign-password-file", str(sim_password),
                    user="quinn")
        assert wrong.returncode == 1 and "BadUserAccessDenied" in wrong.stderr
        approved = ctl("protocol", "approve", identity, "--sign-password-file",
                       str(quinn_password), user="quinn")
        assert approved.returncode == 0, approved.stderr
        assert "approved" in approved.stdout
        batch = ("start", "U01", "--protocol", identity, "--reason", "batch 1", "--batch",
                 "DIN-0001", "--sign-password-file", str(sim_password), "--cartridge")
        wrong_cartridge = ctl(*batch, "CRT-U02")  # SPEC §12: the instrument checks it
        assert wrong_cartridge.returncode == 1
        assert "not the cartridge installed in U01 ('CRT-U01')" in wrong_cartridge.stderr
        started = ctl(*batch, "CRT-U01")
        assert started.returncode == 0, started.stderr
        run_id = started.stdout.strip()
        exported = ctl("protocol", "export", identity, "-o", str(tmp_path / "demo.shuttlepkg"))
        assert exported.returncode == 0, exported.stderr
        assert json.loads((tmp_path / "demo.shuttlepkg").read_text())["content"]["protocol"][
            "identity"] == identity
    finally:
        daemon.stop()
    daemon.start(config)  # signatures are durable
    try:
        listed = ctl("protocol", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        (entry,) = json.loads(listed.stdout)
        assert entry["state"] == "approved"
        assert [(s["full_name"], s["meaning"], s["status"]) for s in entry["signatures"]] == [
            ("Simulation supervisor", "authored", "signed"),
            ("Quinn Adams", "approved", "signed")]
        shown = ctl("protocol", "show", identity)
        assert "approved by Quinn Adams (quinn)" in shown.stdout
        report = ctl("report", run_id, "-o", str(tmp_path / "report.html"))
        assert report.returncode == 0, report.stderr
        html = (tmp_path / "report.html").read_text()
        assert "approved by Quinn Adams (quinn)" in html
        assert "authored by Simulation supervisor (sim)" in html
        _released_batch_record(ctl, run_id, quinn_password, tmp_path)
    finally:
        daemon.stop()
    key = ctl("site-key", "--data-dir", str(data_dir), online=False)
    assert key.returncode == 0 and key.stdout.startswith("-----BEGIN PUBLIC KEY-----")


def _released_batch_record(ctl: Callable[..., subprocess.CompletedProcess], run_id: str,
                           quinn_password: Path, tmp_path: Path) -> None:
    """The run (HELD after the restart) is stopped; QA reviews and releases its batch record;
    the record says so and cannot be reviewed again."""
    table = ctl("status")  # the people's table names the batch, like --json
    assert table.returncode == 0 and "DIN-0001" in table.stdout, table.stdout
    stopped = ctl("stop", "U01", "--reason", "end of batch DIN-0001")
    assert stopped.returncode == 0, stopped.stderr
    states = []
    for _ in range(60):  # one sign-in and read per try: bounded, and no sleep
        status = ctl("status", "--json")
        states.append(json.loads(status.stdout)[0]["state"])
        if states[-1] == "STOPPED":
            break
    assert states[-1] == "STOPPED", states
    sign = ("--sign-password-file", str(quinn_password))
    for action in ("review", "release"):
        signed = ctl("record", action, run_id, "--comment", f"{action} of DIN-0001", *sign,
                     user="quinn")
        assert signed.returncode == 0, signed.stderr
    again = ctl("record", "review", run_id, *sign, user="quinn")
    assert again.returncode == 1 and "released" in again.stderr
    shown = ctl("record", "show", run_id, "-o", str(tmp_path / "record"))
    assert shown.returncode == 0, shown.stderr
    record = json.loads((tmp_path / "record" / "record.json").read_text())
    assert (record["batch"], record["cartridge"], record["state"]) == (
        "DIN-0001", "CRT-U01", "STOPPED")
    assert record["released"]["by"] == "quinn" and record["released"]["intact"]
    assert [s["meaning"] for s in record["signatures"]][-2:] == ["reviewed", "released"]
