"""Inline SVG time plots for run reports, with no plotting dependency.

A batch report is archived for years and opened on machines without network access, so plots
are plain SVG written into the HTML: no scripts, fonts or images to fetch, identical in every
browser, and the numbers stay inspectable as text. Each series is one `<path>` carrying
`data-series`, so tests (and curious reviewers) can find it. Gaps in a series (NaN, no reading)
break the line instead of drawing a misleading straight segment across them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

Point = tuple[float, float | None]

MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 64, 30, 36


@dataclass
class Series:
    key: str  # data-series attribute
    label: str
    color: str
    points: list[Point]
    right_axis: bool = False
    step: bool = False  # setpoints and outputs hold their value until the next sample
    dash: str = ""


@dataclass
class Band:
    start: float
    end: float
    label: str
    color: str


@dataclass
class Marker:
    x: float
    label: str
    color: str = "#555"


@dataclass
class Chart:
    title: str
    x_range: tuple[float, float]
    left_label: str
    series: list[Series]
    right_label: str = ""
    bands: list[Band] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    left_range: tuple[float, float] | None = None
    right_range: tuple[float, float] | None = None
    width: int = 1100
    height: int = 230


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^k) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _format(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-2:
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{value:g}"


def _range(series: list[Series], fixed: tuple[float, float] | None) -> tuple[float, float]:
    if fixed is not None:
        return fixed
    values = [y for s in series for _, y in s.points if y is not None and math.isfinite(y)]
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or abs(high) * 0.05 or 1.0
    return low - pad, high + pad


class _Scale:
    def __init__(self, domain: tuple[float, float], pixels: tuple[float, float]) -> None:
        self.d0, self.d1 = domain
        self.p0, self.p1 = pixels

    def __call__(self, value: float) -> float:
        span = (self.d1 - self.d0) or 1.0
        return self.p0 + (value - self.d0) / span * (self.p1 - self.p0)


def _path(series: Series, x: _Scale, y: _Scale) -> str:
    commands: list[str] = []
    pen_down = False
    previous: float | None = None
    for px, py in series.points:
        if py is None or not math.isfinite(py):
            pen_down, previous = False, None
            continue
        sx, sy = x(px), y(py)
        if pen_down and series.step and previous is not None:
            commands.append(f"H{sx:.1f}")
        commands.append(f"{'L' if pen_down else 'M'}{sx:.1f},{sy:.1f}")
        pen_down, previous = True, sy
    dash = f' stroke-dasharray="{series.dash}"' if series.dash else ""
    return (
        f'<path class="series" data-series="{escape(series.key)}" d="{" ".join(commands)}" '
        f'fill="none" stroke="{series.color}" stroke-width="1.6"{dash}>'
        f"<title>{escape(series.label)}</title></path>"
    )


def render_chart(chart: Chart) -> str:
    w, h = chart.width, chart.height
    left, right = MARGIN_LEFT, w - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, h - MARGIN_BOTTOM
    x = _Scale(chart.x_range, (left, right))
    left_series = [s for s in chart.series if not s.right_axis]
    right_series = [s for s in chart.series if s.right_axis]
    yl = _Scale(_range(left_series, chart.left_range), (bottom, top))
    yr = _Scale(_range(right_series, chart.right_range), (bottom, top))
    out = [
        f'<svg viewBox="0 0 {w} {h}" width="100%" '
        f'role="img" aria-label="{escape(chart.title)}" class="chart">',
        f'<text x="{left}" y="18" class="chart-title">{escape(chart.title)}</text>',
    ]
    for band in chart.bands:
        x0, x1 = x(max(band.start, chart.x_range[0])), x(min(band.end, chart.x_range[1]))
        out.append(
            f'<rect class="band" x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 0.5):.1f}" '
            f'height="{bottom - top}" fill="{band.color}"><title>{escape(band.label)}</title>'
            "</rect>"
        )
        if x1 - x0 > 40:
            out.append(
                f'<text x="{x0 + 4:.1f}" y="{top + 12}" class="band-label">'
                f"{escape(band.label)}</text>"
            )
    for tick in nice_ticks(yl.d0, yl.d1):
        py = yl(tick)
        out.append(f'<line x1="{left}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{py + 4:.1f}" class="tick" '
                   f'text-anchor="end">{_format(tick)}</text>')
    if right_series:
        for tick in nice_ticks(yr.d0, yr.d1):
            py = yr(tick)
            out.append(
                f'<text x="{right + 6}" y="{py + 4:.1f}" class="tick">{_format(tick)}</text>'
            )
    for tick in nice_ticks(*chart.x_range, count=10):
        px = x(tick)
        out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{bottom}" y2="{bottom + 4}" '
                   'class="axis"/>')
        out.append(f'<text x="{px:.1f}" y="{bottom + 17}" class="tick" '
                   f'text-anchor="middle">{_format(tick)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
               'class="frame"/>')
    out.append(f'<text x="{right}" y="{h - 4}" class="axis-label" text-anchor="end">'
               "run time (h)</text>")
    out.append(f'<text transform="translate(14,{(top + bottom) / 2:.0f}) rotate(-90)" '
               f'class="axis-label" text-anchor="middle">{escape(chart.left_label)}</text>')
    if chart.right_label:
        out.append(f'<text transform="translate({w - 10},{(top + bottom) / 2:.0f}) rotate(90)" '
                   f'class="axis-label" text-anchor="middle">{escape(chart.right_label)}</text>')
    for marker in chart.markers:
        px = x(marker.x)
        out.append(
            f'<line class="marker" x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{bottom}" '
            f'stroke="{marker.color}"><title>{escape(marker.label)}</title></line>'
        )
    for series in left_series:
        out.append(_path(series, x, yl))
    for series in right_series:
        out.append(_path(series, x, yr))
    out.append(_legend(chart.series, right, 18))
    out.append("</svg>")
    return "\n".join(out)


def _legend(series: list[Series], right: float, baseline: float) -> str:
    """One line in the title row, right-aligned: it never hides data the way a box in the plot
    area does (the legend's width is estimated; no font metrics without a browser)."""
    rows = []
    x = right
    for s in reversed(series):
        x -= len(s.label) * 6.8 + 34
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        rows.append(
            f'<line x1="{x:.0f}" x2="{x + 18:.0f}" y1="{baseline - 4}" y2="{baseline - 4}" '
            f'stroke="{s.color}" stroke-width="2.5"{dash}/>'
            f'<text x="{x + 23:.0f}" y="{baseline}" class="legend-text">{escape(s.label)}</text>'
        )
    return "\n".join(rows)
