"""Chain of identity over real OPC UA (SPEC §12): Start binds a run to a batch and to the
cartridge installed in the unit; the instrument checks the cartridge; in GMP mode Start and
Abort are signed `performed`; the batch id travels into the journal, the audit trail, the
address space and the report. The rig has no devices: it says which cartridge is installed."""

from __future__ import annotations

from pathlib import Path

from asyncua import ua
from gmp_rig import reason_of, signature
from operator_rig import Daemon, connect, make_daemon, unit_node
from test_methods_and_roles import call
from test_protocol_lifecycle import load_demo, sign_step

from shuttled.records.audit import read_journal
from shuttled.records.journal import Journal
from shuttled.records.signatures import read_signatures
from shuttled.reports.data import load_report_data
from shuttled.reports.html import render_report

S = ua.StatusCodes


def _journal(daemon: Daemon) -> Path:
    return daemon.data_dir / "journal.sqlite3"


async def _read(unit, ns: int, *path: str) -> object:
    node = await unit.get_child([f"{ns}:{name}" for name in path])
    return await node.read_value()


async def test_another_cartridge_than_the_installed_one_cannot_start_and_the_batch_travels(
    daemon: Daemon,
) -> None:
    identity = await load_demo(daemon)
    client = await connect(daemon.endpoint, "otto")
    try:
        unit, ns = await unit_node(client)
        refused = await call(unit, ns, "Start", identity, "", "patient 1", "DIN-A0001",
                             "CRT-U02", "")
        assert refused.StatusCode.value == S.BadInvalidArgument
        assert "'CRT-U02' is not the cartridge installed in U01 ('CRT-U01')" in reason_of(refused)
        assert daemon.runs["U01"].state.value == "IDLE"

        started = await call(unit, ns, "Start", identity, "", "patient 1", "DIN-A0001",
                             "CRT-U01", "")
        assert started.StatusCode.is_good(), reason_of(started)
        run_id = started.OutputArguments[0].Value
        await daemon.server.refresh()
        active = ("ProgramManager", "ActiveProgram")
        assert await _read(unit, ns, *active, "BatchId") == "DIN-A0001"
        assert await _read(unit, ns, *active, "CartridgeId") == "CRT-U01"
        held = await call(unit, ns, "Hold", "check the bag")
        assert held.StatusCode.is_good(), reason_of(held)
        await daemon.tick()
        assert (await call(unit, ns, "Stop", "end of the test")).StatusCode.is_good()
        await daemon.tick()
        result = await unit.get_child([f"{ns}:ProgramManager", f"{ns}:ResultSet", f"{ns}:{run_id}",
                                       f"{ns}:BatchId"])
        assert await result.read_value() == "DIN-A0001"
    finally:
        await client.disconnect()

    journal = Journal(_journal(daemon))
    try:
        assert journal.run_batch(run_id) == ("DIN-A0001", "CRT-U01")
    finally:
        journal.close()
    starts = [r for r in read_journal(_journal(daemon)) if r.method == "Start"]
    assert [r.result for r in starts] == ["BadInvalidArgument", "Good"]
    assert starts[0].arguments["batch"] == "DIN-A0001"
    assert starts[0].arguments["cartridge"] == "CRT-U02"  # what was asked, refused
    assert "not the cartridge installed" in starts[0].detail
    of_the_run = [r for r in read_journal(_journal(daemon)) if r.arguments.get("run_id") == run_id]
    assert [r.method for r in of_the_run] == ["Hold", "Stop"]
    assert all(r.arguments["batch"] == "DIN-A0001" for r in [starts[1], *of_the_run])

    report = load_report_data(_journal(daemon), run_id)
    assert (report.batch, report.cartridge) == ("DIN-A0001", "CRT-U01")
    assert "DIN-A0001" in render_report(report) and "CRT-U01" in render_report(report)


async def test_a_start_with_the_three_inputs_of_spec_5_still_works_outside_gmp(
    daemon: Daemon,
) -> None:
    identity = await load_demo(daemon)
    client = await connect(daemon.endpoint, "otto")
    try:
        unit, ns = await unit_node(client)
        started = await call(unit, ns, "Start", identity, "", "an old client")
        assert started.StatusCode.is_good(), reason_of(started)
        run_id = started.OutputArguments[0].Value
        # a batch alone binds the run to the cartridge installed now, so a swap is still seen
        u02, _ = await unit_node(client, "U02")
        await load_demo(daemon, unit="U02")
        bound = await call(u02, ns, "Start", identity, "", "batch only", "DIN-B")
        assert bound.StatusCode.is_good(), reason_of(bound)
    finally:
        await client.disconnect()
    assert daemon.runs["U01"].batch_id is None and daemon.runs["U01"].cartridge_id is None
    assert (daemon.runs["U02"].batch_id, daemon.runs["U02"].cartridge_id) == ("DIN-B", "CRT-U02")
    journal = Journal(_journal(daemon))
    try:
        assert journal.run_batch(run_id) == (None, None)
    finally:
        journal.close()
    start = next(r for r in read_journal(_journal(daemon)) if r.method == "Start")
    assert "batch" not in start.arguments and start.result == "Good"


async def test_a_malformed_batch_id_is_refused_with_its_reason(daemon: Daemon) -> None:
    identity = await load_demo(daemon)
    client = await connect(daemon.endpoint, "otto")
    try:
        unit, ns = await unit_node(client)
        for batch, why in (("D" * 65, "1 to 64 characters"), ("DIN\n1", "printable"),
                           (" DIN-1", "blanks")):
            refused = await call(unit, ns, "Start", identity, "", "x", batch, "CRT-U01", "")
            assert refused.StatusCode.value == S.BadInvalidArgument, batch
            assert "BatchId" in reason_of(refused) and why in reason_of(refused)
        too_many = await call(unit, ns, "Start", identity, "", "x", "B", "CRT-U01", "", "extra")
        assert too_many.StatusCode.value == S.BadTooManyArguments
    finally:
        await client.disconnect()
    assert daemon.runs["U01"].state.value == "IDLE"


async def test_in_gmp_mode_start_and_abort_need_batch_cartridge_and_a_performed_signature(
    tmp_path: Path,
) -> None:
    daemon = await make_daemon(tmp_path, gmp=True)
    try:
        identity = await load_demo(daemon)
        assert (await sign_step(daemon, "otto", "SubmitProtocol", identity, "authored")
                ).StatusCode.is_good()
        assert (await sign_step(daemon, "quinn", "ApproveProtocol", identity, "approved")
                ).StatusCode.is_good()
        client = await connect(daemon.endpoint, "otto")
        try:
            unit, ns = await unit_node(client)
            performed = signature("otto", "performed", "bag DIN-G1 connected")
            for args, status, why in (
                ((), S.BadInvalidArgument, "needs the BatchId"),
                (("DIN-G1", "", ""), S.BadInvalidArgument, "needs the CartridgeId"),
                (("DIN-G1", "CRT-U01", ""), S.BadInvalidArgument, "needs a Signature"),
                (("DIN-G1", "CRT-U01", signature("otto", "performed", password="wrong")),
                 S.BadUserAccessDenied, "wrong password"),
                (("DIN-G1", "CRT-U01", signature("otto", "approved")), S.BadInvalidArgument,
                 "meaning 'performed'"),
                (("DIN-G1", "CRT-U09", performed), S.BadInvalidArgument, "not the cartridge"),
            ):
                refused = await call(unit, ns, "Start", identity, "", "batch G1", *args)
                assert refused.StatusCode.value == status, (args, reason_of(refused))
                assert why in reason_of(refused)
            started = await call(unit, ns, "Start", identity, "", "batch G1", "DIN-G1",
                                 "CRT-U01", performed)
            assert started.StatusCode.is_good(), reason_of(started)
            run_id = started.OutputArguments[0].Value
        finally:
            await client.disconnect()
        assert [s.meaning for s in read_signatures(_journal(daemon), "run", run_id)] == [
            "performed"]
        client = await connect(daemon.endpoint, "sue")
        try:
            unit, ns = await unit_node(client)
            refused = await call(unit, ns, "Abort", "contamination")
            assert refused.StatusCode.value == S.BadInvalidArgument
            assert "Abort needs a Signature" in reason_of(refused)
            aborted = await call(unit, ns, "Abort", "contamination",
                                 signature("sue", "performed", "bag leaking"))
            assert aborted.StatusCode.is_good(), reason_of(aborted)
        finally:
            await client.disconnect()
        abort_signatures = read_signatures(_journal(daemon), "run.abort", run_id)
        assert [(s.signer, s.meaning) for s in abort_signatures] == [("sue", "performed")]
        records = read_journal(_journal(daemon))
        assert all("password" not in str(r.arguments) for r in records)
        aborts = [r for r in records if r.method == "Abort"]
        assert [r.result for r in aborts] == ["BadInvalidArgument", "Good"]
        assert all(r.arguments["batch"] == "DIN-G1" for r in aborts)
    finally:
        await daemon.server.stop()
