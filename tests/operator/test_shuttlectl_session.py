"""An operator's session: shuttlectl against `shuttled simulate`, both as console scripts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from operator_rig import DEMO, free_port

BIN = Path(sys.executable).parent


@dataclass
class Simulation:
    endpoint: str
    credentials: Path
    data_dir: Path
    env: dict[str, str]

    def ctl(self, *args: str, credentials: bool = True) -> subprocess.CompletedProcess[str]:
        auth = ["--password-file", str(self.credentials)] if credentials else []
        return subprocess.run(
            [str(BIN / "shuttlectl"), "--endpoint", self.endpoint, *auth, *args],
            capture_output=True, text=True, timeout=60, env=self.env,
        )

    def state(self, unit: str = "U01") -> str:
        result = self.ctl("status", "--json")
        assert result.returncode == 0, result.stderr
        return next(u for u in json.loads(result.stdout) if u["unit"] == unit)["state"]

    def wait_for_state(self, wanted: str, attempts: int = 20) -> None:
        """Each status call takes a control period or more of simulated time; no sleeping."""
        seen = [self.state()]
        while seen[-1] != wanted and len(seen) < attempts:
            seen.append(self.state())
        assert seen[-1] == wanted, seen


@pytest.fixture(scope="module")
def simulation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulation]:
    tmp = tmp_path_factory.mktemp("sim")
    data_dir = tmp / "data"
    env = dict(os.environ, HOME=str(tmp / "home"), XDG_CONFIG_HOME=str(tmp / "home" / ".config"))
    env.pop("SHUTTLECTL_ENDPOINT", None)
    process = subprocess.Popen(
        [str(BIN / "shuttled"), "simulate", "--units", "2", "--speed", "60",
         "--data-dir", str(data_dir), "--opcua-port", str(free_port())],
        stdout=subprocess.PIPE, stderr=(tmp / "stderr.log").open("w"), text=True, env=env,
    )
    assert process.stdout is not None
    endpoint = ""
    for line in process.stdout:  # blocks until the daemon says it is running
        if line.startswith("Operator interface:"):
            endpoint = line.split(":", 1)[1].strip()
            break
    assert endpoint.startswith("opc.tcp://127.0.0.1:"), (tmp / "stderr.log").read_text()
    yield Simulation(endpoint, data_dir / "sim-credentials", data_dir, env)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0


def test_the_credentials_file_is_private_and_holds_the_sim_account(
    simulation: Simulation,
) -> None:
    assert simulation.credentials.stat().st_mode & 0o777 == 0o600
    assert simulation.credentials.read_text().startswith("sim:")


def test_load_start_hold_restart_stop_through_shuttlectl(simulation: Simulation) -> None:
    loaded = simulation.ctl("load", "U01", str(DEMO))
    assert loaded.returncode == 0, loaded.stderr
    template_id = loaded.stdout.strip()
    assert template_id.startswith("demo@1.0.0#")

    started = simulation.ctl("start", "U01", "--protocol", template_id,
                             "--param", "target_cells=6e7", "--reason", "first batch")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    assert run_id.startswith("CS-SIM-U01-")
    assert simulation.state() == "RUNNING"

    refused = simulation.ctl("reset", "U01", "--reason", "too early")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "BadInvalidState" in refused.stderr
    assert "Traceback" not in refused.stderr

    assert simulation.ctl("hold", "U01", "--reason", "inspect the bag").returncode == 0
    simulation.wait_for_state("HELD")
    status = json.loads(simulation.ctl("status", "--json").stdout)[0]
    assert status["hold_reason"] == "inspect the bag" and status["run_id"] == run_id
    assert simulation.ctl("restart", "U01", "--reason", "bag is fine").returncode == 0
    simulation.wait_for_state("RUNNING")
    assert simulation.ctl("stop", "U01", "--reason", "end of the demo").returncode == 0
    simulation.wait_for_state("STOPPED")

    runs = json.loads(simulation.ctl("runs", "--json").stdout)
    assert {"run_id": run_id, "state": "STOPPED", "active": False}.items() <= next(
        r for r in runs if r["run_id"] == run_id and not r["active"]
    ).items()

    log = json.loads(simulation.ctl("audit", "log", "--json").stdout)
    calls = [(r["method"], r["reason"], r["result"]) for r in log if r["unit"] == "U01"]
    assert calls == [
        ("LoadProtocol", "", "Good"),
        ("Start", "first batch", "Good"),
        ("Reset", "too early", "BadInvalidState"),
        ("Hold", "inspect the bag", "Good"),
        ("Restart", "bag is fine", "Good"),
        ("Stop", "end of the demo", "Good"),
    ]
    assert all(r["user"] == "sim" and r["role"] == "supervisor" for r in log)
    assert log[0]["arguments"] == {"protocol": template_id}
    verified = simulation.ctl("audit", "verify")
    assert verified.returncode == 0 and "intact" in verified.stdout


def test_an_invalid_protocol_is_refused_with_located_errors(
    simulation: Simulation, tmp_path: Path
) -> None:
    broken = tmp_path / "hot.yaml"
    broken.write_text(DEMO.read_text().replace("temperature: 37.0", "temperature: 55.0", 1))
    result = simulation.ctl("load", "U02", str(broken))
    assert result.returncode == 1
    assert result.stderr.startswith(f"{broken}:") and "Traceback" not in result.stderr


def test_refusals_and_an_unreachable_daemon_have_their_exit_codes(
    simulation: Simulation, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("sim:not-the-password\n")
    signed_out = simulation.ctl("--password-file", str(wrong), "status", credentials=False)
    assert signed_out.returncode == 1 and "sign-in refused" in signed_out.stderr
    anonymous = simulation.ctl("status", credentials=False)
    assert anonymous.returncode == 1
    unknown_unit = simulation.ctl("hold", "U09", "--reason", "x")
    assert unknown_unit.returncode == 1 and "U09" in unknown_unit.stderr
    gone = subprocess.run(
        [str(BIN / "shuttlectl"), "--endpoint", f"opc.tcp://127.0.0.1:{free_port()}/shuttled",
         "--password-file", str(simulation.credentials), "status"],
        capture_output=True, text=True, timeout=60, env=simulation.env,
    )
    assert gone.returncode == 3 and "cannot reach" in gone.stderr


def test_offline_verification_reads_the_journal_file(simulation: Simulation) -> None:
    result = subprocess.run(
        [str(BIN / "shuttlectl"), "audit", "verify", "--journal",
         str(simulation.data_dir / "journal.sqlite3"), "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True


def test_a_pinned_server_certificate_is_checked_before_signing_in(
    simulation: Simulation, tmp_path: Path
) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from shuttled.operator_server.pki import ensure_certificate

    own = simulation.data_dir / "pki" / "own" / "cert.der"
    pinned = simulation.ctl("--server-cert", str(own), "status", "--json")
    assert pinned.returncode == 0, pinned.stderr
    pem = tmp_path / "daemon.pem"
    pem.write_bytes(x509.load_der_x509_certificate(own.read_bytes()).public_bytes(Encoding.PEM))
    assert simulation.ctl("--server-cert", str(pem), "status").returncode == 0

    impostor = ensure_certificate(tmp_path / "other", "urn:other", "other", server=True)
    refused = simulation.ctl("--server-cert", str(impostor.certificate), "status")
    assert refused.returncode == 1
    assert "not signing in" in refused.stderr and "Traceback" not in refused.stderr
    not_a_certificate = tmp_path / "notes.txt"
    not_a_certificate.write_text("hello")
    garbled = simulation.ctl("--server-cert", str(not_a_certificate), "status")
    assert garbled.returncode == 1 and "is not an X.509 certificate" in garbled.stderr


def test_a_report_comes_over_the_operator_interface_and_is_audited(
    simulation: Simulation, tmp_path: Path
) -> None:
    loaded = simulation.ctl("load", "U02", str(DEMO))
    assert loaded.returncode == 0, loaded.stderr
    started = simulation.ctl("start", "U02", "--reason", "report test", "--json")
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    output = tmp_path / "reports" / "run.html"
    fetched = simulation.ctl("report", run_id, "-o", str(output))
    assert fetched.returncode == 0, fetched.stderr
    html = output.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and run_id in html and "report test" in html
    offline = tmp_path / "offline.html"
    from_journal = subprocess.run(
        [str(BIN / "shuttlectl"), "report", run_id, "-o", str(offline), "--journal",
         str(simulation.data_dir / "journal.sqlite3")],
        capture_output=True, text=True, timeout=60,
    )
    assert from_journal.returncode == 0, from_journal.stderr
    assert "report test" in offline.read_text(encoding="utf-8")

    unknown = simulation.ctl("report", "CS-SIM-U09-0001", "-o", str(tmp_path / "none.html"))
    assert unknown.returncode == 1 and "no run 'CS-SIM-U09-0001'" in unknown.stderr
    assert not (tmp_path / "none.html").exists()
    log = json.loads(simulation.ctl("audit", "log", "--json").stdout)
    reads = [r for r in log if r["method"] == "ReportRead"]
    assert [r["result"] for r in reads[-2:]] == ["Good", "BadInvalidArgument"]
    assert reads[-2]["arguments"] == {"run_id": run_id} and reads[-2]["user"] == "sim"
