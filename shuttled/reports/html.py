"""The run report: one self-contained HTML file per run (issue 7 point 4).

What a QA reviewer attaches to a batch record: what ran (protocol identity, text and the
parameters actually used), how the process went (temperature against target and heater output,
density and growth with the phases, volume and every transfer), who changed the run's state and
why, the alarms, and the run's audit records. The file has no scripts and fetches nothing —
styles and SVG plots are inline — so it opens the same on an air-gapped PC in ten years.
Everything comes from the journal (report_data.py); nothing is taken from a daemon's memory.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from protocols.model import Transfer
from shuttled import __version__
from shuttled.reports.data import ReportData, load_report_data
from shuttled.reports.svg import Band, Chart, Marker, Series, render_chart

PHASE_COLORS = ("#e8f0fb", "#fdf1e2", "#e9f6ec", "#f6e9f3", "#eeeeee", "#fbf7dc")
STATE_COLORS = {
    "RUNNING": "#3a8f4b", "COMPLETE": "#2f6fb3", "HOLDING": "#e0a030", "HELD": "#d9822b",
    "RESTARTING": "#8ab04a", "STOPPING": "#a36", "STOPPED": "#8a3b5c", "ABORTING": "#c33",
    "ABORTED": "#a11", "IDLE": "#999",
}
EPOCH_PLAUSIBLE = 1e9  # process time of the service is Unix time; the simulator's starts at 0

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;
max-width:1160px;color:#1d2430;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ccd;
padding-bottom:3px}.sub{color:#566}table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{text-align:left;padding:2px 8px;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{background:#f3f5f8;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
td .badge{padding:0 7px;font-size:11px;font-weight:500}
.facts{display:grid;grid-template-columns:repeat(4,1fr);gap:8px;margin:12px 0}
.fact{background:#f6f8fa;border-radius:6px;padding:8px 10px}.fact b{display:block;font-size:17px}
.fact span{color:#566;font-size:12px}.chart{display:block;margin:4px 0 10px}
.chart-title{font-weight:600;font-size:13px}.tick{font-size:11px;fill:#445}
.axis-label{font-size:11px;fill:#445}.grid{stroke:#e4e7eb}.axis{stroke:#889}
.frame{fill:none;stroke:#aab}.band-label{font-size:11px;fill:#667}
.legend-text{font-size:12px;fill:#223}.nowrap{white-space:nowrap}
.marker{stroke-width:1;stroke-dasharray:3 3}pre{background:#f6f8fa;padding:8px;overflow:auto;
font-size:12px}.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.refused{color:#a11}.empty{color:#778;font-style:italic}
footer{margin-top:30px;color:#667;font-size:12px}
"""


def _h(at: float, data: ReportData) -> str:
    return f"{data.hours(at):.2f}"


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _when(at: float, data: ReportData) -> str:
    """Run time in hours, and the UTC time where process time is wall time (the service)."""
    text = f"{_h(at, data)} h"
    return f"{text} ({_utc(at)})" if at > EPOCH_PLAUSIBLE else text


def _num(value: float | None, fmt: str = ".3g", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:{fmt}}{unit}"


def _table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(text: object, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    return f"<td{attr}>{escape(str(text))}</td>"


def _badge(state: str) -> str:
    color = STATE_COLORS.get(state, "#666")
    return f'<span class="badge" style="background:{color}">{escape(state)}</span>'


# --- figures -----

def _temperature_stats(data: ReportData) -> tuple[float | None, float | None, float | None]:
    """Mean, max |deviation| and share within ±0.2 K, after each setpoint's warm-up (first
    within 0.1 K), from the history rows — the same rule the run summary uses."""
    warmed: dict[float, bool] = {}
    values, deviations = [], []
    for row in data.telemetry:
        t, target = row["temperature"], row["target"]
        if t is None or target is None or row["state"] not in ("RUNNING", "HOLDING", "HELD"):
            continue
        if not warmed.get(target):
            if abs(t - target) > 0.1:
                continue
            warmed[target] = True
        values.append(t)
        deviations.append(abs(t - target))
    if not values:
        return None, None, None
    in_band = 100.0 * sum(d <= 0.2 for d in deviations) / len(deviations)
    return sum(values) / len(values), max(deviations), in_band


def _facts(data: ReportData) -> str:
    mean, max_dev, in_band = _temperature_stats(data)
    last = data.telemetry[-1] if data.telemetry else {}
    delivered = json.loads(last.get("pumps") or "{}").get("delivered_ul", {})
    pumped = ", ".join(f"{p} {v / 1000:.1f} mL" for p, v in sorted(delivered.items())) or "none"
    peak = max((r["density"] for r in data.telemetry if r["density"] is not None), default=None)
    facts = [
        ("final state", data.final_state),
        ("duration", f"{data.hours(data.ended_at):.2f} h"),
        ("temperature mean after warm-up", _num(mean, ".2f", " °C")),
        ("max |ΔT| / in ±0.2 K", f"{_num(max_dev, '.2f', ' K')} / {_num(in_band, '.1f', ' %')}"),
        ("peak density", _num(peak, ".3g", " cells/mL").replace("e+0", "e")),
        ("transfers", str(len(data.transfers))),
        ("pumped", pumped),
        ("alarms", str(len(data.alarms))),
    ]
    cells = "".join(f'<div class="fact"><b>{escape(v)}</b><span>{escape(k)}</span></div>'
                    for k, v in facts)
    return f'<div class="facts">{cells}</div>'


# --- plots -----

def _points(data: ReportData, column: str, scale: float = 1.0) -> list[tuple[float, float | None]]:
    return [
        (data.hours(r["at"]), None if r[column] is None else r[column] * scale)
        for r in data.telemetry
    ]


def _bands(data: ReportData) -> list[Band]:
    return [
        Band(data.hours(start), data.hours(end), name, PHASE_COLORS[i % len(PHASE_COLORS)])
        for i, (name, start, end) in enumerate(data.phases)
    ]


def _plots(data: ReportData) -> str:
    if not data.telemetry:
        return ('<p class="empty">No telemetry history was recorded for this run (it ended '
                "before its first control tick, or the journal predates the history).</p>")
    x_range = (0.0, max(data.hours(data.ended_at), 1e-3))
    bands = _bands(data)
    transfer_markers = [
        Marker(data.hours(t.started_at),
               f"{t.kind} {t.pump} {t.requested_ml:.1f} mL at {_h(t.started_at, data)} h",
               "#7a4bc2" if t.kind == "transfer" else "#2a9d8f")
        for t in data.transfers
    ]
    charts = [
        Chart("Temperature against target, and heater output", x_range, "°C", [
            Series("temperature", "temperature (°C)", "#d1495b", _points(data, "temperature")),
            Series("target", "target (°C)", "#222", _points(data, "target"), step=True,
                   dash="5 3"),
            Series("heater", "heater output (%)", "#edae49", _points(data, "heater"),
                   right_axis=True),
        ], right_label="heater output (%)", bands=bands, right_range=(0.0, 100.0)),
        Chart("Viable cell density and growth rate", x_range, "cells/mL", [
            Series("density", "density (cells/mL)", "#00798c", _points(data, "density")),
            Series("growth_rate", "growth rate (1/h)", "#8f5aa8", _points(data, "growth_rate"),
                   right_axis=True),
        ], right_label="growth rate (1/h)", bands=bands),
        Chart("Volume and transfers (dashed lines: transfer starts)", x_range, "mL", [
            Series("volume", "volume (mL)", "#30638e", _points(data, "volume_ml")),
        ], bands=bands, markers=transfer_markers),
    ]
    return "\n".join(render_chart(chart) for chart in charts) + _state_strip(data, x_range)


def _state_strip(data: ReportData, x_range: tuple[float, float]) -> str:
    """A one-line timeline of the run's states under the plots, on the same time axis."""
    changes = [(e.at, e.state) for e in data.events if e.kind == "state"]
    if not changes:
        return ""
    width, left, right = 1100, 64, 1100 - 64
    span = (x_range[1] - x_range[0]) or 1.0
    out = [f'<svg viewBox="0 0 {width} 44" width="100%" class="chart" role="img" '
           'aria-label="state timeline">',
           '<text x="64" y="12" class="chart-title">State</text>']
    for i, (at, state) in enumerate(changes):
        end = changes[i + 1][0] if i + 1 < len(changes) else data.ended_at
        x0 = left + (data.hours(at) - x_range[0]) / span * (right - left)
        x1 = left + (data.hours(end) - x_range[0]) / span * (right - left)
        color = STATE_COLORS.get(state, "#666")
        out.append(f'<rect x="{x0:.1f}" y="18" width="{max(x1 - x0, 2):.1f}" height="18" '
                   f'fill="{color}"><title>{escape(state)} from {_h(at, data)} h</title></rect>')
        if x1 - x0 > 60:
            out.append(f'<text x="{x0 + 4:.1f}" y="31" class="tick" fill="#fff" '
                       f'style="fill:#fff">{escape(state)}</text>')
    out.append("</svg>")
    return "\n".join(out)


# --- tables -----

def _protocol_section(data: ReportData) -> str:
    p = data.protocol
    rows = []
    if p is not None:
        for phase in p.phases:
            ends = []
            if phase.duration_s is not None:
                ends.append(f"after {phase.duration_s / 3600:g} h")
            if phase.until_text:
                ends.append(f"until {phase.until_text}")
            if phase.timeout_s is not None:
                ends.append(f"timeout {phase.timeout_s / 3600:g} h → {phase.on_timeout}")
            steps = "; ".join(
                f"{s.pump} {'all' if s.is_all else f'{s.volume_ml:g} mL'} "
                f"at {s.rate_ml_min:g} mL/min" if isinstance(s, Transfer)
                else f"operator: {s.prompt}" + (" (verified)" if s.verify else "")
                for s in phase.steps
            )
            if phase.density_control is not None:
                dc = phase.density_control
                steps = (steps + "; " if steps else "") + (
                    f"density control: {dc.pump} above {dc.max_density} up to "
                    f"{dc.max_volume_ml:g} mL")
            rows.append([_td(phase.name), _td(f"{phase.temperature:.1f} °C"),
                         _td(", ".join(ends) or "when its steps are done"), _td(steps or "–")])
    description = escape(p.description) if p is not None else "(protocol text could not be read)"
    params = []
    for name, value in sorted(data.parameters.items()):
        definition = p.parameters.get(name) if p is not None else None
        default = definition.default if definition else None
        changed = definition is not None and value != default
        params.append([
            _td(name), _td(_num(value, ".4g"), "num"), _td(_num(default, ".4g"), "num"),
            _td(f"{_num(definition.min, '.4g')} – {_num(definition.max, '.4g')}"
                if definition else "–"),
            _td(definition.unit if definition else ""),
            _td("overridden at start" if changed else "default"),
        ])
    return (
        f'<p><b class="mono">{escape(data.identity)}</b> — {description}</p>'
        + _approvals(data)
        + _table(["phase", "temperature", "ends", "steps"], rows, "no phases")
        + "<h3>Parameters used</h3>"
        + _table(["parameter", "value", "default", "bounds", "unit", ""], params,
                 "the protocol has no parameters")
        + "<details><summary>Protocol text as run</summary>"
        + f"<pre>{escape(data.protocol_text)}</pre></details>"
    )


def _approvals(data: ReportData) -> str:
    """Who authored and approved the protocol (SPEC §12), each signature checked against the
    text this run used: a signature over other content shows as broken, never as signed."""
    state = f" · library state now: <b>{escape(data.protocol_state)}</b>" if (
        data.protocol_state) else ""
    if not data.approvals:
        return f'<p class="sub">Signatures: none (the protocol was not approved){state}</p>'
    current = data.run_text_sha256
    items = "".join(
        f'<li class="{"refused" if s.status(current) == "broken" else ""}">'
        f"{escape(s.line(current))}</li>" for s in data.approvals)
    return f"<h3>Signatures{state}</h3><ul>{items}</ul>"


def _transfers_table(data: ReportData) -> str:
    rows = [
        [_td(_h(t.started_at, data), "num"),
         _td("–" if t.ended_at is None else _h(t.ended_at, data), "num"),
         _td("protocol step" if t.kind == "transfer" else "density control"), _td(t.pump),
         _td(_num(t.requested_ml, ".1f"), "num"),
         _td("not finished" if t.delivered_ml is None else f"{t.delivered_ml:.2f}", "num")]
        for t in data.transfers
    ]
    return _table(["start (h)", "end (h)", "kind", "pump", "requested (mL)", "delivered (mL)"],
                  rows, "no transfers")


def _events_table(data: ReportData) -> str:
    rows = [
        [_td(_when(e.at, data)), _td(e.kind), f"<td>{_badge(e.state)}</td>", _td(e.user),
         _td(e.detail)]
        for e in data.events
    ]
    return _table(["time", "kind", "state", "user", "what and why"], rows, "no events")


def _alarms_table(data: ReportData) -> str:
    rows = [
        [_td(a.name), _td(_when(a.raised_at, data)),
         _td("still active at the end" if a.cleared_at is None else _when(a.cleared_at, data)),
         _td(a.detail)]
        for a in data.alarms
    ]
    table = _table(["alarm", "raised", "cleared", "detail"], rows, "no alarms during this run")
    if not data.alarm_lifecycle:
        return table
    lifecycle = [
        [_td(_when(e["at"], data)), _td(e["name"]), _td(str(e["severity"])),
         _td(e["kind"].replace("_", " ")), _td(e["state"]), _td(e["user"]), _td(e["comment"])]
        for e in data.alarm_lifecycle
    ]
    return table + _table(["when", "alarm", "severity", "transition", "state", "by", "comment"],
                          lifecycle, "")


def _audit_table(data: ReportData) -> str:
    rows = []
    for r in data.audit:
        arguments = ", ".join(f"{k}={v}" for k, v in r.arguments.items() if v not in ("", {}))
        css = "" if r.result == "Good" else "refused"
        rows.append([_td(r.seq, "num"), _td(r.time.replace("T", " "), "nowrap"),
                     _td(f"{r.user} ({r.role})"), _td(r.method),
                     _td(arguments, "mono"), _td(r.reason),
                     _td(r.result + (f": {r.detail}" if r.detail else ""), css),
                     _td(r.hash[:12], "mono")])
    return _table(["#", "time (UTC)", "user", "method", "arguments", "reason", "result", "hash"],
                  rows, "no audit records name this run (it was not commanded over OPC UA)")


def _anchor_line(data: ReportData) -> str:
    """The trail's latest signed anchor: a copy on paper of where the trail stood."""
    anchor = data.anchor
    if anchor is None:
        return ('<p class="sub">The audit trail has no signed anchor yet (the instrument '
                "anchors it every 100 records).</p>")
    status = {True: "signature verified", False: "<b class=\"refused\">signature does not "
              "verify</b>", None: "signature not checked: no public key beside the journal"}
    return (f'<p class="sub">Audit trail anchored at record {anchor.count} on '
            f'{escape(anchor.utc.replace("T", " "))}: head <span class="mono">'
            f'{escape(anchor.hash)}</span>, signed by instrument key <span class="mono">'
            f"{escape(anchor.key)}</span> ({status[anchor.signature_ok]}).</p>")


def render_report(data: ReportData) -> str:
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    started = _utc(data.started_at) if data.started_at > EPOCH_PLAUSIBLE else "simulated time 0"
    sections = [
        ("summary", "Summary", _facts(data)),
        ("protocol", "Protocol and parameters", _protocol_section(data)),
        ("plots", "Process values", _plots(data)),
        ("transfers", "Transfers", _transfers_table(data)),
        ("timeline", "State timeline, users and reasons", _events_table(data)),
        ("alarms", "Alarms", _alarms_table(data)),
        ("audit", "Audit records", _anchor_line(data) + _audit_table(data)),
    ]
    body = "\n".join(f'<section id="{key}"><h2>{title}</h2>\n{html}</section>'
                     for key, title, html in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Run report {escape(data.run_id)}</title><style>{CSS}</style></head>
<body>
<h1>Run report {escape(data.run_id)} {_badge(data.final_state)}</h1>
<p class="sub">Batch <span class="mono">{escape(data.batch or "none bound")}</span> · cartridge
<span class="mono">{escape(data.cartridge or "not checked")}</span> · unit {escape(data.unit)}
· protocol <span class="mono">{escape(data.identity)}</span> · started {escape(started)}
· {len(data.telemetry)} history samples</p>
{body}
<footer>Made by shuttled {__version__} on {generated} from the journal's records alone (run,
events, telemetry history, audit trail). Times are hours of process time since the run started.
Check the audit trail's integrity with <span class="mono">shuttlectl audit verify</span>.</footer>
</body></html>
"""


def write_report(journal: Path, run_id: str, output: Path) -> Path:
    """Render one run's report to `output`; ReportUnavailable says why not."""
    html = render_report(load_report_data(journal, run_id))
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(output.name + ".tmp")
    temporary.write_text(html, encoding="utf-8")
    temporary.replace(output)
    return output
