"""Chain of identity (SPEC §12): binding a run to the patient's batch and the installed cartridge.

In autologous CAR-T every batch is one patient's cells, so the worst thing the instrument can do
is run a protocol on the wrong cartridge. A run is therefore bound at Start to a `BatchId` (the
patient's chain-of-identity id, e.g. an ISBT 128 DIN) and to the `CartridgeId` the operator
scanned — which must be the cartridge the bioreactor controller reports installed in the unit,
checked here by the instrument, not merely typed. In GMP mode both and a `performed` signature
are required; outside it a Start without them stays valid (existing clients), and a BatchId
alone binds the run to the cartridge installed at that moment, so a later swap is still seen.

These rules are pure (no I/O): `Operations` asks them, whatever interface the request came by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shuttled.engine.operations_errors import OperationRefused
from shuttled.engine.protocol_approval import Signer
from shuttled.records.signatures import canonical_sha256

MAX_BATCH_ID = 64
PERFORMED = "performed"
# Signature book record kinds (SPEC §12): Start signs the run record, Abort signs its abort.
RUN_RECORD_KIND = "run"
ABORT_RECORD_KIND = "run.abort"


@dataclass(frozen=True)
class BatchBinding:
    batch_id: str | None
    cartridge_id: str | None


def printable_id_problem(value: str, name: str, limit: int = MAX_BATCH_ID) -> str | None:
    """Why `value` cannot be a batch or cartridge id: 1–`limit` printable characters, without
    blanks around them (a scanner's trailing newline would otherwise make two ids of one)."""
    if not 1 <= len(value) <= limit:
        return f"{name} must have 1 to {limit} characters, not {len(value)}"
    if not value.isprintable():
        return f"{name} must be printable characters only (no control characters)"
    if value != value.strip():
        return f"{name} must not begin or end with blanks"
    return None


def _checked(value: str | None, name: str) -> str | None:
    if value is None or value == "":
        return None
    problem = printable_id_problem(value, name)
    if problem is not None:
        raise OperationRefused(OperationRefused.ARGUMENT, problem)
    return value


def bind(
    unit: str,
    batch_id: str | None,
    cartridge_id: str | None,
    installed: str | None,
    gmp: bool,
) -> BatchBinding:
    """The batch and cartridge a new run on `unit` is bound to; OperationRefused (argument) for
    a malformed id, one missing in GMP mode, or a cartridge other than the installed one."""
    batch = _checked(batch_id, "BatchId")
    cartridge = _checked(cartridge_id, "CartridgeId")
    if gmp and batch is None:
        raise OperationRefused(OperationRefused.ARGUMENT,
                               "GMP mode: Start needs the BatchId (chain of identity)")
    if gmp and cartridge is None:
        raise OperationRefused(OperationRefused.ARGUMENT,
                               "GMP mode: Start needs the CartridgeId of the installed cartridge")
    if cartridge is not None:
        if installed is None:
            raise OperationRefused(
                OperationRefused.ARGUMENT,
                f"the cartridge installed in {unit} cannot be read from its controller, so "
                f"CartridgeId {cartridge!r} cannot be checked",
            )
        if cartridge != installed:
            raise OperationRefused(
                OperationRefused.ARGUMENT,
                f"CartridgeId {cartridge!r} is not the cartridge installed in {unit} "
                f"({installed!r}): check the cartridge",
            )
    elif batch is not None:
        cartridge = installed  # a batch is always bound to the physical cartridge, if known
    if batch is None:
        return BatchBinding(None, None)  # no batch: nothing bound, the cartridge not watched
    return BatchBinding(batch, cartridge)


def check_performed(signer: Signer | None, gmp: bool, method: str) -> None:
    """In GMP mode Start and Abort are signed `performed` by the caller (SPEC §12)."""
    if signer is None:
        if gmp:
            raise OperationRefused(OperationRefused.ARGUMENT,
                                   f"GMP mode: {method} needs a Signature meaning 'performed'")
        return
    if signer.meaning != PERFORMED:
        raise OperationRefused(OperationRefused.ARGUMENT,
                               f"{method} needs a signature meaning 'performed', "
                               f"not {signer.meaning!r}")


def run_record(
    run_id: str, binding: BatchBinding, identity: str, parameters: dict[str, float]
) -> dict[str, Any]:
    """What a Start signature binds to (its canonical SHA-256): the run, its batch, cartridge,
    protocol identity and resolved parameters."""
    return {"run_id": run_id, "batch": binding.batch_id, "cartridge": binding.cartridge_id,
            "protocol": identity, "parameters": parameters}


def abort_record(run_id: str, batch_id: str | None, reason: str) -> dict[str, Any]:
    """What an Abort signature binds to."""
    return {"run_id": run_id, "batch": batch_id, "command": "Abort", "reason": reason}


def record_sha256(record: dict[str, Any]) -> str:
    return canonical_sha256(record)
