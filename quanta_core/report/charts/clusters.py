"""The report's charts of cluster sizes: :func:`rank_frequency_svg` (size against rank, log-log) and
:func:`envelope_svg` (the sweep's rank-frequency envelope and its fitted slope, log-log)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from quanta_core.report.charts.axes import GREY, ORANGE, SVG_NS, Axis, frame, polylines, svg_document, text, x_ticks

# ---------------------------------------------------------------------------------------------
# rank-frequency


def rank_frequency_svg(sizes: Sequence[int], width: int = 520, height: int = 300) -> str:
    """Log-log plot (``width`` × ``height`` px) of cluster size against rank (1 = largest).

    ``sizes``: cluster sizes (samples), largest first. Each point carries ``data-rank`` (the
    cluster number, 0-based) so the page can link it; styling comes from the page's ``rf-*`` CSS."""
    sizes = np.asarray(sizes, dtype=np.float64)
    left, right, top, bottom = 56, 16, 14, 42
    w, h = width - left - right, height - top - bottom
    x_max = math.log10(max(len(sizes), 2))
    y_max = math.log10(max(sizes.max(), 2))

    def x(rank: float) -> float:
        return left + w * math.log10(rank) / x_max

    def y(size: float) -> float:
        return top + h * (1 - math.log10(size) / y_max)

    parts = [
        f'<svg class="rf-plot" xmlns="{SVG_NS}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="rf-title">',
        '<title id="rf-title">Cluster size against rank, log-log</title>',
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" class="rf-frame"/>',
    ]
    for decade in range(0, int(math.floor(x_max)) + 1):
        px = x(10**decade)
        parts.append(f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{top + h}" class="rf-grid"/>')
        parts.append(f'<text x="{px:.1f}" y="{top + h + 16}" text-anchor="middle">{10**decade:g}</text>')
    for decade in range(0, int(math.floor(y_max)) + 1):
        py = y(10**decade)
        parts.append(f'<line x1="{left}" y1="{py:.1f}" x2="{left + w}" y2="{py:.1f}" class="rf-grid"/>')
        parts.append(f'<text x="{left - 6}" y="{py + 4:.1f}" text-anchor="end">{10**decade:g}</text>')
    parts.append(f'<text x="{left + w / 2:.0f}" y="{height - 6}" text-anchor="middle">rank</text>')
    parts.append(f'<text x="14" y="{top + h / 2:.0f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {top + h / 2:.0f})">cluster size</text>')
    points = " ".join(f"{x(r + 1):.1f},{y(s):.1f}" for r, s in enumerate(sizes))
    parts.append(f'<polyline points="{points}" class="rf-line"/>')
    for r, s in enumerate(sizes):
        parts.append(f'<circle cx="{x(r + 1):.1f}" cy="{y(s):.1f}" r="3" data-rank="{r}" class="rf-point">'
                     f"<title>cluster {r}: {int(s)} samples</title></circle>")
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# the sweep's envelope


def _decades(hi: float) -> dict[float, str]:
    return {float(d): f"{10 ** d:g}" for d in range(0, int(math.floor(hi)) + 1)}


def envelope_svg(envelope: Sequence[int], slope: float, ranks: tuple[int, int],
                 interval: tuple[float, float] | None = None, paper_slope: float | None = None,
                 width: int = 520, height: int = 300) -> str:
    """Log-log chart (``width`` × ``height`` px) of the rank-frequency envelope (cluster size at rank
    r = 1…, zeros left out), the least-squares line of slope ``slope`` over ``ranks`` (1-based,
    inclusive; orange) and, when given, a grey dashed line of ``paper_slope`` through the same
    centre. ``interval``: the slope's bootstrap interval, printed in the legend."""
    sizes = np.asarray(envelope, dtype=np.float64)
    rank = np.arange(1, len(sizes) + 1, dtype=np.float64)
    nz = sizes > 0
    lx, ly = np.log10(rank[nz]), np.log10(sizes[nz])
    left, right, top, bottom = 56, 16, 28, 42
    x = Axis(0.0, max(float(lx.max()), 1.0), left, width - right)
    y = Axis(0.0, max(float(ly.max()), 1.0), height - bottom, top)
    fit = (rank[nz] >= ranks[0]) & (rank[nz] <= ranks[1])
    cx, cy = float(lx[fit].mean()), float(ly[fit].mean())  # the least-squares line passes through the centre
    ends = np.log10(np.asarray(ranks, dtype=np.float64))
    parts = [*frame(x, y), *x_ticks(x, y.p0, _decades(x.hi))]
    for at, label in _decades(y.hi).items():
        parts.append(text(left - 4, y(at) + 3, label, "end"))
    parts.append(polylines([x(v) for v in lx], [y(v) for v in ly], stroke="currentColor", stroke_width="1.5"))
    legend = f"slope {slope:.2f}" + (f" (95 % {interval[0]:.2f} to {interval[1]:.2f})" if interval else "")
    legend += f", ranks {ranks[0]}–{ranks[1]}"
    if paper_slope is not None:
        parts.append(polylines([x(v) for v in ends], [y(cy + paper_slope * (v - cx)) for v in ends], stroke=GREY,
                               stroke_width="1.5", stroke_dasharray="4 3", **{"class": "envelope-paper"}))
        legend += f"; paper {paper_slope:.2f}"
    parts.append(polylines([x(v) for v in ends], [y(cy + slope * (v - cx)) for v in ends], stroke=ORANGE,
                           stroke_width="2", **{"class": "envelope-fit"}))
    mid = (y.p0 + y.p1) / 2
    parts += [text(left, 16, legend), text((x.p0 + x.p1) / 2, height - 8, "rank", "middle"),
              text(14, mid, "cluster size", "middle", f'transform="rotate(-90 14 {mid:.2f})"')]
    label = f"Rank-frequency envelope of cluster sizes, log-log; {legend}"
    return svg_document("envelope-plot", width, height, label, parts)
