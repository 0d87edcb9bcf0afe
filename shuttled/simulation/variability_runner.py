"""Where the virtual patients run: a local process pool, or a Dask cluster.

Each patient is an independent, CPU-bound dry run of one to a few dozen seconds, so patients are
the unit of work everywhere: one pool task or one Dask task per patient, results gathered by
patient index. Processes, not threads: the twin is a whole daemon on an asyncio loop with numba
kernels, holding the GIL most of the time.

On Dask each patient is one task with a key made of the job's inputs and the patient's index
(`VariabilityJob.key`). The scheduler, not this client, owns the task: when a worker dies
mid-run the scheduler sees its connection go and hands its tasks (and any result only it held)
to another worker under the same keys, so a killed worker costs time, never a patient; and as a
patient's result depends only on its inputs, a recomputed patient is the same patient.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

import structlog

from shuttled.service.log_setup import configure_logging
from shuttled.simulation.variability import VariabilityJob, run_job_patient

log = structlog.get_logger(__name__)

ProgressCallback = Callable[[int], None]  # called with a patient's index when it is done
SCHEDULER_CONNECT_TIMEOUT_S = 10.0


class SchedulerUnreachable(Exception):
    """The Dask scheduler did not answer: a clear reason for the command line to print."""


class PatientFailed(Exception):
    """One patient's dry run raised: which patient, and what (the cause is chained)."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(f"patient {index}: {type(error).__name__}: {error}")
        self.index = index


def _result(future, index: int) -> dict:
    try:
        return future.result()
    except Exception as error:
        raise PatientFailed(index, error) from error


def _pool_context() -> multiprocessing.context.BaseContext:
    """Fork-server processes with the twin already imported.

    Not plain fork: the caller may be running threads (the progress bar's refresh, Dask's
    loop), and a child forked while another thread holds a lock can hang. Not spawn either:
    every worker would import the daemon anew; the fork server imports it once, threadless.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["shuttled.simulation.variability"])
    return context


def _quiet_worker() -> None:
    """Each patient's daemon logs its start and stop: in a pool worker that is noise on the
    caller's terminal, and on stdout it would break `--json`. Errors only, on stderr."""
    configure_logging("error")


def run_local(
    job: VariabilityJob, workers: int | None = None, on_done: ProgressCallback | None = None
) -> list[dict]:
    """Every patient of `job` on a local process pool of `workers` (default: one per CPU)."""
    workers = max(1, min(workers or os.cpu_count() or 1, job.patients))
    results: list[dict | None] = [None] * job.patients
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=_pool_context(), initializer=_quiet_worker
    ) as pool:
        futures = {pool.submit(run_job_patient, job, i): i for i in range(job.patients)}
        try:
            for future in as_completed(futures):
                index = futures[future]
                results[index] = _result(future, index)
                if on_done:
                    on_done(index)
        except BaseException:
            for future in futures:  # Ctrl-C or a failed patient: start nothing more
                future.cancel()
            raise
    return _complete(results)


def run_dask(
    job: VariabilityJob,
    address: str,
    on_done: ProgressCallback | None = None,
    connect_timeout_s: float = SCHEDULER_CONNECT_TIMEOUT_S,
) -> list[dict]:
    """Every patient of `job` as one task each on the Dask scheduler at `address`.

    Raises SchedulerUnreachable if the scheduler does not answer within `connect_timeout_s`.
    The workers need this package installed (the same version: the task is the function
    `run_job_patient` by name, and the key includes the package version).
    """
    from distributed import Client
    from distributed import as_completed as dask_as_completed

    # The scheduler's own reconnection chatter is not for the user: the error below says it.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    _probe(address, connect_timeout_s)
    try:
        client = Client(address, timeout=connect_timeout_s, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise SchedulerUnreachable(
            f"cannot reach the Dask scheduler at {address!r}: {error}"
        ) from None
    results: list[dict | None] = [None] * job.patients
    with client:
        futures = {
            client.submit(run_job_patient, job, i, key=job.key(i), pure=True): i
            for i in range(job.patients)
        }
        log.info("patients submitted", scheduler=address, patients=job.patients)
        try:
            for future in dask_as_completed(list(futures), loop=client.loop):
                index = futures[future]
                results[index] = _result(future, index)
                if on_done:
                    on_done(index)
        except OSError as error:  # the scheduler went away (workers may come and go)
            raise SchedulerUnreachable(f"lost the Dask scheduler at {address!r}: {error}") from None
    return _complete(results)


def _probe(address: str, timeout_s: float) -> None:
    """Fail fast and plainly on a TCP address nobody listens on.

    Dask's client retries a refused connection until its timeout and then reports only that it
    timed out; a typo in the port deserves 'connection refused' at once.
    """
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location, 8786)  # Dask's default scheduler port
    except ValueError as error:
        raise SchedulerUnreachable(f"not a Dask scheduler address: {address!r} ({error})") from None
    if scheme not in ("tcp", "tls"):
        return  # other transports: let Dask's client find out
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except ConnectionRefusedError:
        reason = "connection refused"
    except TimeoutError:
        reason = f"no answer within {timeout_s:g} s"
    except OSError as error:  # no route, unknown host name...
        reason = error.strerror or str(error)
    else:
        return
    raise SchedulerUnreachable(f"cannot reach the Dask scheduler at {address!r}: {reason}")


def _complete(results: list[dict | None]) -> list[dict]:
    missing = [i for i, result in enumerate(results) if result is None]
    if missing:  # cannot happen unless a runner lost track of a future: never report a gap
        raise RuntimeError(f"no result for patients {missing}")
    return [result for result in results if result is not None]
