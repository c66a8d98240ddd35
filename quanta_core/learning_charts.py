"""Inline SVG charts for token learning times (numbers and fixed labels only, no corpus text).

* :func:`spectrum_svg` — the learning-time spectrum (well-fit tokens per decade of step) above the
  mean loss's rate of decrease, measured vs reconstructed from the spectrum;
* :func:`learned_together_svg` — each cluster's spread of learning times against its permutation
  baseline (points below the diagonal are tighter than random);
* :func:`scale_histogram_svg` — "learned at size N" across a model family, sharp vs gradual.

Axes of steps are logarithmic, step s at ``log10(s + 1)`` (as :func:`quanta_core.steps.step_x`);
lines and bars use ``currentColor`` so they follow the page's light/dark text colour.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

ORANGE, GREY = "#e8590c", "#868e96"
_TEXT = 'fill="currentColor" font-size="10" font-family="sans-serif"'


def _num(v: float) -> str:
    if not math.isfinite(v):
        raise ValueError(f"non-finite coordinate {v!r}")
    return f"{v:.2f}"


@dataclass(frozen=True)
class _Axis:
    """Linear map from data [lo, hi] to pixels [p0, p1]."""

    lo: float
    hi: float
    p0: float
    p1: float

    def __call__(self, v: float) -> float:
        if self.hi == self.lo:
            return (self.p0 + self.p1) / 2
        return self.p0 + (float(v) - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)


def _fmt_count(v: float) -> str:
    """0, 12, 3.4k, 1.2M, 6.9B."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= size:
            return f"{v / size:.3g}{suffix}"
    return f"{v:.3g}"


def _svg(css_class: str, width: int, height: int, label: str, parts: list[str]) -> str:
    label = html.escape(label)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" width="{int(width)}" height="{int(height)}" '
            f'viewBox="0 0 {int(width)} {int(height)}" role="img" aria-label="{label}"><title>{label}</title>'
            f"{''.join(parts)}</svg>")


def _frame(x: _Axis, y: _Axis) -> list[str]:
    """The x and y axis lines of a panel."""
    return [f'<line x1="{_num(x.p0)}" y1="{_num(y.p0)}" x2="{_num(x.p1)}" y2="{_num(y.p0)}" stroke="currentColor" '
            f'stroke-opacity="0.5"/>',
            f'<line x1="{_num(x.p0)}" y1="{_num(y.p0)}" x2="{_num(x.p0)}" y2="{_num(y.p1)}" stroke="currentColor" '
            f'stroke-opacity="0.5"/>']


def _x_ticks(x: _Axis, y0: float, decade_labels: dict[int, str]) -> list[str]:
    """Ticks at log10 positions ``k`` (labels given) within the axis range."""
    parts = []
    for k, label in decade_labels.items():
        if x.lo - 1e-9 <= k <= x.hi + 1e-9:
            tx = _num(x(k))
            parts.append(f'<line x1="{tx}" y1="{_num(y0)}" x2="{tx}" y2="{_num(y0 + 4)}" stroke="currentColor"/>')
            parts.append(f'<text x="{tx}" y="{_num(y0 + 14)}" text-anchor="middle" {_TEXT}>{label}</text>')
    return parts


def _step_ticks(x: _Axis, y0: float) -> list[str]:
    """Ticks at steps 0, 10, 100, 1k, … (x = log10(step + 1), so tick 10^k sits at log10(10^k + 1))."""
    parts = []
    for k in range(0, 8):
        step = 0 if k == 0 else 10**k
        pos = math.log10(step + 1)
        if x.lo - 1e-9 <= pos <= x.hi + 1e-9:
            label = f"{step // 1000}k" if step >= 1000 else str(step)
            tx = _num(x(pos))
            parts.append(f'<line x1="{tx}" y1="{_num(y0)}" x2="{tx}" y2="{_num(y0 + 4)}" stroke="currentColor"/>')
            parts.append(f'<text x="{tx}" y="{_num(y0 + 14)}" text-anchor="middle" {_TEXT}>{label}</text>')
    return parts


def _y_label(y: _Axis, left: float, value: float, text: str) -> str:
    return f'<text x="{_num(left - 4)}" y="{_num(y(value) + 3)}" text-anchor="end" {_TEXT}>{html.escape(text)}</text>'


def _polyline(points: list[tuple[float, float]], **attrs: str) -> str:
    attr = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    coords = " ".join(f"{_num(a)},{_num(b)}" for a, b in points)
    return f'<polyline points="{coords}" fill="none" {attr}/>'


def spectrum_svg(bins: pd.DataFrame, summary: dict, width: int = 640, height: int = 320) -> str:
    """Top: well-fit tokens per decade by learning time (bars over each bin). Bottom: −dL̄/d log10(step + 1)
    per bin — measured (``currentColor`` line and dots), reconstructed from the spectrum (orange),
    the mean of all tokens' fits (grey, dashed). ``bins``, ``summary``: those of a
    :class:`~quanta_core.learning_spectrum.Spectrum`."""
    if bins.empty:
        raise ValueError("no bins")
    lo, hi = bins["x_lo"].to_numpy(float), bins["x_hi"].to_numpy(float)
    density = bins["tokens"].to_numpy(float) / (hi - lo)
    rates = {k: bins[k].to_numpy(float) for k in ("measured", "reconstructed", "fitted_all")}
    left, right, top, gap, bottom = 52.0, 12.0, 22.0, 44.0, 32.0
    panel = (height - top - gap - bottom) / 2
    x = _Axis(float(lo[0]), float(hi[-1]), left, width - right)
    yh = _Axis(0.0, max(float(density.max()), 1.0), top + panel, top)
    values = np.concatenate([v[np.isfinite(v)] for v in rates.values()] + [np.zeros(1)])
    yr = _Axis(min(0.0, float(values.min())), max(float(values.max()), 1e-9), top + 2 * panel + gap, top + panel + gap)
    parts = _frame(x, yh) + _frame(x, yr)
    for a, b, d, n in zip(lo, hi, density, bins["tokens"]):
        if d > 0:
            parts.append(f'<rect x="{_num(x(a))}" y="{_num(yh(d))}" width="{_num(max(x(b) - x(a) - 1, 0.5))}" '
                         f'height="{_num(yh(0) - yh(d))}" fill="currentColor" fill-opacity="0.6">'
                         f"<title>{int(n)} tokens learned between log10(step+1) {a:.2f} and {b:.2f}</title></rect>")
    parts += [_y_label(yh, left, 0, "0"), _y_label(yh, left, yh.hi, _fmt_count(yh.hi))]
    parts.append(f'<text x="{_num(left)}" y="{_num(top - 8)}" {_TEXT}>'
                 "well-fit tokens per decade, by learning time</text>")
    mids = (lo + hi) / 2
    styles = {"fitted_all": dict(stroke=GREY, stroke_width="1", stroke_dasharray="3 2"),
              "reconstructed": dict(stroke=ORANGE, stroke_width="1.5"),
              "measured": dict(stroke="currentColor", stroke_width="1.5")}
    for name, style in styles.items():
        pts = [(x(m), yr(v)) for m, v in zip(mids, rates[name]) if math.isfinite(v)]
        if pts:
            parts.append(_polyline(pts, **style))
    parts += [f'<circle cx="{_num(x(m))}" cy="{_num(yr(v))}" r="2" fill="currentColor"/>'
              for m, v in zip(mids, rates["measured"]) if math.isfinite(v)]
    parts += [_y_label(yr, left, yr.lo, f"{yr.lo:.2g}"), _y_label(yr, left, yr.hi, f"{yr.hi:.2g}")]
    error = summary.get("reconstruction_error", float("nan"))
    parts.append(f'<text x="{_num(left)}" y="{_num(top + panel + gap - 8)}" {_TEXT}>'
                 "mean loss decrease, nats per decade: "
                 f'measured (dots), from the spectrum (orange, error {error:.3f}), all fits (dashed)</text>')
    parts += _step_ticks(x, yr.p0)
    parts.append(f'<text x="{_num((left + width - right) / 2)}" y="{_num(height - 4)}" text-anchor="middle" {_TEXT}>'
                 "training step (log scale, step + 1)</text>")
    label = (f"learning-time spectrum of {int(summary.get('well_fit', 0))} well-fit tokens; reconstruction error "
             f"{error:.3f}")
    return _svg("learning-spectrum", width, height, label, parts)


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
    x = _Axis(lo, hi, left, width - right)
    y = _Axis(lo, hi, height - bottom, top)
    at = lambda v: math.log10(max(float(v), floor))  # noqa: E731
    parts = _frame(x, y)
    parts.append(f'<line x1="{_num(x(lo))}" y1="{_num(y(lo))}" x2="{_num(x(hi))}" y2="{_num(y(hi))}" '
                 f'stroke="{GREY}" stroke-dasharray="3 2"/>')
    for row in rows.itertuples(index=False):
        color = ORANGE if row.tighter else "currentColor"
        parts.append(f'<circle cx="{_num(x(at(row.null_iqr_median)))}" cy="{_num(y(at(row.iqr)))}" r="2.5" '
                     f'fill="{color}" fill-opacity="0.8"><title>cluster {int(row.cluster)}: IQR {row.iqr:.3g} vs '
                     f"random {row.null_iqr_median:.3g} decades, p = {row.p_value:.3g}, q = {row.q_value:.3g}"
                     "</title></circle>")
    ticks = {k: f"{10.0**k:g}" for k in range(int(lo), hi + 1)}
    parts += [_y_label(y, left, k, label) for k, label in ticks.items()] + _x_ticks(x, y.p0, ticks)
    parts += [
        (f'<text x="{_num((left + width - right) / 2)}" y="{_num(height - 4)}" text-anchor="middle" {_TEXT}>'
         "random groups (same size and loss): median IQR, decades</text>"),
        f'<text x="{_num(left)}" y="{_num(top - 8)}" {_TEXT}>cluster IQR of learning times, decades</text>',
    ]
    label = (f"{int(summary.get('tighter', 0))} of {int(summary.get('tested', 0))} clusters learned more "
             f"tightly together than random (BH q < {summary.get('alpha', 0.05)})")
    return _svg("learned-together", width, height, label, parts)


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
    x = _Axis(float(edges[0]), float(edges[-1]), left, width - right)
    y = _Axis(0.0, max(float(n_all.max()), 1.0), height - bottom, top)
    parts = _frame(x, y)
    for a, b, s, n in zip(edges[:-1], edges[1:], n_sharp, n_all):
        w = _num(max(x(b) - x(a) - 1, 0.5))
        if n > s:
            parts.append(f'<rect x="{_num(x(a))}" y="{_num(y(n))}" width="{w}" height="{_num(y(s) - y(n))}" '
                         f'fill="currentColor" fill-opacity="0.6"><title>{int(n - s)} gradual</title></rect>')
        if s:
            parts.append(f'<rect x="{_num(x(a))}" y="{_num(y(s))}" width="{w}" height="{_num(y(0) - y(s))}" '
                         f'fill="{ORANGE}"><title>{int(s)} sharp</title></rect>')
    parts += [_y_label(y, left, 0, "0"), _y_label(y, left, y.hi, _fmt_count(y.hi))]
    last = -math.inf
    for v in log_sizes:
        tx = _num(x(v))
        parts.append(f'<line x1="{tx}" y1="{_num(y(0))}" x2="{tx}" y2="{_num(y(0) + 4)}" stroke="currentColor"/>')
        if x(v) - last >= 30:  # label only sizes far enough apart to read
            last = x(v)
            parts.append(f'<text x="{tx}" y="{_num(y(0) + 14)}" text-anchor="middle" {_TEXT}>'
                         f"{_fmt_count(10**v)}</text>")
    parts.append(f'<text x="{_num((left + width - right) / 2)}" y="{_num(height - 4)}" text-anchor="middle" {_TEXT}>'
                 "learned at size N (parameters, log scale): sharp (orange) and gradual</text>")
    label = f"{int(n_all.sum())} well-fit tokens by the model size they are learned at, {int(n_sharp.sum())} sharp"
    return _svg("learning-scale", width, height, label, parts)
