"""`shuttlectl analyze --patients N --html FILE`: the patient-variability report as one HTML file.

Like the batch report (html.py, svg.py), it is read on machines without network access and kept
with a protocol's development record, so it is one self-contained file: inline CSS and SVG drawn
here, no script, font or image to fetch. It renders the aggregate report dict that `--json`
prints (shuttled/simulation/variability.py), never the simulation itself: reports sit below the
simulation in the house plan, so this module only knows plain data.

Each histogram stacks the patients whose run COMPLETEd (green) under the others (red), so where
the failures lie in a quantity's spread (slow growers, few cells) shows at a glance.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

OK_COLOR, FAIL_COLOR = "#2e7d32", "#c62828"
WIDTH, HEIGHT = 420, 190
LEFT, RIGHT, TOP, BOTTOM = 44, 28, 26, 34

# (key in a run, where it lives, title, unit, log scale)
HISTOGRAMS = (
    ("duration_h", "run", "Duration", "h", False),
    ("final_cells", "run", "Final cells", "cells", True),
    ("media_ml", "run", "Media used", "mL", False),
    ("viable_cells", "sampled", "Seeded viable cells", "cells", True),
    ("doubling_time_h", "sampled", "Doubling time", "h", False),
    ("lag_h", "sampled", "Activation lag τ", "h", False),
    ("viability", "sampled", "Seeding viability", "", False),
    ("ambient_c", "sampled", "Room temperature", "°C", False),
)

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse;margin:4px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} th{background:#f2f2f2}
td.l,th.l{text-align:left} .ok{color:#2e7d32;font-weight:600} .bad{color:#c62828;font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:12px} svg{border:1px solid #ddd;background:#fff}
.muted{color:#666}
"""


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-2:
        return f"{value:.3g}"
    return f"{value:.4g}"


def _bins(values: list[float], log: bool) -> tuple[list[float], float, float]:
    """Bin edges over the data (log10 for counts of cells), and the transformed range."""
    points = [math.log10(v) if log else v for v in values if not log or v > 0]
    low, high = (min(points), max(points)) if points else (0.0, 1.0)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    count = max(5, min(20, math.ceil(math.sqrt(len(values)))))
    step = (high - low) / count
    return [low + i * step for i in range(count + 1)], low, high


def _unit_label(unit: str, log: bool) -> str:
    inside = ", ".join(part for part in (unit, "log scale" if log else "") if part)
    return f" ({inside})" if inside else ""


def histogram_svg(title: str, unit: str, values: list[float], ok: list[bool], log: bool) -> str:
    """One stacked histogram (COMPLETE below, others above) as an inline SVG element."""
    edges, low, high = _bins(values, log)
    bins = len(edges) - 1
    good = [0] * bins
    bad = [0] * bins
    for value, fine in zip(values, ok, strict=True):
        if log and value <= 0:
            continue  # nothing to place on a log axis (no cells at all)
        x = math.log10(value) if log else value
        i = min(bins - 1, max(0, int((x - low) / (high - low) * bins)))
        (good if fine else bad)[i] += 1
    peak = max([g + b for g, b in zip(good, bad, strict=True)] + [1])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bar_w = plot_w / bins
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" data-histogram="{escape(title)}">',
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="600">{escape(title)}'
        f"{escape(_unit_label(unit, log))}</text>",
    ]
    for i in range(bins):
        x = LEFT + i * bar_w
        base = TOP + plot_h
        for count, color in ((good[i], OK_COLOR), (bad[i], FAIL_COLOR)):
            if count:
                h = count / peak * plot_h
                base -= h
                parts.append(
                    f'<rect x="{x + 0.5:.1f}" y="{base:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                    f'height="{h:.1f}" fill="{color}"><title>{count}</title></rect>'
                )
    axis_y = TOP + plot_h
    parts.append(
        f'<line x1="{LEFT}" y1="{axis_y}" x2="{LEFT + plot_w}" y2="{axis_y}" stroke="#444"/>'
    )
    for x, edge in ((LEFT, low), (LEFT + plot_w / 2, (low + high) / 2), (LEFT + plot_w, high)):
        label = _fmt(10**edge if log else edge)
        parts.append(
            f'<text x="{x:.1f}" y="{axis_y + 16}" font-size="11" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    parts.append(
        f'<text x="{LEFT - 6}" y="{TOP + 10}" font-size="11" text-anchor="end">{peak}</text>'
    )
    parts.append(f'<text x="{LEFT - 6}" y="{axis_y}" font-size="11" text-anchor="end">0</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[str], rows: list[list[str]], left: frozenset[int] = frozenset({0})) -> str:
    """Numbers right-aligned, the `left` columns (names, messages) left-aligned."""
    head = "".join(
        f'<th class="{"l" if i in left else ""}">{escape(h)}</th>' for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"l" if i in left else ""}">{cell}</td>' for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _values(runs: list[dict], key: str, where: str) -> list[float]:
    """One quantity of every patient: a result of its run, or a sampled parameter."""
    return [float(run["sampled"][key] if where == "sampled" else run[key]) for run in runs]


def render_variability(report: dict) -> str:
    """The whole HTML document for one aggregate report (the `--json` object)."""
    runs = report["runs"]
    ok = [run["final_state"] == "COMPLETE" for run in runs]
    share = report["complete_share"]
    states = ", ".join(f"{escape(s)} {n}" for s, n in report["final_states"].items())
    params = ", ".join(f"{escape(k)}={_fmt(v)}" for k, v in report["parameters"].items())
    spreads = _table(
        ["quantity", "P10", "P50", "P90"],
        [
            [escape(key)] + [_fmt(report[key][p]) for p in ("p10", "p50", "p90")]
            for key in ("duration_h", "final_cells", "media_ml")
        ],
    )
    violations = _table(
        ["violation (numbers as N)", "patients", "share"],
        [
            [escape(v["kind"]), str(v["count"]), f"{v['share'] * 100:.1f} %"]
            for v in report["violations"]
        ]
        or [["none", "0", "0 %"]],
    )
    sampled = _table(
        ["sampled parameter", "min", "P50", "max"],
        [
            [escape(name)] + [_fmt(r[k]) for k in ("min", "p50", "max")]
            for name, r in report["sampled"].items()
        ],
    )
    charts = "".join(
        histogram_svg(title, unit, _values(runs, key, where), ok, log)
        for key, where, title, unit, log in HISTOGRAMS
    )
    patients = _table(
        [
            "patient",
            "state",
            "duration h",
            "final cells",
            "media mL",
            "doubling h",
            "lag h",
            "viable seeded",
            "violations",
        ],
        [
            [
                str(run["patient"]),
                f'<span class="{"ok" if fine else "bad"}">{escape(run["final_state"])}</span>',
                _fmt(run["duration_h"]),
                _fmt(run["final_cells"]),
                _fmt(run["media_ml"]),
                _fmt(run["sampled"]["doubling_time_h"]),
                _fmt(run["sampled"]["lag_h"]),
                _fmt(run["sampled"]["viable_cells"]),
                escape("; ".join(run["violations"]) or "-"),
            ]
            for run, fine in zip(runs, ok, strict=True)
        ],
        left=frozenset({0, 1, 8}),
    )
    css_class = "ok" if share == 1 else "bad"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Patient variability: {escape(report["protocol"])}</title><style>{CSS}</style></head>
<body>
<h1>Patient variability of {escape(report["protocol"])}</h1>
<p class="muted">{report["patients"]} virtual patients, seed {report["seed"]}; parameters
{params or "as defaulted"}. Digital-twin dry runs (shuttlectl analyze --patients); the sampled
distributions and their sources: docs/patient_variability.md.</p>
<p>COMPLETE: <span class="{css_class}">{share * 100:.1f} %</span> ({states})</p>
<h2>Spread over patients</h2>{spreads}
<h2>Limit violations</h2>{violations}
<h2>Histograms <span class="muted">(green: COMPLETE, red: any other end)</span></h2>
<div class="grid">{charts}</div>
<h2>Sampled parameters</h2>{sampled}
<h2>Every patient</h2>{patients}
</body></html>
"""


def write_variability(report: dict, output: Path) -> Path:
    output.write_text(render_variability(report), encoding="utf-8")
    return output
