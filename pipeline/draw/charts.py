"""The run report's charts as small inline SVG: stacked horizontal bars (the funnel) and histograms (a stage's
measured columns, kept and rejected rows apart, thresholds drawn).

The numbers are numpy's: bins and counts come from ``np.histogram``, which is what matplotlib's ``hist`` draws
(``tests/pipeline/test_charts.py`` checks both against matplotlib on the same data); what is written here is only the
drawing, rectangles, outlines, lines and text. matplotlib drew the same charts for ~1.6 CPU-s on the web sample (7
WARC files: 38 axes, 435 tick objects, a second layout pass for the funnel) out of a 2.2 s report in a 15 s run,
which made a small run cost more CPU per document than datatrove's (docs/benchmarks.md, "The web path beside
datatrove"). Every label is escaped (stage, column and reason names come from configs and data).
"""

from __future__ import annotations

import hashlib
import math
from html import escape

import numpy as np

#: matplotlib's "tab20" palette (the test compares it with matplotlib's own), for rejection reasons
TAB20 = ("#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd",
         "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d",
         "#17becf", "#9edae5")
# without its two greens (4, 5), which read as "kept" (KEPT_COLOR) beside the kept bar
_REASON_COLORS = [c for i, c in enumerate(TAB20) if i not in (4, 5)]
KEPT_COLOR, REJECTED_COLOR = "#4c9f70", "#e57373"
FONT = "font-family='system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif'"
CHAR_W = 6.2  # px per character at 11 px: the width labels are given room for


def reason_color(reason: str) -> str:
    """The colour of a rejection reason: chosen by the reason's name (a stable hash), so a reason has the same colour
    in every chart and every report, whatever other reasons a run has."""
    j = int.from_bytes(hashlib.blake2b(reason.encode("utf-8", "surrogatepass"), digest_size=4).digest(), "big")
    return _REASON_COLORS[j % len(_REASON_COLORS)]


def nice_ticks(lo: float, hi: float, most: int = 5) -> list[float]:
    """At most ``most`` round values (steps of 1, 2 or 5 times a power of ten) from lo to hi."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(1, most - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    count = int(math.floor((hi - first) / step + 1e-9)) + 1
    return [round(first + i * step, 12) for i in range(count)]


def label(v: float) -> str:
    """A tick or threshold value, short: 12,000 / 0.25 / 3.5e-05."""
    if v == 0:
        return "0"
    if abs(v) >= 1e6 or abs(v) < 1e-3:
        return f"{v:.2g}"
    if float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:.4g}"


def _text(x: float, y: float, s: str, size: int = 11, anchor: str = "start", extra: str = "") -> str:
    return (f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' {extra}>{escape(s)}</text>")


def hbars(categories: list[str], series: list[tuple[str, str, list[float]]], title: str, unit: str = "") -> str:
    """Horizontal bars, one row per category, the series stacked left to right; a legend of the series under it."""
    row, gap, top = 18, 6, 24
    left = 10 + CHAR_W * max((len(c) for c in categories), default=4)
    plot_w = 380
    total = [sum(vals[i] for _, _, vals in series) for i in range(len(categories))]
    hi = max(total, default=0) or 1
    ticks = nice_ticks(0, hi)
    hi = max(hi, ticks[-1])
    scale = plot_w / hi
    height_bars = len(categories) * (row + gap)
    legend_y = top + height_bars + 28
    shown = [(name, color) for name, color, vals in series if any(vals)]
    width = left + plot_w + 20
    per_line = max(1, int((width - 20) // (CHAR_W * 0.9 * max((len(n) for n, _ in shown), default=8) + 24)))
    height = legend_y + 16 * math.ceil(len(shown) / per_line) + 4
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0f}' height='{height:.0f}' {FONT} "
           f"role='img'><title>{escape(title)}</title>", _text(left, 14, title, 12, extra="font-weight='600'")]
    for t in ticks:
        x = left + t * scale
        out.append(f"<line x1='{x:.1f}' y1='{top - 2}' x2='{x:.1f}' y2='{top + height_bars}' stroke='#e5e7eb'/>")
        out.append(_text(x, top + height_bars + 14, label(t), 10, "middle", "fill='#4b5563'"))
    for i, cat in enumerate(categories):
        y = top + i * (row + gap)
        out.append(_text(left - 6, y + row - 5, cat, 11, "end"))
        x = left
        for name, color, vals in series:
            w = vals[i] * scale
            if w > 0:
                out.append(f"<rect x='{x:.1f}' y='{y}' width='{w:.1f}' height='{row}' fill='{color}'>"
                           f"<title>{escape(cat)}: {escape(name)} {label(vals[i])}{escape(unit)}</title></rect>")
                x += w
    col_w = (width - 20) / per_line
    for j, (name, color) in enumerate(shown):
        x, y = 10 + (j % per_line) * col_w, legend_y + 16 * (j // per_line)
        out.append(f"<rect x='{x:.1f}' y='{y - 9}' width='10' height='10' fill='{color}'/>")
        out.append(_text(x + 14, y, name, 10))
    out.append("</svg>")
    return "".join(out)


def histogram_counts(values: list[float], edges) -> np.ndarray:
    """Counts per bin as matplotlib's hist counts them (np.histogram: the last bin closed)."""
    return np.histogram(np.asarray(values, dtype=float), bins=edges)[0]


def histogram(title: str, parts: list[tuple[str, str, list[float]]], lines: list[tuple[str, float]] = (),
              bins: int = 40) -> str:
    """One histogram of ``parts`` ((label, colour, values): kept and rejected rows) over shared bins, each part a
    filled outline, with a dashed vertical line and its name at each ``lines`` value (thresholds)."""
    every = [v for _, _, vals in parts for v in vals]
    lo, hi = min(every), max(every)
    for _, value in lines:  # a threshold outside the data still shows, at the edge of a widened axis
        lo, hi = min(lo, value), max(hi, value)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    counts = [(name, color, histogram_counts(vals, edges), len(vals)) for name, color, vals in parts if vals]
    top_count = max((int(c.max()) for _, _, c, _ in counts), default=1) or 1
    yticks = nice_ticks(0, top_count, 4)
    top_count = max(top_count, yticks[-1])
    xticks = nice_ticks(lo, hi, 4)
    width, height = 340, 230
    x0, x1, y0, y1 = 46, width - 10, height - 26, 24 + 12 * len(counts)  # the legend above the bars
    sx = (x1 - x0) / (hi - lo)
    sy = (y0 - y1) / top_count

    def px(v: float) -> float:
        return x0 + (v - lo) * sx

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' {FONT} role='img'>"
           f"<title>{escape(title)}</title>", _text(width / 2, 14, title, 11, "middle", "font-weight='600'")]
    for t in yticks:
        y = y0 - t * sy
        out.append(f"<line x1='{x0}' y1='{y:.1f}' x2='{x1}' y2='{y:.1f}' stroke='#eef0f3'/>")
        out.append(_text(x0 - 4, y + 3, label(t), 9, "end", "fill='#4b5563'"))
    for t in xticks:
        out.append(_text(px(t), y0 + 13, label(t), 9, "middle", "fill='#4b5563'"))
        out.append(f"<line x1='{px(t):.1f}' y1='{y0}' x2='{px(t):.1f}' y2='{y0 + 3}' stroke='#6b7280'/>")
    for _, color, c, _ in counts:  # a step outline from the baseline over every bin and back
        pts = [f"{x0:.1f},{y0:.1f}"]
        for k, n in enumerate(c):
            y = y0 - n * sy
            pts += [f"{px(edges[k]):.1f},{y:.1f}", f"{px(edges[k + 1]):.1f},{y:.1f}"]
        pts.append(f"{x1:.1f},{y0:.1f}")
        out.append(f"<polygon points='{' '.join(pts)}' fill='{color}' fill-opacity='0.65' stroke='{color}'/>")
    out.append(f"<line x1='{x0}' y1='{y0}' x2='{x1}' y2='{y0}' stroke='#6b7280'/>")
    for name, value in lines:
        x = px(value)
        out.append(f"<line x1='{x:.1f}' y1='{y1 - 4}' x2='{x:.1f}' y2='{y0}' stroke='#1d2330' "
                   "stroke-dasharray='4 3'/>")
        out.append(_text(x + 3, y0 - 4, f"{name} {label(value)}", 8, extra=f"transform='rotate(-90 {x + 3:.1f} "
                                                                           f"{y0 - 4:.1f})'"))
    for j, (name, color, _, n) in enumerate(counts):
        y = 28 + 12 * j
        out.append(f"<rect x='{x1 - 120}' y='{y - 7}' width='8' height='8' fill='{color}' fill-opacity='0.65'/>")
        out.append(_text(x1 - 109, y, f"{name} ({n:,})", 9))
    out.append("</svg>")
    return "".join(out)
