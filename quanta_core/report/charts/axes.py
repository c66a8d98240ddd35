"""What every chart shares: number formatting, the data → pixel map, the ``<svg>`` element, lines,
axis frames, ticks and labels. Everything drawn goes through :func:`num` (2 decimals, never NaN/inf)
or is a fixed string; labels are escaped."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from quanta_core.steps import step_x

SVG_NS = "http://www.w3.org/2000/svg"
ORANGE, GREY, GREEN = "#e8590c", "#868e96", "#2f9e44"  # highlight / reference / threshold
TEXT = 'fill="currentColor" font-size="10" font-family="sans-serif"'
STEP_TICKS = (0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)


def num(x: float) -> str:
    """A coordinate formatted by us: fixed 2 decimals, never NaN/inf."""
    if not math.isfinite(x):
        raise ValueError(f"non-finite coordinate {x!r}")
    return f"{x:.2f}"


def fmt_step(step: int) -> str:
    """Compact step label: 0, 1, 512, 1k, 143k."""
    return f"{step // 1000}k" if step >= 1000 and step % 1000 == 0 else str(step)


def fmt_count(v: float) -> str:
    """0, 12, 3.4k, 1.2M, 6.9B."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= size:
            return f"{v / size:.3g}{suffix}"
    return f"{v:.3g}"


@dataclass(frozen=True)
class Axis:
    """Linear map from data [lo, hi] to pixels [p0, p1] (p1 < p0 allowed, for y)."""

    lo: float
    hi: float
    p0: float
    p1: float

    def __call__(self, v: float) -> float:
        if self.hi == self.lo:
            return (self.p0 + self.p1) / 2
        return self.p0 + (float(v) - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)


def finite(values) -> list[float]:
    """The finite values of ``values`` as floats (``None`` and NaN left out)."""
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def polylines(xs: Sequence[float], ys: Sequence[float], **attrs: str) -> str:
    """Polylines through the points (pixels), broken at non-finite y; ``stroke_width=`` → ``stroke-width``."""
    attr = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    parts, run = [], []
    for x, y in list(zip(xs, ys)) + [(0.0, math.nan)]:
        if math.isfinite(y):
            run.append(f"{num(x)},{num(y)}")
        elif run:
            if len(run) == 1:
                run.append(run[0])
            parts.append(f'<polyline points="{" ".join(run)}" fill="none" {attr}/>')
            run = []
    return "".join(parts)


def svg_document(css_class: str, width: int, height: int, label: str, parts: Iterable[str]) -> str:
    """The ``<svg>`` element around ``parts``, with ``label`` (escaped) as its accessible name and title."""
    w, h, name = int(width), int(height), html.escape(label)
    return (
        f'<svg xmlns="{SVG_NS}" class="{css_class}" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-label="{name}">'
        f"<title>{name}</title>{''.join(parts)}</svg>"
    )


def frame(x: Axis, y: Axis) -> list[str]:
    """The x and y axis lines of a panel (along ``y.p0`` and ``x.p0``)."""
    return [f'<line x1="{num(x.p0)}" y1="{num(y.p0)}" x2="{num(x.p1)}" y2="{num(y.p0)}" stroke="currentColor" '
            f'stroke-opacity="0.5"/>',
            f'<line x1="{num(x.p0)}" y1="{num(y.p0)}" x2="{num(x.p0)}" y2="{num(y.p1)}" stroke="currentColor" '
            f'stroke-opacity="0.5"/>']


def text(x: float, y: float, label: str, anchor: str = "start", extra: str = "") -> str:
    """A text label (escaped) at pixel (x, y)."""
    return (f'<text x="{num(x)}" y="{num(y)}" text-anchor="{anchor}" {TEXT}{" " + extra if extra else ""}>'
            f"{html.escape(label)}</text>")


def x_ticks(x: Axis, y0: float, labels: dict[float, str]) -> list[str]:
    """A tick and its label below ``y0`` at every data position of ``labels`` within the axis range."""
    parts = []
    lo, hi = min(x.lo, x.hi), max(x.lo, x.hi)
    for at, label in labels.items():
        if lo - 1e-9 <= at <= hi + 1e-9:
            tx = num(x(at))
            parts.append(f'<line x1="{tx}" y1="{num(y0)}" x2="{tx}" y2="{num(y0 + 4)}" stroke="currentColor"/>')
            tx = x(at)
            parts.append(text(tx, y0 + 14, label, "middle"))
    return parts


def step_ticks(x: Axis, y0: float, steps: Sequence[int] = STEP_TICKS) -> list[str]:
    """Ticks at training steps (0, 1, 10, 100, 1k, …) on an x axis of ``log10(step + 1)``."""
    return x_ticks(x, y0, {step_x(s): fmt_step(s) for s in steps})


def y_label(y: Axis, left: float, value: float, label: str) -> str:
    """A y-axis label left of ``left`` at data value ``value``."""
    return text(left - 4, y(value) + 3, label, "end")
