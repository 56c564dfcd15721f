"""Shared SVG and HTML primitives of every shipsft report (audit.html, report.html): inline SVG drawn here, no
script, no network, so a report opens from a run folder on any machine. Plots carry `data-plot` (and bars
`data-count`), which the browser tests check.
"""
from __future__ import annotations

import html
import math
from html import escape


COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04"]


def finite(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def fmt(v, digits: int = 4) -> str:
    v = finite(v)
    if v is None:
        return "–"
    return f"{v:.{digits}g}" if abs(v) < 1e5 else f"{v:.3e}"


def duration(seconds) -> str:
    """Seconds as a person reads them: 42 s, 5 min 07 s, 2 h 05 min."""
    if finite(seconds) is None:
        return "–"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"


def esc(v) -> str:
    return html.escape(str(v), quote=True)


def html_table(headers: list[str], rows: list[list[str]], cls: str = "", row_cls: list[str] | None = None) -> str:
    """A <table>: `headers` are escaped here, the cells are HTML the caller escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join((f"<tr class='{row_cls[i]}'>" if row_cls and row_cls[i] else "<tr>")
                   + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for i, r in enumerate(rows))
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# ------------------------------------------------------------------------------------------------------------------
# SVG line charts


def ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi] (1-2-5 steps)."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int(math.ceil((hi - start) / step)) + 1)]


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], x_label: str = "step",
               width: int = 520, height: int = 240, dashed: set[str] = frozenset()) -> str:
    """An inline <svg> with one polyline (and dots) per series, axes with round ticks, and a legend."""
    series = {k: [(x, y) for x, y in pts if finite(x) is not None and finite(y) is not None] for k, pts in series.items()}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return ""
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    xt, yt = ticks(min(xs), max(xs)), ticks(min(ys), max(ys))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    left, right, top, bottom = 58, 12, 28, 40
    pw, ph = width - left - right, height - top - bottom

    def px(x):
        return left + (x - x0) / ((x1 - x0) or 1) * pw

    def py(y):
        return top + ph - (y - y0) / ((y1 - y0) or 1) * ph

    full_h = height + 18 * ((len(series) + 2) // 3)  # room for the legend, three entries a row
    out = [f'<svg class="chart" role="img" aria-label="{esc(title)}" width="{width}" height="{full_h}" '
           f'viewBox="0 0 {width} {full_h}">', f'<text x="{left}" y="16" class="title">{esc(title)}</text>']
    for t in xt:
        out.append(f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{top + ph}" class="grid"/>'
                   f'<text x="{px(t):.1f}" y="{top + ph + 16}" class="tick" '
                   f'text-anchor="middle">{fmt(t, 3)}</text>')
    for t in yt:
        out.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + pw}" y2="{py(t):.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{py(t) + 4:.1f}" class="tick" text-anchor="end">{fmt(t, 3)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{top + ph + 32}" class="tick" '
               f'text-anchor="middle">{esc(x_label)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        pts = sorted(pts)
        dash = ' stroke-dasharray="5 3"' if name in dashed else ""
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline class="series" data-series="{esc(name)}" points="{coords}" fill="none" '
                   f'stroke="{color}" stroke-width="1.8"{dash}/>')
        if len(pts) <= 60:
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.6" fill="{color}">'
                    f'<title>{esc(name)} @ {fmt(x)}: {fmt(y)}</title></circle>' for x, y in pts]
        lx, ly = left + (i % 3) * (pw / 3), height + 4 + 18 * (i // 3)
        out.append(f'<rect x="{lx:.1f}" y="{ly}" width="12" height="3" fill="{color}"/>'
                   f'<text x="{lx + 16:.1f}" y="{ly + 5}" class="legend">{esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)


# ------------------------------------------------------------------------------------------------------------------
# Sections


BAR = "#5c6bc0"
W, H, PAD_L, PAD_B, PAD_T, PAD_R = 560, 220, 52, 38, 26, 14


def fmt_count(x: float) -> str:
    if isinstance(x, float) and not x.is_integer():
        return f"{x:.2f}" if abs(x) < 10 else f"{x:,.0f}"
    return f"{int(x):,}"


def svg_histogram(name: str, hist: dict, title: str, xlabel: str, markers: dict[str, float] | None = None,
                  color: str = BAR, pct: bool = False) -> str:
    """A histogram from {edges, counts}, with labelled vertical markers (p50, p99, max_length ...)."""
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    if not counts:
        return f'<svg data-plot="{escape(name)}" class="plot empty" width="{W}" height="60" role="img">' \
               f'<text x="10" y="30">{escape(title)}: no data</text></svg>'
    lo, hi = edges[0], edges[-1]
    top = max(counts) or 1
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def x_of(v: float) -> float:
        return PAD_L + (v - lo) / (hi - lo or 1) * pw

    parts = [(f'<svg data-plot="{escape(name)}" class="plot" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
              f'role="img" aria-label="{escape(title)}">'),
             f'<text class="title" x="{PAD_L}" y="16">{escape(title)}</text>',
             f'<line class="axis" x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}"/>',
             f'<line class="axis" x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}"/>']
    for k, c in enumerate(counts):
        x0, x1 = x_of(edges[k]), x_of(edges[k + 1])
        h = c / top * ph
        label = f"{fmt_edge(edges[k], pct)}–{fmt_edge(edges[k + 1], pct)}: {c:,}"
        parts.append(f'<rect class="bar" data-count="{c}" x="{x0 + 0.5:.1f}" y="{H - PAD_B - h:.1f}" '
                     f'width="{max(x1 - x0 - 1, 0.5):.1f}" height="{h:.1f}" fill="{color}"><title>{escape(label)}'
                     f'</title></rect>')
    for frac in (0, 0.5, 1):  # y ticks
        y = H - PAD_B - frac * ph
        parts.append(f'<text class="tick" x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{round(top * frac):,}</text>')
    for frac in (0, 0.25, 0.5, 0.75, 1):  # x ticks
        v = lo + frac * (hi - lo)
        parts.append(f'<text class="tick" x="{x_of(v):.1f}" y="{H - PAD_B + 14}" text-anchor="middle">'
                     f'{fmt_edge(v, pct)}</text>')
    parts.append(f'<text class="label" x="{PAD_L + pw / 2}" y="{H - 4}" text-anchor="middle">{escape(xlabel)}</text>')
    for j, (label, v) in enumerate((markers or {}).items()):
        if v is None or not (lo <= v <= hi):
            continue
        x = x_of(v)
        right = x > W - PAD_R - 110  # near the right edge: write the label to the left of its line
        parts.append(f'<line class="marker" x1="{x:.1f}" y1="{PAD_T}" x2="{x:.1f}" y2="{H - PAD_B}"/>'
                     f'<text class="marker-label" x="{x - 3 if right else x + 3:.1f}" y="{PAD_T + 10 + 11 * j}" '
                     f'text-anchor="{"end" if right else "start"}">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def fmt_edge(v: float, pct: bool) -> str:
    return f"{v:.0%}" if pct else fmt_count(round(v))


def svg_bars(name: str, items: list[tuple[str, float]], title: str, fmt: str = "{:,.0f}",
             colors: list[str] | None = None, max_value: float | None = None) -> str:
    """Horizontal bars, one per (label, value)."""
    row, label_w = 22, 190
    height = PAD_T + row * max(len(items), 1) + 10
    top = max_value or max((v for _, v in items), default=0) or 1
    parts = [(f'<svg data-plot="{escape(name)}" class="plot" viewBox="0 0 {W} {height}" width="{W}" '
              f'height="{height}" role="img" aria-label="{escape(title)}">'),
             f'<text class="title" x="4" y="16">{escape(title)}</text>']
    for k, (label, v) in enumerate(items):
        y = PAD_T + k * row
        w = (W - label_w - 70) * (v / top)
        color = (colors[k] if colors else BAR)
        parts.append(f'<text class="tick" x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(label)}</text>'
                     f'<rect class="bar" data-count="{v}" x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" '
                     f'height="{row - 7}" fill="{color}"><title>{escape(label)}: {escape(fmt.format(v))}</title></rect>'
                     f'<text class="tick" x="{label_w + max(w, 1) + 5:.1f}" y="{y + 14}">'
                     f'{escape(fmt.format(v))}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------------------------------------------


