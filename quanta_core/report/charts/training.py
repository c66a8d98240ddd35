"""Charts of training dynamics: :func:`sparkline_svg` (one loss curve over training, no axes),
:func:`loss_over_training_svg` (one loss curve with axes) and :func:`learned_at_distribution_svg`
(clusters learned at each step, with the cumulative fraction)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from quanta_core.report.charts.axes import (
    GREEN,
    GREY,
    ORANGE,
    TEXT,
    Axis,
    finite,
    frame,
    num,
    polylines,
    step_ticks,
    svg_document,
    text,
    y_label,
)
from quanta_core.steps import step_x

# ---------------------------------------------------------------------------------------------
# sparkline


def _sorted_series(steps, values, reference_values, band):
    """Validate the sparkline's series and sort them by step: ``(steps, values, reference, low, high)``
    as lists (``None`` for an absent series)."""
    steps = [int(s) for s in steps]
    if len(steps) == 0:
        raise ValueError("sparkline needs at least one step")
    if any(s < 0 for s in steps):
        raise ValueError("steps must be ≥ 0")
    series = {"values": values, "reference_values": reference_values}
    if band is not None:
        series["band low"], series["band high"] = band
    for name, seq in series.items():
        if seq is not None and len(seq) != len(steps):
            raise ValueError(f"{name} has {len(seq)} entries for {len(steps)} steps")
    order = sorted(range(len(steps)), key=steps.__getitem__)

    def pick(seq):
        return None if seq is None else [float(seq[i]) for i in order]

    low, high = (pick(band[0]), pick(band[1])) if band is not None else (None, None)
    return [steps[i] for i in order], pick(values), pick(reference_values), low, high


def _y_limits(drawn: list[float], y_range) -> tuple[float, float]:
    """(min, max) nats of the y axis: ``y_range`` if given, else the range of what is drawn."""
    if y_range is not None:
        y_lo, y_hi = map(float, y_range)
    else:
        y_lo, y_hi = (min(drawn), max(drawn)) if drawn else (0.0, 1.0)
    if not (math.isfinite(y_lo) and math.isfinite(y_hi)) or y_hi < y_lo:
        raise ValueError(f"bad y range {(y_lo, y_hi)}")
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    return y_lo, y_hi


def _learned_mark(x: Axis, y, steps, vals, learned_at_step: int, height: int) -> list[str]:
    """The orange vertical line at the learned-at step, and a dot on the curve there."""
    lx = num(x(step_x(int(learned_at_step))))
    parts = [f'<line x1="{lx}" y1="0" x2="{lx}" y2="{num(height)}" stroke="{ORANGE}" stroke-width="1"/>']
    if int(learned_at_step) in steps:
        v = vals[steps.index(int(learned_at_step))]
        if math.isfinite(v):
            parts.append(f'<circle cx="{lx}" cy="{num(y(v))}" r="2" fill="{ORANGE}"/>')
    return parts


def _sparkline_summary(steps, vals, learned_at_step) -> str:
    finite_vals = finite(vals)
    summary = (
        f"loss {finite_vals[0]:.3g} nats at step {steps[0]} to {finite_vals[-1]:.3g} at step {steps[-1]}"
        if finite_vals
        else "no finite values"
    )
    return summary + "; learned at step " + (str(int(learned_at_step)) if learned_at_step is not None else "never")


def sparkline_svg(
    steps: Sequence[int],
    values: Sequence[float],
    reference_values: Sequence[float] | None = None,
    learned_at_step: int | None = None,
    width: int = 160,
    height: int = 36,
    *,
    band: tuple[Sequence[float], Sequence[float]] | None = None,
    threshold_nats: float | None = None,
    y_range: tuple[float, float] | None = None,
) -> str:
    """A small inline SVG (``width`` × ``height`` px) of one loss curve over training.

    ``steps``: step numbers (any order; sorted here); ``values``: the cluster's loss at each step
    (nats; NaN breaks the line); ``reference_values``: the overall mean loss at the same steps
    (dashed grey); ``learned_at_step``: a vertical orange mark there; ``band``: (low, high) per
    step, e.g. the quartiles, drawn shaded; ``threshold_nats``: a dotted green horizontal line;
    ``y_range``: fixed (min, max) nats, e.g. to share a scale between sparklines (default: the
    range of what is drawn). The x axis is logarithmic (``log10(s + 1)``, step0 at the left edge).
    The main line uses ``currentColor``, so it follows the page's text colour (light/dark).
    """
    steps, vals, ref, low, high = _sorted_series(steps, values, reference_values, band)
    drawn = finite(vals) + finite(ref or []) + finite(low or []) + finite(high or [])
    y_lo, y_hi = _y_limits(drawn + (finite([threshold_nats]) if threshold_nats is not None else []), y_range)
    pad = 2.0
    x = Axis(step_x(steps[0]), step_x(steps[-1]), pad, width - pad)
    y_axis = Axis(y_lo, y_hi, height - pad, pad)

    def y(v: float) -> float:  # clamped into the y range; NaN stays NaN (breaks lines)
        return y_axis(min(max(v, y_lo), y_hi)) if math.isfinite(v) else y_axis(v)

    xs = [x(step_x(s)) for s in steps]
    parts = []
    if low is not None:
        pts = [(px, py) for px, py in zip(xs + xs[::-1], [*map(y, low), *map(y, high[::-1])]) if math.isfinite(py)]
        if len(pts) >= 3:
            points = " ".join(f"{num(a)},{num(b)}" for a, b in pts)
            parts.append(f'<polygon points="{points}" fill="currentColor" fill-opacity="0.15" stroke="none"/>')
    if threshold_nats is not None and y_lo <= threshold_nats <= y_hi:
        ty = num(y(threshold_nats))
        parts.append(
            f'<line x1="{num(pad)}" y1="{ty}" x2="{num(width - pad)}" y2="{ty}" '
            f'stroke="{GREEN}" stroke-width="1" stroke-dasharray="1 2"/>'
        )
    if ref is not None:
        parts.append(polylines(xs, [*map(y, ref)], stroke=GREY, stroke_width="1", stroke_dasharray="3 2"))
    parts.append(polylines(xs, [*map(y, vals)], stroke="currentColor", stroke_width="1.5", stroke_linejoin="round"))
    if learned_at_step is not None:
        parts += _learned_mark(x, y, steps, vals, learned_at_step, height)
    return svg_document("sparkline", width, height, _sparkline_summary(steps, vals, learned_at_step), parts)


# ---------------------------------------------------------------------------------------------
# one loss curve with axes


def loss_over_training_svg(steps: Sequence[int], values: Sequence[float], width: int = 560, height: int = 200,
                           title: str = "mean loss (nats)") -> str:
    """A ``width`` × ``height`` px chart of one loss curve over training (nats; NaN breaks the line)
    with axes: x logarithmic (``log10(s + 1)``) ticked at steps 0, 1, 10, 100, …; y ticked at the
    curve's lowest and highest loss; both titled."""
    steps, vals, _, _, _ = _sorted_series(steps, values, None, None)
    y_lo, y_hi = _y_limits(finite(vals), None)
    left, right, top, bottom = 52.0, 14.0, 10.0, 34.0
    x = Axis(step_x(steps[0]), step_x(steps[-1]), left, width - right)
    y = Axis(y_lo, y_hi, height - bottom, top)
    middle = (top + height - bottom) / 2
    parts = [*frame(x, y), *step_ticks(x, height - bottom)]
    parts += [y_label(y, left, v, f"{v:.3g}") for v in sorted({y_lo, y_hi})]
    parts.append(text((left + width - right) / 2, height - 4, "training step (log scale, step + 1)", "middle"))
    parts.append(text(12, middle, title, "middle", f'transform="rotate(-90 12 {num(middle)})"'))
    ys = [y(v) if math.isfinite(v) else math.nan for v in vals]
    parts.append(polylines([x(step_x(s)) for s in steps], ys, stroke="currentColor", stroke_width="1.5",
                           stroke_linejoin="round"))
    ends = finite(vals)
    label = (f"{title}: {ends[0]:.3g} at step {steps[0]} to {ends[-1]:.3g} at step {steps[-1]}"
             if ends else f"{title}: no finite values")
    return svg_document("loss-over-training", width, height, label, parts)


# ---------------------------------------------------------------------------------------------
# learned-at distribution


@dataclass(frozen=True)
class _Frame:
    """Pixel layout of the distribution chart: plot area, the "never" bar's slot, axes."""

    width: int
    height: int
    left: float = 44.0
    right: float = 44.0
    top: float = 14.0
    bottom: float = 36.0
    never_w: float = 40.0

    @property
    def plot_right(self) -> float:
        return self.width - self.right - self.never_w - 12

    @property
    def base(self) -> float:  # y pixel of the x axis
        return self.height - self.bottom


def _count_learned(learned_at_steps, steps) -> tuple[list[int], list[int | None], dict[int, int]]:
    """(sorted unique steps, learned-at step or ``None`` per cluster, clusters learned per step)."""
    steps = sorted({int(s) for s in steps})
    if not steps:
        raise ValueError("no steps")
    learned = [None if s is None or (isinstance(s, float) and math.isnan(s)) else int(s) for s in learned_at_steps]
    unknown = sorted({s for s in learned if s is not None} - set(steps))
    if unknown:
        raise ValueError(f"learned-at steps {unknown[:5]} are not among the available steps")
    counts = {s: 0 for s in steps}
    for s in learned:
        if s is not None:
            counts[s] += 1
    return steps, learned, counts


def _distribution_axes(f: _Frame, x: Axis, y: Axis, yf: Axis, steps: list[int], top: int) -> list[str]:
    """Axis lines, ticks (counts left, percent right, steps 0, 1, 10, 100, … below) and axis titles."""
    parts = [
        f'<line x1="{num(f.left)}" y1="{num(f.base)}" x2="{num(f.plot_right)}" y2="{num(f.base)}" '
        f'stroke="currentColor" stroke-opacity="0.5"/>',
        f'<line x1="{num(f.left)}" y1="{num(f.top)}" x2="{num(f.left)}" y2="{num(f.base)}" '
        f'stroke="currentColor" stroke-opacity="0.5"/>',
    ]
    for value in sorted({0, top}):  # y ticks: 0 and the maximum count
        parts.append(
            f'<text x="{num(f.left - 4)}" y="{num(y(value) + 3)}" text-anchor="end" {TEXT}>{int(value)}</text>'
        )
    for frac in (0.0, 0.5, 1.0):
        parts.append(
            f'<text x="{num(f.width - f.right + 4)}" y="{num(yf(frac) + 3)}" {TEXT} fill-opacity="0.8">'
            f"{int(frac * 100)}%</text>"
        )
    parts += step_ticks(x, f.base)  # x ticks at steps 0, 1, 10, 100, … within the range
    middle = num((f.top + f.base) / 2)
    parts.append(
        f'<text x="{num((f.left + f.plot_right) / 2)}" y="{num(f.height - 4)}" text-anchor="middle" {TEXT}>'
        f"training step (log scale, step + 1)</text>"
    )
    parts.append(
        f'<text x="12" y="{middle}" text-anchor="middle" {TEXT} '
        f'transform="rotate(-90 12 {middle})">clusters learned</text>'
    )
    return parts


def _distribution_bars(x: Axis, y: Axis, yf: Axis, counts: dict[int, int], total: int) -> list[str]:
    """One bar per step with clusters learned there (6 px wide), and the orange cumulative line."""
    bar_w = 6.0
    parts, running, points = [], 0, []
    for s, c in counts.items():
        running += c
        px = x(step_x(s))
        points.append(f"{num(px)},{num(yf(running / total))}")
        if c:
            parts.append(
                f'<rect x="{num(px - bar_w / 2)}" y="{num(y(c))}" width="{num(bar_w)}" '
                f'height="{num(y(0) - y(c))}" fill="currentColor" fill-opacity="0.75">'
                f"<title>step {s}: {c} cluster{'s' if c != 1 else ''} learned</title></rect>"
            )
    parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{ORANGE}" stroke-width="1.5"/>')
    return parts


def _never_bar(f: _Frame, y: Axis, never: int) -> list[str]:
    nx = f.width - f.right - f.never_w
    return [
        f'<rect x="{num(nx + 8)}" y="{num(y(never))}" width="{num(f.never_w - 16)}" '
        f'height="{num(y(0) - y(never))}" '
        f'fill="{GREY}"><title>never learned: {never} cluster{"s" if never != 1 else ""}</title></rect>',
        f'<text x="{num(nx + f.never_w / 2)}" y="{num(f.base + 15)}" text-anchor="middle" {TEXT}>never</text>',
    ]


def learned_at_distribution_svg(
    learned_at_steps: Sequence[int | None],
    steps: Sequence[int],
    width: int = 640,
    height: int = 240,
) -> str:
    """Bar chart (``width`` × ``height`` px) of how many clusters are learned at each step, with
    the cumulative fraction.

    ``learned_at_steps``: one entry per cluster (a step number, or ``None``/NaN for never);
    ``steps``: the step numbers available (the x positions, logarithmic). Bars in ``currentColor``;
    a separate grey bar at the right for "never"; an orange line for the cumulative fraction of
    clusters learned by each step (right axis, 0–100 %).
    """
    steps, learned, counts = _count_learned(learned_at_steps, steps)
    never = sum(s is None for s in learned)
    top = max([*counts.values(), never, 1])
    f = _Frame(width, height)
    x = Axis(step_x(steps[0]), step_x(steps[-1]), f.left + 6, f.plot_right - 6)
    y = Axis(0.0, float(top), f.base, f.top)
    yf = Axis(0.0, 1.0, f.base, f.top)
    parts = _distribution_axes(f, x, y, yf, steps, top)
    parts += _distribution_bars(x, y, yf, counts, max(len(learned), 1))
    parts += _never_bar(f, y, never)
    label = f"{len(learned) - never} of {len(learned)} clusters learned by step {steps[-1]}"
    return svg_document("learned-at-distribution", width, height, label, parts)
