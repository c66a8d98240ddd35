"""The report's chart of cluster sizes: :func:`rank_frequency_svg` (size against rank, log-log)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from quanta_core.report.charts.axes import SVG_NS

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
