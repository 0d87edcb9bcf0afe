"""The electronic batch record (SPEC §12): built from the journal, validated against its shipped
JSON Schema, reviewed and released over real OPC UA, frozen after release; a faulted run's
record lists its alarms and out-of-band intervals, and its volumes are the journal's."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import jsonschema
import pytest
from asyncua import ua
from gmp_rig import call_at, reason_of, signature
from operator_rig import DEMO, Daemon, connect, make_daemon, unit_node
from rich.console import Console
from test_methods_and_roles import call

from shuttled.reports.batch_record import build_record
from shuttled.reports.batch_record_pdf import pdf_renderer
from shuttled.simulation.simulate import SimulateOptions, simulate

S = ua.StatusCodes
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "shuttled" / "reports"
                     / "batch_record.schema.json").read_text())
FAULTS = """\
- {at: 40m, fault: serial_cut, bus: pumps, duration: 30s}
- {at: 50m, fault: cold_bolus, unit: U01, volume_ml: 10, temperature: 4.0}
"""


async def record_call(daemon: Daemon, user: str, method: str, *args: str) -> ua.CallMethodResult:
    client = await connect(daemon.endpoint, user)
    try:
        return await call_at(client, "Records", method, *args)
    finally:
        await client.disconnect()


async def stopped_run_with_a_hold(daemon: Daemon) -> str:
    client = await connect(daemon.endpoint, "otto")
    try:
        unit, ns = await unit_node(client)
        identity = (await call(unit, ns, "LoadProtocol", DEMO.read_text())).OutputArguments[0]
        started = await call(unit, ns, "Start", identity.Value, "", "batch record test")
        run_id = started.OutputArguments[0].Value
        for method, reason in (("Hold", "bag change"), ("Restart", "bag changed"),
                               ("Stop", "end of the test")):
            result = await call(unit, ns, method, reason)
            assert result.StatusCode.is_good(), (method, reason_of(result))
            await daemon.tick()
        await daemon.tick()
        return run_id
    finally:
        await client.disconnect()


async def test_a_record_is_reviewed_released_frozen_and_later_entries_are_addenda(
        tmp_path: Path) -> None:
    daemon = await make_daemon(tmp_path)
    try:
        run_id = await stopped_run_with_a_hold(daemon)
        read = await record_call(daemon, "vera", "Read", run_id, "json")
        assert read.StatusCode.is_good(), reason_of(read)
        record = json.loads(read.OutputArguments[0].Value)
        jsonschema.validate(record, SCHEMA)
        assert record["state"] == "STOPPED" and record["review_status"] == "open"
        kinds = [d["kind"] for d in record["deviations"]]
        assert {"hold", "intervention", "outcome"} <= set(kinds)
        assert [h["reason"] for h in record["holds"]] == ["bag change"]
        assert [i["method"] for i in record["interventions"]] == ["Hold", "Restart", "Stop"]

        denied = await record_call(daemon, "otto", "ReviewRecord", run_id,
                                   signature("otto", "reviewed"))
        assert denied.StatusCode.value == S.BadUserAccessDenied
        early = await record_call(daemon, "quinn", "ReleaseRecord", run_id,
                                  signature("quinn", "released"))
        assert early.StatusCode.value == S.BadInvalidState and "needs a review" in \
            reason_of(early)
        reviewed = await record_call(daemon, "sue", "ReviewRecord", run_id,
                                     signature("sue", "reviewed", "holds explained"))
        assert reviewed.StatusCode.is_good(), reason_of(reviewed)
        released = await record_call(daemon, "quinn", "ReleaseRecord", run_id,
                                     signature("quinn", "released"))
        assert released.StatusCode.is_good(), reason_of(released)
        again = await record_call(daemon, "sue", "ReviewRecord", run_id,
                                  signature("sue", "reviewed"))
        assert again.StatusCode.value == S.BadInvalidState and "frozen" in reason_of(again)

        client = await connect(daemon.endpoint, "sue")  # an entry after the release
        try:
            unit, ns = await unit_node(client)
            assert (await call(unit, ns, "Reset", "unit cleared")).StatusCode.is_good()
        finally:
            await client.disconnect()
        journal = daemon.data_dir / "journal.sqlite3"
        after = build_record(journal, run_id)
        assert after["review_status"] == "released" and after["released"]["intact"]
        assert [(s["meaning"], s["status"]) for s in after["signatures"]] == [
            ("reviewed", "signed"), ("released", "signed")]
        assert [a["method"] for a in after["addenda"]] == ["Reset"]
        assert {k: v for k, v in after.items() if k not in ("addenda", "audit_head")} == {
            k: v for k, v in build_record(journal, run_id).items()
            if k not in ("addenda", "audit_head")}
        jsonschema.validate(after, SCHEMA)

        html = await record_call(daemon, "vera", "Read", run_id, "html")
        page = html.OutputArguments[0].Value.decode()
        assert page.index("Review by exception") < page.index("Transfers")
        assert "released by Quincy" not in page and "Quinn Adams (quinn)" in page
        assert f"{after['audit_head']['count']} records" in page or "records" in page
        bad_format = await record_call(daemon, "vera", "Read", run_id, "docx")
        assert bad_format.StatusCode.value == S.BadInvalidArgument
        if pdf_renderer() is not None:
            pdf = await record_call(daemon, "vera", "Read", run_id, "pdf")
            assert pdf.OutputArguments[0].Value.startswith(b"%PDF")

        with sqlite3.connect(journal) as db:  # an edit of the frozen copy shows
            db.execute("UPDATE batch_record_releases SET content = replace(content, "
                       "'bag change', 'bag swap')")
        assert not build_record(journal, run_id)["released"]["intact"]
    finally:
        await daemon.server.stop()


async def test_a_record_of_a_running_or_unknown_run_cannot_be_reviewed(tmp_path: Path) -> None:
    daemon = await make_daemon(tmp_path)
    try:
        client = await connect(daemon.endpoint, "otto")
        try:
            unit, ns = await unit_node(client)
            identity = (await call(unit, ns, "LoadProtocol", DEMO.read_text())
                        ).OutputArguments[0].Value
            run_id = (await call(unit, ns, "Start", identity, "", "x")).OutputArguments[0].Value
        finally:
            await client.disconnect()
        running = await record_call(daemon, "sue", "ReviewRecord", run_id,
                                    signature("sue", "reviewed"))
        assert running.StatusCode.value == S.BadInvalidState
        assert "once it has ended" in reason_of(running)
        unknown = await record_call(daemon, "sue", "ReviewRecord", "CS-TEST-U09-0001",
                                    signature("sue", "reviewed"))
        assert unknown.StatusCode.value == S.BadInvalidArgument
        wrong = await record_call(daemon, "sue", "ReviewRecord", run_id,
                                  signature("sue", "reviewed", password="nope"))
        assert wrong.StatusCode.value == S.BadUserAccessDenied
    finally:
        await daemon.server.stop()


@pytest.fixture(scope="module")
def faulted_journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import asyncio

    folder = tmp_path_factory.mktemp("faulted")
    faults = folder / "faults.yaml"
    faults.write_text(FAULTS)
    options = SimulateOptions(units=1, protocols=[DEMO], seed=1, data_dir=folder / "data",
                              faults=faults)
    asyncio.run(simulate(options, Console(quiet=True)))
    return folder / "data" / "journal.sqlite3"


def test_a_faulted_runs_record_lists_its_alarms_and_its_volumes_are_the_journals(
        faulted_journal: Path) -> None:
    record = build_record(faulted_journal, "CS-SIM-U01-0001")
    jsonschema.validate(record, SCHEMA)
    alarm_names = {a["name"] for a in record["alarms"]}
    assert any(name.startswith("PUMP_") for name in alarm_names), alarm_names
    exceptions = {d["kind"] for d in record["deviations"]}
    assert {"alarm", "out_of_band"} <= exceptions, record["deviations"]
    with sqlite3.connect(faulted_journal) as db:
        done = [row[0] for row in db.execute(
            "SELECT detail FROM events WHERE run_id = ? AND kind = 'step' ORDER BY id",
            ("CS-SIM-U01-0001",))]
    journal_ml = [float(m[3]) for d in done
                  if (m := re.match(r"^(transfer|dilution) (\S+) done: ([0-9.]+) mL", d))]
    assert [t["delivered_ml"] for t in record["transfers"]] == pytest.approx(journal_ml)
    assert all(t["delivered_ml"] == pytest.approx(t["requested_ml"])
               for t in record["transfers"] if t["kind"] == "transfer")


def test_shuttlectl_writes_the_record_offline_from_a_journal(faulted_journal: Path,
                                                             tmp_path: Path) -> None:
    import subprocess
    import sys

    shuttlectl = Path(sys.executable).parent / "shuttlectl"
    result = subprocess.run(
        [str(shuttlectl), "record", "show", "CS-SIM-U01-0001", "--journal", str(faulted_journal),
         "-o", str(tmp_path / "record")], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    jsonschema.validate(json.loads((tmp_path / "record" / "record.json").read_text()), SCHEMA)
    assert "Review by exception" in (tmp_path / "record" / "record.html").read_text()
    assert (tmp_path / "record" / "record.pdf").is_file() == (pdf_renderer() is not None)
    missing = subprocess.run(
        [str(shuttlectl), "record", "show", "CS-SIM-U01-0042", "--journal", str(faulted_journal),
         "-o", str(tmp_path / "none")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no run 'CS-SIM-U01-0042'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_operator_steps_appear_with_their_values_and_both_signatures(tmp_path: Path) -> None:
    import asyncio

    text = DEMO.read_text().replace(
        "      - transfer: {pump: media, volume_ml: 20, rate_ml_min: 10}\n",
        "      - confirm: {prompt: Vector bag connected; record its lot, record: [vector_lot],"
        " verify: true}\n      - transfer: {pump: media, volume_ml: 20, rate_ml_min: 10}\n", 1,
    ).replace("name: demo", "name: demo-steps")
    protocol = tmp_path / "demo-steps.yaml"
    protocol.write_text(text)
    options = SimulateOptions(units=1, protocols=[protocol], seed=2, data_dir=tmp_path / "data",
                              confirm_values={"vector_lot": "VL-17"})
    asyncio.run(simulate(options, Console(quiet=True)))
    record = build_record(tmp_path / "data" / "journal.sqlite3", "CS-SIM-U01-0001")
    jsonschema.validate(record, SCHEMA)
    (step,) = record["operator_steps"]
    assert step["values"] == {"vector_lot": "VL-17"} and step["complete"] and step["auto"]
    assert (step["performed"]["by"], step["verified"]["by"]) == ("sim", "sim-verifier")
    assert [s["meaning"] for s in step["signatures"]] == ["performed", "verified"]
    assert any(d["kind"] == "operator_step" and "simulation" in d["what"]
               for d in record["deviations"])
