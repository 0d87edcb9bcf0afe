"""The demo run's report: every section, a plotted path per series, parameters, audit records,
and nothing fetched from elsewhere (the file must open on an air-gapped PC)."""

from __future__ import annotations

import re

from report_rig import DemoReport

SERIES = ("temperature", "target", "heater", "density", "growth_rate", "volume")
SECTIONS = ("summary", "protocol", "plots", "transfers", "timeline", "alarms", "audit")


def test_every_section_is_present(demo_report: DemoReport) -> None:
    for section in SECTIONS:
        assert f'<section id="{section}">' in demo_report.html, section
    assert "Run report CS-SIM-U01-0001" in demo_report.html
    assert "COMPLETE" in demo_report.html


def test_every_series_is_a_drawn_svg_path(demo_report: DemoReport) -> None:
    for series in SERIES:
        paths = re.findall(rf'<path class="series" data-series="{series}" d="([^"]*)"',
                           demo_report.html)
        assert len(paths) == 1, series
        # one point per history sample at least: far more than a couple of segments
        assert paths[0].startswith("M") and paths[0].count("L") > 50, series


def test_phase_bands_and_transfer_markers(demo_report: DemoReport) -> None:
    html = demo_report.html
    for phase in ("warm-up", "feed", "expansion", "harvest"):
        assert f"<title>{phase}</title>" in html
    # the demo moves media, vector and harvest: each transfer is marked on the volume plot
    assert html.count('<line class="marker"') == 3
    assert "transfer media 20.0 mL" in html
    assert "125.00" in html  # delivered by the harvest pump


def test_protocol_identity_parameters_and_text(demo_report: DemoReport) -> None:
    html = demo_report.html
    assert "demo@1.0.0#" in html
    assert "<td>max_density</td>" in html and "<td>target_cells</td>" in html
    assert "Protocol text as run" in html and "shuttle_protocol: 1" in html


def test_state_timeline_names_users_and_reasons(demo_report: DemoReport) -> None:
    assert "<td>sim</td>" in demo_report.html
    assert "started by shuttled simulate" in demo_report.html
    assert "protocol complete" in demo_report.html


def test_audit_records_of_the_run(demo_report: DemoReport) -> None:
    audit = demo_report.html.split('<section id="audit">')[1]
    assert "LoadProtocol" in audit and "Start" in audit
    assert "Good: CS-SIM-U01-0001" in audit


def test_self_contained(demo_report: DemoReport) -> None:
    html = demo_report.html.lower()
    for forbidden in ("http://", "https://", "src=", "<script", "<link", "@import", "url("):
        assert forbidden not in html, forbidden


def test_report_from_the_journal_matches_simulate(demo_report: DemoReport, tmp_path) -> None:
    """`shuttlectl report --journal` makes the same report later from the journal alone."""
    import subprocess

    from report_rig import BIN

    out = tmp_path / "again.html"
    result = subprocess.run(
        [str(BIN / "shuttlectl"), "report", demo_report.run_id, "--journal",
         str(demo_report.journal), "-o", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # What may differ: when it was made, and the audit trail's latest anchor at that moment
    # (simulate's clean stop anchors the head after writing its reports).
    strip = re.compile(r"on \d{4}-\d\d-\d\d \d\d:\d\d UTC|<p class=\"sub\">(The )?[Aa]udit "
                       r"trail (has no signed anchor|anchored at).*?</p>")
    assert strip.sub("", out.read_text()) == strip.sub("", demo_report.html)
    assert "Audit trail anchored at record" in out.read_text()
