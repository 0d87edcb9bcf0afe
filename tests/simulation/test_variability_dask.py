"""`analyze --patients N --scheduler ADDRESS` on a real Dask cluster equals the local result.

A scheduler and two workers run as separate processes on loopback, started with the `dask`
command line as an operator would; the scheduler's address comes from its scheduler file. The
same analysis is then run locally (a process pool) and on the cluster, once untouched and once
with a worker killed by SIGKILL while it runs a patient: every aggregate and every patient must
be identical, because each patient is a pure task with its own key and the scheduler, which
owns the tasks, recomputes the ones a dead worker held.

Waiting is on conditions (the scheduler file written, the workers registered, a patient
executing on the worker to kill), each with a deadline, never on a fixed sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from distributed import Client

from shuttled.simulation.variability import VariabilityJob, aggregate
from shuttled.simulation.variability_runner import run_dask
from tests.simulation.variability_case import PATIENTS, SEED, SHORT

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEADLINE_S = 60.0


def _wait_for(condition: Callable[[], object], what: str, timeout_s: float = DEADLINE_S):
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _scheduler_address(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None  # not written yet, or half written


def _start(args: list[str], log: Path) -> subprocess.Popen:
    """`dask ARGS` in its own process, its log in `log` (read it when a test fails)."""
    with log.open("wb") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([str(BIN / "dask"), *args], cwd=log.parent,
                                stdout=subprocess.DEVNULL, stderr=output)  # fmt: skip


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    scratch = tmp_path_factory.mktemp("dask")
    scheduler_file = scratch / "scheduler.json"
    process = _start(
        ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(scheduler_file)],
        scratch / "scheduler.log",
    )  # fmt: skip
    try:
        yield _wait_for(lambda: _scheduler_address(scheduler_file), "the scheduler file")
    finally:
        _stop(process)


@pytest.fixture
def workers(scheduler: str, tmp_path: Path) -> Iterator[dict[str, subprocess.Popen]]:
    """Two single-threaded workers without nanny (a SIGKILL ends the worker for good)."""
    processes = {
        name: _start(
            [
                "worker",
                scheduler,
                "--name",
                name,
                "--nworkers",
                "1",
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--local-directory",
                str(tmp_path),
            ],
            tmp_path / f"{name}.log",
        )
        for name in ("w0", "w1")
    }
    with Client(scheduler, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=DEADLINE_S)
    try:
        yield processes
    finally:
        for process in processes.values():
            _stop(process)


def test_a_dask_cluster_gives_exactly_the_local_report(scheduler, workers, local_report) -> None:
    result = subprocess.run(
        [str(BIN / "shuttlectl"), "analyze", str(SHORT), "--patients", str(PATIENTS),
         "--seed", str(SEED), "--scheduler", scheduler, "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    on_dask = json.loads(result.stdout)
    assert on_dask["runs"] == local_report["runs"]  # every patient, in patient order
    assert on_dask == local_report  # and so every aggregate


def _executing(client: Client, worker: str) -> list[str]:
    """Keys that `worker` is running right now (asked of the worker itself)."""

    def running(dask_worker) -> list[str]:
        return [str(task.key) for task in dask_worker.state.executing]

    try:
        return client.run(running, workers=[worker])[worker]
    except (OSError, KeyError, ValueError):
        return []


def test_a_worker_killed_mid_analysis_loses_no_patient(scheduler, workers, local_report) -> None:
    job = VariabilityJob.from_file(SHORT, {}, SEED, PATIENTS)
    with Client(scheduler, set_as_default=False) as client:
        address = {
            info["name"]: address for address, info in client.scheduler_info()["workers"].items()
        }["w0"]
        with ThreadPoolExecutor(1) as pool:
            analysis = pool.submit(run_dask, job, scheduler)
            # The scheduler has given w0 a patient, and w0 is running it: kill it there.
            _wait_for(lambda: client.processing().get(address), "a patient processing on w0")
            killed_during = _wait_for(lambda: _executing(client, address) or analysis.done(),
                                      "w0 to run a patient")  # fmt: skip
            assert killed_during is not True, "the analysis ended before w0 ran a patient"
            os.kill(workers["w0"].pid, signal.SIGKILL)
            workers["w0"].wait(timeout=DEADLINE_S)
            runs = analysis.result(timeout=300)
        _wait_for(lambda: address not in client.scheduler_info()["workers"], "w0 to be gone")
    assert str(killed_during[0]).startswith("analyze-patient-")
    report = json.loads(json.dumps(aggregate(job, runs)))
    assert report == local_report
