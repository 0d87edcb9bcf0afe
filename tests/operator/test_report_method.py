"""`Reports.Read` over real OPC UA: a report in pieces; malformed calls refused and audited."""

from __future__ import annotations

from pathlib import Path

from asyncua import ua
from operator_rig import DEMO, INSTRUMENT, Daemon, connect, make_daemon
from test_methods_and_roles import call

from shuttled.operator_server import report_methods
from shuttled.operator_server.address_space import NAMESPACE_URI
from shuttled.records.audit import AuditTrail

S = ua.StatusCodes


async def _reports(client):
    ns = await client.get_namespace_index(NAMESPACE_URI)
    return await client.nodes.objects.get_child(
        [f"{ns}:DeviceSet", f"{ns}:{INSTRUMENT}", f"{ns}:Reports"]
    ), ns


def _run(daemon: Daemon) -> str:
    operations = daemon.server.operations
    loaded = operations.load_protocol("U01", DEMO.read_text(), user="otto")
    assert loaded.template_id, loaded.errors
    return operations.start("U01", loaded.template_id, {}, reason="for a report", user="otto")


async def test_a_viewer_reads_a_report_in_pieces_and_every_bad_call_is_refused(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(report_methods, "CHUNK", 4096)  # several pieces even for a short run
    daemon = await make_daemon(tmp_path)
    try:
        run_id = _run(daemon)
        await daemon.tick()
        client = await connect(daemon.endpoint, "vera")
        try:
            reports, ns = await _reports(client)
            html, offset, pieces = b"", 0, 0
            while True:
                result = await call(reports, ns, "Read", run_id,
                                    ua.Variant(offset, ua.VariantType.UInt32))
                assert result.StatusCode.is_good()
                piece, offset = (v.Value for v in result.OutputArguments)
                html, pieces = html + piece, pieces + 1
                if not offset:
                    break
            assert pieces > 1 and html.decode().startswith("<!DOCTYPE html>")
            assert f"Run report {run_id}" in html.decode() and "demo@1.0.0#" in html.decode()
            for args in (
                (ua.Variant(7, ua.VariantType.Int32), ua.Variant(0, ua.VariantType.UInt32)),
                ("", ua.Variant(0, ua.VariantType.UInt32)),
                (run_id, ua.Variant(-1, ua.VariantType.Int32)),
                (run_id, ua.Variant(len(html) + 1, ua.VariantType.UInt32)),
                ("CS-NOPE", ua.Variant(0, ua.VariantType.UInt32)),
            ):
                refused = await call(reports, ns, "Read", *args)
                assert refused.StatusCode.value == S.BadInvalidArgument, args
        finally:
            await client.disconnect()
    finally:
        await daemon.server.stop()
    records = [r for r in AuditTrail(daemon.data_dir / "journal.sqlite3").records()
               if r.method == "ReportRead"]
    assert [r.result for r in records] == ["Good"] + ["BadInvalidArgument"] * 5
    assert records[0].user == "vera" and records[0].role == "viewer"


async def test_anonymous_sessions_may_not_read_reports(tmp_path: Path) -> None:
    daemon = await make_daemon(tmp_path, allow_anonymous_read=True)
    try:
        run_id = _run(daemon)
        client = await connect(daemon.endpoint, None)
        try:
            reports, ns = await _reports(client)
            refused = await call(reports, ns, "Read", run_id,
                                 ua.Variant(0, ua.VariantType.UInt32))
            assert refused.StatusCode.value == S.BadUserAccessDenied
        finally:
            await client.disconnect()
    finally:
        await daemon.server.stop()
