"""Inline SVG charts, drawn in Python: line charts and (stacked or grouped) bar charts.

Each chart is one ``<svg data-chart="NAME">`` with axes, tick labels, grid, a legend on the
right and a ``<title>`` on every mark (the browser shows it on hover). Every text that may
come from a ledger (series names, categories) is escaped. No script, no external resource.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

#: colour-blind-friendly palette (Tableau 10)
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
WIDTH = 760
MIN_HEIGHT = 300
LEFT, TOP, BOTTOM = 68, 30, 50
LEGEND_W = 190
LEGEND_ROW = 16
#: series with at most this many points get a marker (with a hover title) at every point
MARKER_LIMIT = 80
LABEL_CHARS = 26


@dataclass(frozen=True)
class Series:
    """One line: ``points`` as (x, y); non-finite points are dropped."""

    name: str
    points: Sequence[tuple[float, float]]
    dashed: bool = False
    color: str | None = None


@dataclass(frozen=True)
class HLine:
    """A horizontal reference line (a guarantee, a target)."""

    label: str
    y: float
    color: str = "#c0392b"


def _finite(v: float) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def fmt(v: float, percent: bool = False) -> str:
    """A short tick or hover label."""
    if percent:
        return f"{v * 100:.3g}%"
    if v == 0:
        return "0"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.4g}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.4g}k"
    if float(v).is_integer():
        return f"{int(v):d}"
    if abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:.4g}"


def nice_scale(
    lo: float, hi: float, n: int = 5, integer: bool = False
) -> tuple[float, float, list[float]]:
    """Bounds widened to round numbers and ~``n`` ticks between them (steps 1, 2, 2.5, 5)."""
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 0.5
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    if integer:
        step = max(1.0, float(math.ceil(step)))
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    ticks = [round((first + i) * step, 12) for i in range(last - first + 1)]
    return ticks[0], ticks[-1], ticks


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


class _Frame:
    """Plot area, scales, axes and legend of one chart."""

    def __init__(self, name: str, title: str, n_legend: int) -> None:
        self.name = name
        self.title = title
        self.height = max(MIN_HEIGHT, TOP + LEGEND_ROW * n_legend + 30)
        self.x0, self.x1 = LEFT, WIDTH - LEGEND_W
        self.y0, self.y1 = self.height - BOTTOM, TOP  # y0: bottom (pixel), y1: top
        self.parts: list[str] = []
        self.legend: list[str] = []

    def sy(self, y: float, lo: float, hi: float) -> float:
        return self.y0 - (y - lo) / (hi - lo) * (self.y0 - self.y1)

    def y_axis(self, lo: float, hi: float, ticks: list[float], label: str, percent: bool) -> None:
        for t in ticks:
            py = self.sy(t, lo, hi)
            self.parts.append(
                f'<line class="grid" x1="{self.x0}" x2="{self.x1}" y1="{py:.1f}" y2="{py:.1f}"/>'
                f'<text class="tick" x="{self.x0 - 6}" y="{py + 4:.1f}" text-anchor="end">'
                f"{escape(fmt(t, percent))}</text>"
            )
        mid = (self.y0 + self.y1) / 2
        self.parts.append(
            f'<text class="axis-label" transform="translate(16 {mid:.1f}) rotate(-90)" '
            f'text-anchor="middle">{escape(label)}</text>'
        )

    def x_label(self, label: str) -> None:
        self.parts.append(
            f'<text class="axis-label" x="{(self.x0 + self.x1) / 2:.1f}" '
            f'y="{self.height - 10}" text-anchor="middle">{escape(label)}</text>'
        )

    def add_legend(self, name: str, color: str, *, dashed: bool = False, box: bool = False) -> None:
        y = TOP + LEGEND_ROW * len(self.legend) + 6
        x = self.x1 + 16
        if box:
            sample = f'<rect x="{x}" y="{y - 9}" width="18" height="10" fill="{color}"/>'
        else:
            dash = ' stroke-dasharray="5 3"' if dashed else ""
            sample = (
                f'<line x1="{x}" x2="{x + 18}" y1="{y - 4}" y2="{y - 4}" stroke="{color}" '
                f'stroke-width="2"{dash}/>'
            )
        self.legend.append(
            f'<g class="legend-item"><title>{escape(name)}</title>{sample}'
            f'<text x="{x + 24}" y="{y}">{escape(_label(name))}</text></g>'
        )

    def render(self) -> str:
        axes = (
            f'<line class="axis" x1="{self.x0}" x2="{self.x1}" y1="{self.y0}" y2="{self.y0}"/>'
            f'<line class="axis" x1="{self.x0}" x2="{self.x0}" y1="{self.y0}" y2="{self.y1}"/>'
        )
        return (
            f'<svg class="chart" data-chart="{escape(self.name)}" width="{WIDTH}" '
            f'height="{self.height}" viewBox="0 0 {WIDTH} {self.height}" role="img" '
            f'aria-label="{escape(self.title)}"><title>{escape(self.title)}</title>'
            f'<text class="chart-title" x="{self.x0}" y="18">{escape(self.title)}</text>'
            + "".join(self.parts)
            + axes
            + '<g class="legend">'
            + "".join(self.legend)
            + "</g></svg>"
        )


def line_chart(
    name: str,
    title: str,
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    hlines: Sequence[HLine] = (),
    y_zero: bool = True,
    x_integer: bool = False,
    y_percent: bool = False,
) -> str | None:
    """A line chart, or ``None`` when no series has a finite point."""
    clean = [
        (s, [(float(x), float(y)) for x, y in s.points if _finite(x) and _finite(y)])
        for s in series
    ]
    clean = [(s, pts) for s, pts in clean if pts]
    if not clean:
        return None
    xs = [x for _, pts in clean for x, _ in pts]
    ys = [y for _, pts in clean for _, y in pts] + [h.y for h in hlines if _finite(h.y)]
    xlo, xhi, xticks = nice_scale(min(xs), max(xs), 6, integer=x_integer)
    ylo, yhi, yticks = nice_scale(min([*ys, 0.0]) if y_zero else min(ys), max(ys), 5)
    frame = _Frame(name, title, len(clean) + len(hlines))
    frame.y_axis(ylo, yhi, yticks, y_label, y_percent)

    def sx(x: float) -> float:
        return frame.x0 + (x - xlo) / (xhi - xlo) * (frame.x1 - frame.x0)

    for t in xticks:
        px = sx(t)
        frame.parts.append(
            f'<line class="tickmark" x1="{px:.1f}" x2="{px:.1f}" y1="{frame.y0}" '
            f'y2="{frame.y0 + 5}"/><text class="tick" x="{px:.1f}" y="{frame.y0 + 18}" '
            f'text-anchor="middle">{escape(fmt(t))}</text>'
        )
    frame.x_label(x_label)
    auto = 0
    for s, pts in clean:
        color = s.color
        if color is None:
            color = PALETTE[auto % len(PALETTE)]
            auto += 1
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        coords = " ".join(f"{sx(x):.1f},{frame.sy(y, ylo, yhi):.1f}" for x, y in pts)
        marks = [
            f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.8"'
            f"{dash}><title>{escape(s.name)}</title></polyline>"
        ]
        if len(pts) <= MARKER_LIMIT:
            marks += [
                f'<circle cx="{sx(x):.1f}" cy="{frame.sy(y, ylo, yhi):.1f}" r="2.6" '
                f'fill="{color}"><title>{escape(s.name)}: {escape(fmt(x))}, '
                f"{escape(fmt(y, y_percent))}</title></circle>"
                for x, y in pts
            ]
        frame.parts.append('<g class="series">' + "".join(marks) + "</g>")
        frame.add_legend(s.name, color, dashed=s.dashed)
    for h in hlines:
        py = frame.sy(h.y, ylo, yhi)
        frame.parts.append(
            f'<line class="hline" x1="{frame.x0}" x2="{frame.x1}" y1="{py:.1f}" y2="{py:.1f}" '
            f'stroke="{h.color}" stroke-width="1.5" stroke-dasharray="6 3">'
            f"<title>{escape(h.label)}</title></line>"
        )
        frame.add_legend(h.label, h.color, dashed=True)
    return frame.render()


def bar_chart(
    name: str,
    title: str,
    categories: Sequence[str],
    stacks: Sequence[tuple[str, Sequence[float]]],
    *,
    x_label: str,
    y_label: str,
    stacked: bool = True,
    y_percent: bool = False,
) -> str | None:
    """Bars per category, one layer (stacked) or one bar (grouped) per entry of ``stacks``
    (name, one value per category). ``None`` when there is nothing to draw."""
    layers = [(n, [float(v) if _finite(v) and v > 0 else 0.0 for v in vals]) for n, vals in stacks]
    layers = [(n, vals) for n, vals in layers if any(vals)]
    if not categories or not layers:
        return None
    if stacked:
        top = max(sum(vals[i] for _, vals in layers) for i in range(len(categories)))
    else:
        top = max(max(vals) for _, vals in layers)
    ylo, yhi, yticks = nice_scale(0.0, top, 5)
    frame = _Frame(name, title, len(layers))
    frame.y_axis(ylo, yhi, yticks, y_label, y_percent)
    band = (frame.x1 - frame.x0) / len(categories)
    every = max(1, math.ceil(len(categories) / 20))  # at most ~20 category labels
    for i, cat in enumerate(categories):
        if i % every == 0:
            cx = frame.x0 + band * (i + 0.5)
            frame.parts.append(
                f'<text class="tick" x="{cx:.1f}" y="{frame.y0 + 18}" text-anchor="middle">'
                f"{escape(_label(cat))}</text>"
            )
    frame.x_label(x_label)
    base = [0.0] * len(categories)
    bar_w = band * (0.7 if stacked else 0.8 / len(layers))
    for k, (layer, vals) in enumerate(layers):
        color = PALETTE[k % len(PALETTE)]
        rects = []
        for i, v in enumerate(vals):
            if v <= 0:
                continue
            left = frame.x0 + band * i + (band * 0.15 if stacked else band * 0.1 + bar_w * k)
            y_top = frame.sy(base[i] + v if stacked else v, ylo, yhi)
            y_bottom = frame.sy(base[i] if stacked else 0.0, ylo, yhi)
            rects.append(
                f'<rect x="{left:.1f}" y="{y_top:.1f}" width="{bar_w:.1f}" '
                f'height="{max(y_bottom - y_top, 0.5):.1f}" fill="{color}">'
                f"<title>{escape(layer)} @ {escape(categories[i])}: "
                f"{escape(fmt(v, y_percent))}</title></rect>"
            )
            if stacked:
                base[i] += v
        frame.parts.append('<g class="series">' + "".join(rects) + "</g>")
        frame.add_legend(layer, color, box=True)
    return frame.render()
