"""Charts of token learning times (numbers and fixed labels only, no corpus text).

* :func:`spectrum_svg` — the learning-time spectrum (well-fit tokens per decade of step) above the
  mean loss's rate of decrease, measured vs reconstructed from the spectrum;
* :func:`learned_together_svg` — each cluster's spread of learning times against its permutation
  baseline (points below the diagonal are tighter than random);
* :func:`scale_histogram_svg` — "learned at size N" across a model family, sharp vs gradual.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from quanta_core.report.charts.axes import (
    GREY,
    ORANGE,
    TEXT,
    Axis,
    fmt_count,
    frame,
    num,
    polylines,
    step_ticks,
    svg_document,
    x_ticks,
    y_label,
)


def spectrum_svg(bins: pd.DataFrame, summary: dict, width: int = 640, height: int = 320) -> str:
    """Top: well-fit tokens per decade by learning time (bars over each bin). Bottom: −dL̄/d log10(step + 1)
    per bin — measured (``currentColor`` line and dots), reconstructed from the spectrum (orange),
    the mean of all tokens' fits (grey, dashed). ``bins``, ``summary``: those of a
    :class:`~quanta_core.learning.spectrum.Spectrum`."""
    if bins.empty:
        raise ValueError("no bins")
    lo, hi = bins["x_lo"].to_numpy(float), bins["x_hi"].to_numpy(float)
    density = bins["tokens"].to_numpy(float) / (hi - lo)
    rates = {k: bins[k].to_numpy(float) for k in ("measured", "reconstructed", "fitted_all")}
    left, right, top, gap, bottom = 52.0, 12.0, 22.0, 44.0, 32.0
    panel = (height - top - gap - bottom) / 2
    x = Axis(float(lo[0]), float(hi[-1]), left, width - right)
    yh = Axis(0.0, max(float(density.max()), 1.0), top + panel, top)
    values = np.concatenate([v[np.isfinite(v)] for v in rates.values()] + [np.zeros(1)])
    yr = Axis(min(0.0, float(values.min())), max(float(values.max()), 1e-9), top + 2 * panel + gap, top + panel + gap)
    parts = frame(x, yh) + frame(x, yr)
    for a, b, d, n in zip(lo, hi, density, bins["tokens"]):
        if d > 0:
            parts.append(f'<rect x="{num(x(a))}" y="{num(yh(d))}" width="{num(max(x(b) - x(a) - 1, 0.5))}" '
                         f'height="{num(yh(0) - yh(d))}" fill="currentColor" fill-opacity="0.6">'
                         f"<title>{int(n)} tokens learned between log10(step+1) {a:.2f} and {b:.2f}</title></rect>")
    parts += [y_label(yh, left, 0, "0"), y_label(yh, left, yh.hi, fmt_count(yh.hi))]
    parts.append(f'<text x="{num(left)}" y="{num(top - 8)}" {TEXT}>'
                 "well-fit tokens per decade, by learning time</text>")
    mids = (lo + hi) / 2
    styles = {"fitted_all": dict(stroke=GREY, stroke_width="1", stroke_dasharray="3 2"),
              "reconstructed": dict(stroke=ORANGE, stroke_width="1.5"),
              "measured": dict(stroke="currentColor", stroke_width="1.5")}
    for name, style in styles.items():
        pts = [(x(m), yr(v)) for m, v in zip(mids, rates[name]) if math.isfinite(v)]
        if pts:
            parts.append(polylines([p[0] for p in pts], [p[1] for p in pts], **style))
    parts += [f'<circle cx="{num(x(m))}" cy="{num(yr(v))}" r="2" fill="currentColor"/>'
              for m, v in zip(mids, rates["measured"]) if math.isfinite(v)]
    parts += [y_label(yr, left, yr.lo, f"{yr.lo:.2g}"), y_label(yr, left, yr.hi, f"{yr.hi:.2g}")]
    error = summary.get("reconstruction_error", float("nan"))
    parts.append(f'<text x="{num(left)}" y="{num(top + panel + gap - 8)}" {TEXT}>'
                 "mean loss decrease, nats per decade: "
                 f'measured (dots), from the spectrum (orange, error {error:.3f}), all fits (dashed)</text>')
    parts += step_ticks(x, yr.p0)
    parts.append(f'<text x="{num((left + width - right) / 2)}" y="{num(height - 4)}" text-anchor="middle" {TEXT}>'
                 "training step (log scale, step + 1)</text>")
    label = (f"learning-time spectrum of {int(summary.get('well_fit', 0))} well-fit tokens; reconstruction error "
             f"{error:.3f}")
    return svg_document("learning-spectrum", width, height, label, parts)


def learned_together_svg(clusters: pd.DataFrame, summary: dict, width: int = 360, height: int = 300) -> str:
    """One dot per tested cluster: permutation-median IQR (x) vs observed IQR (y) of learning times,
    both on log axes (decades; values below 0.001 drawn at 0.001); orange = tighter than random
    (BH q < alpha); the dashed diagonal is "as random"."""
    rows = clusters[clusters["tested"]]
    left, right, top, bottom = 48.0, 12.0, 20.0, 36.0
    floor = 1e-3
    values = rows[["iqr", "null_iqr_median"]].to_numpy(dtype=float)
    hi = math.ceil(math.log10(max(float(np.nanmax(values)) if len(rows) else floor, floor * 10)))
    lo = math.log10(floor)
    x = Axis(lo, hi, left, width - right)
    y = Axis(lo, hi, height - bottom, top)
    at = lambda v: math.log10(max(float(v), floor))  # noqa: E731
    parts = frame(x, y)
    parts.append(f'<line x1="{num(x(lo))}" y1="{num(y(lo))}" x2="{num(x(hi))}" y2="{num(y(hi))}" '
                 f'stroke="{GREY}" stroke-dasharray="3 2"/>')
    for row in rows.itertuples(index=False):
        color = ORANGE if row.tighter else "currentColor"
        parts.append(f'<circle cx="{num(x(at(row.null_iqr_median)))}" cy="{num(y(at(row.iqr)))}" r="2.5" '
                     f'fill="{color}" fill-opacity="0.8"><title>cluster {int(row.cluster)}: IQR {row.iqr:.3g} vs '
                     f"random {row.null_iqr_median:.3g} decades, p = {row.p_value:.3g}, q = {row.q_value:.3g}"
                     "</title></circle>")
    ticks = {k: f"{10.0**k:g}" for k in range(int(lo), hi + 1)}
    parts += [y_label(y, left, k, label) for k, label in ticks.items()] + x_ticks(x, y.p0, ticks)
    parts += [
        (f'<text x="{num((left + width - right) / 2)}" y="{num(height - 4)}" text-anchor="middle" {TEXT}>'
         "random groups (same size and loss): median IQR, decades</text>"),
        f'<text x="{num(left)}" y="{num(top - 8)}" {TEXT}>cluster IQR of learning times, decades</text>',
    ]
    label = (f"{int(summary.get('tighter', 0))} of {int(summary.get('tested', 0))} clusters learned more "
             f"tightly together than random (BH q < {summary.get('alpha', 0.05)})")
    return svg_document("learned-together", width, height, label, parts)


def scale_histogram_svg(midpoint_x: np.ndarray, sharp: np.ndarray, well_fit: np.ndarray, log_sizes: np.ndarray,
                        bins: int = 20, width: int = 480, height: int = 220) -> str:
    """Stacked histogram of "learned at size N" (``midpoint_x`` = log10 N, well-fit tokens): sharp
    (orange) below gradual (``currentColor``); ticks at the family's sizes ``log_sizes``."""
    log_sizes = np.sort(np.asarray(log_sizes, dtype=float))
    edges = np.linspace(log_sizes[0], log_sizes[-1], bins + 1)
    keep = np.asarray(well_fit, dtype=bool)
    mids, is_sharp = np.asarray(midpoint_x, dtype=float)[keep], np.asarray(sharp, dtype=bool)[keep]
    n_sharp = np.histogram(mids[is_sharp], bins=edges)[0]
    n_all = np.histogram(mids, bins=edges)[0]
    left, right, top, bottom = 52.0, 12.0, 12.0, 34.0
    x = Axis(float(edges[0]), float(edges[-1]), left, width - right)
    y = Axis(0.0, max(float(n_all.max()), 1.0), height - bottom, top)
    parts = frame(x, y)
    for a, b, s, n in zip(edges[:-1], edges[1:], n_sharp, n_all):
        w = num(max(x(b) - x(a) - 1, 0.5))
        if n > s:
            parts.append(f'<rect x="{num(x(a))}" y="{num(y(n))}" width="{w}" height="{num(y(s) - y(n))}" '
                         f'fill="currentColor" fill-opacity="0.6"><title>{int(n - s)} gradual</title></rect>')
        if s:
            parts.append(f'<rect x="{num(x(a))}" y="{num(y(s))}" width="{w}" height="{num(y(0) - y(s))}" '
                         f'fill="{ORANGE}"><title>{int(s)} sharp</title></rect>')
    parts += [y_label(y, left, 0, "0"), y_label(y, left, y.hi, fmt_count(y.hi))]
    last = -math.inf
    for v in log_sizes:
        tx = num(x(v))
        parts.append(f'<line x1="{tx}" y1="{num(y(0))}" x2="{tx}" y2="{num(y(0) + 4)}" stroke="currentColor"/>')
        if x(v) - last >= 30:  # label only sizes far enough apart to read
            last = x(v)
            parts.append(f'<text x="{tx}" y="{num(y(0) + 14)}" text-anchor="middle" {TEXT}>'
                         f"{fmt_count(10**v)}</text>")
    parts.append(f'<text x="{num((left + width - right) / 2)}" y="{num(height - 4)}" text-anchor="middle" {TEXT}>'
                 "learned at size N (parameters, log scale): sharp (orange) and gradual</text>")
    label = f"{int(n_all.sum())} well-fit tokens by the model size they are learned at, {int(n_sharp.sum())} sharp"
    return svg_document("learning-scale", width, height, label, parts)
