"""Quanta across training: each cluster's loss over the checkpoints, and when it is learned.

The clusters of one *reference* checkpoint (canonical indices ``[S]`` and cluster ranks ``[S]``)
are followed through every checkpoint whose loss table exists: at each step we take the losses of
the cluster's tokens (nats) and summarize them (mean, median, quartiles). A cluster is **learned at**
the first step from which its summary loss (mean, by default) stays strictly below a threshold
(nats) at that step and at every later step available; it is ``None`` ("never") when the loss at
the last available step is not below the threshold. Because clusters are made of tokens selected
for a low loss at the reference step, a cluster is usually learned by then; the interest is how
early, and in which order, clusters cross the threshold.

Loss tables are read lazily: each is opened memory-mapped, only the selected indices are gathered
(sorted, so pages are read in order), the whole-table mean is summed in chunks, and only one step
is open at a time, so memory stays ``O(S + chunk)`` whatever the number of steps or table size.

Plots are inline SVG strings built here from numbers only (no text from the corpus); the step axis
is logarithmic, a step ``s`` being drawn at ``log10(s + 1)`` so that ``step0`` sits at the origin.
"""

from __future__ import annotations

import html
import math
import os
import re
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

STEP_RE = re.compile(r"^step(\d+)$")
CURVE_COLUMNS = ["step", "step_number", "cluster", "n", "mean", "median", "q25", "q75", "overall_mean"]
STATISTICS = ("mean", "median", "q25", "q75")
CHUNK = 1 << 20  # floats summed at a time for the whole-table mean (4 MiB of float32)


def step_number(step: str) -> int:
    """``"step1000"`` → 1000; a clear error for anything else."""
    match = STEP_RE.match(str(step))
    if not match:
        raise ValueError(f"not a checkpoint step name (expected 'step<N>'): {step!r}")
    return int(match.group(1))


def step_x(step: int | float) -> float:
    """Position of a step on the logarithmic step axis: ``log10(step + 1)`` (step0 → 0)."""
    return math.log10(float(step) + 1.0)


# ---------------------------------------------------------------------------------------------
# curves


def _open_table(table, step: str) -> tuple[np.ndarray, str]:
    """(1-D float array, description) for a path (opened memory-mapped) or an array (used as is)."""
    if isinstance(table, np.ndarray):
        array, where = table, f"the array given for {step}"
    else:
        where = os.fspath(table)
        if not os.path.isfile(where):
            raise FileNotFoundError(f"loss table for {step} not found: {where}")
        array = np.load(where, mmap_mode="r", allow_pickle=False)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"loss table for {step} ({where}) must be a 1-D float array, got {array.dtype} {array.shape}")
    return array, where


def _whole_mean(table: np.ndarray, step: str, where: str) -> float:
    """Mean of the whole table in float64, summed ``CHUNK`` elements at a time (no full copy)."""
    if len(table) == 0:
        raise ValueError(f"loss table for {step} ({where}) is empty")
    total = 0.0
    for start in range(0, len(table), CHUNK):
        total += float(np.add.reduce(table[start:start + CHUNK], dtype=np.float64))
    if not math.isfinite(total):  # losses are ≥ 0, so a non-finite sum means a non-finite loss
        raise ValueError(f"loss table for {step} ({where}) holds non-finite losses")
    return total / len(table)


def _validate_selection(indices, labels) -> tuple[np.ndarray, np.ndarray]:
    indices, labels = np.asarray(indices), np.asarray(labels)
    if indices.ndim != 1 or labels.ndim != 1 or len(indices) != len(labels):
        raise ValueError(f"indices and labels must be 1-D of equal length, got {indices.shape} and {labels.shape}")
    if len(indices) == 0:
        raise ValueError("no selected tokens: indices is empty")
    if not (np.issubdtype(indices.dtype, np.integer) and np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"indices and labels must be integers, got {indices.dtype} and {labels.dtype}")
    if indices.min() < 0:
        raise ValueError(f"negative canonical index {int(indices.min())}")
    return indices.astype(np.int64, copy=False), labels.astype(np.int64, copy=False)


def cluster_loss_curves(
    indices: np.ndarray,
    labels: np.ndarray,
    loss_tables: Mapping[str, "str | os.PathLike | np.ndarray"],
    progress: Callable[[int, int, str], None] | None = None,
) -> pd.DataFrame:
    """Per-cluster loss statistics at every step.

    ``indices``: int64 ``[S]`` canonical indices of the clustered tokens; ``labels``: int64 ``[S]``
    cluster rank of each; ``loss_tables``: step name (``"step<N>"``) → loss table, float ``[G]`` in
    nats indexed by canonical index, given as a ``.npy`` path (opened with ``mmap_mode="r"``) or an
    array (a memmap is never copied whole). Steps are processed one at a time in step order;
    ``progress(done, total, step)`` is called after each.

    Returns a long DataFrame, one row per (step, cluster), sorted by step number then cluster:
    ``step`` (str), ``step_number`` (int64), ``cluster`` (int64), ``n`` (tokens in the cluster),
    ``mean``, ``median``, ``q25``, ``q75`` (float64 nats; quartiles with linear interpolation, as
    ``numpy.quantile``), ``overall_mean`` (float64 nats, mean over the *whole* table of that step,
    repeated on each of its rows).
    """
    indices, labels = _validate_selection(indices, labels)
    if not loss_tables:
        raise ValueError("no loss tables given")
    steps = sorted(loss_tables, key=step_number)
    order = np.argsort(indices, kind="stable")  # read pages in file order
    sorted_indices = indices[order]
    clusters, codes = np.unique(labels, return_inverse=True)
    counts = np.bincount(codes, minlength=len(clusters))
    frames = []
    for done, step in enumerate(steps, start=1):
        table, where = _open_table(loss_tables[step], step)
        if sorted_indices[-1] >= len(table):
            raise IndexError(
                f"loss table for {step} ({where}) has {len(table):,} entries but a clustered token has "
                f"canonical index {int(sorted_indices[-1]):,}: was it computed on fewer documents?"
            )
        losses = np.empty(len(indices), dtype=np.float64)
        losses[order] = table[sorted_indices]
        if not np.isfinite(losses).all():
            bad = int((~np.isfinite(losses)).sum())
            raise ValueError(f"loss table for {step} ({where}): {bad} clustered tokens have non-finite losses")
        overall = _whole_mean(table, step, where)
        del table  # drop the mapping before opening the next step
        grouped = pd.Series(losses).groupby(codes, sort=True)
        frames.append(
            pd.DataFrame(
                {
                    "step": step,
                    "step_number": step_number(step),
                    "cluster": clusters,
                    "n": counts,
                    "mean": grouped.mean().to_numpy(),
                    "median": grouped.median().to_numpy(),
                    "q25": grouped.quantile(0.25).to_numpy(),
                    "q75": grouped.quantile(0.75).to_numpy(),
                    "overall_mean": overall,
                }
            )
        )
        if progress:
            progress(done, len(steps), step)
    curves = pd.concat(frames, ignore_index=True)
    return curves.astype({"step_number": np.int64, "cluster": np.int64, "n": np.int64})[CURVE_COLUMNS]


def overall_curve(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per step: ``step``, ``step_number``, ``overall_mean`` (nats), in step order."""
    return (
        curves[["step", "step_number", "overall_mean"]]
        .drop_duplicates("step_number")
        .sort_values("step_number")
        .reset_index(drop=True)
    )


# ---------------------------------------------------------------------------------------------
# learned-at


def learned_at(curves: pd.DataFrame, threshold_nats: float, statistic: str = "mean") -> pd.DataFrame:
    """When each cluster is learned.

    Cluster k is learned at step s when its ``statistic`` (``mean`` by default; or ``median``,
    ``q25``, ``q75``) is strictly below ``threshold_nats`` at s and at every later step in
    ``curves``, s being the earliest such step; never (``None``) when it is not below the threshold
    at the last step. A cluster below the threshold at every step, ``step0`` included, is learned at
    the first step.

    Returns one row per cluster, by cluster rank: ``cluster``, ``n``, ``learned_at`` (step name or
    ``None``), ``learned_at_step`` (nullable Int64), ``first_loss`` and ``last_loss`` (the statistic
    at the first and last step, nats), ``threshold_nats``, ``statistic``.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    if not (isinstance(threshold_nats, (int, float)) and math.isfinite(threshold_nats)):
        raise ValueError(f"threshold_nats must be a finite number, got {threshold_nats!r}")
    missing = {"step", "step_number", "cluster", "n", statistic} - set(curves.columns)
    if missing:
        raise ValueError(f"curves lack columns {sorted(missing)}")
    if curves.empty:
        raise ValueError("curves are empty")
    wide = curves.pivot(index="cluster", columns="step_number", values=statistic).sort_index()
    wide = wide[sorted(wide.columns)]
    names = curves.drop_duplicates("step_number").set_index("step_number")["step"]
    step_numbers = np.asarray(wide.columns, dtype=np.int64)
    values = wide.to_numpy(dtype=np.float64)  # [K, T]; NaN (a missing step) counts as not below
    below = values < threshold_nats
    stays = np.flip(np.cumprod(np.flip(below, axis=1), axis=1), axis=1).astype(bool)  # below from t on
    num_staying = stays.sum(axis=1)
    first = len(step_numbers) - num_staying  # index of the first step of the final run below
    learned_steps = [int(step_numbers[i]) if s > 0 else None for i, s in zip(first, num_staying)]
    sizes = curves.drop_duplicates("cluster").set_index("cluster")["n"]
    out = pd.DataFrame(
        {
            "cluster": wide.index.to_numpy(dtype=np.int64),
            "n": sizes.reindex(wide.index).to_numpy(dtype=np.int64),
            "learned_at": pd.Series([None if s is None else str(names[s]) for s in learned_steps], dtype=object),
            "learned_at_step": pd.array(learned_steps, dtype="Int64"),
            "first_loss": values[:, 0],
            "last_loss": values[:, -1],
            "threshold_nats": float(threshold_nats),
            "statistic": statistic,
        }
    )
    return out


def learned_at_histogram(learned: pd.DataFrame) -> pd.DataFrame:
    """Clusters learned at each step (and ``never``): columns ``learned_at``, ``clusters``,
    ``cumulative_fraction`` (of all clusters, learned at or before that step), in step order."""
    learned_steps = learned["learned_at_step"]
    counts = learned_steps.dropna().astype(np.int64).value_counts().sort_index()
    names = learned.dropna(subset=["learned_at_step"]).drop_duplicates("learned_at_step")
    names = dict(zip(names["learned_at_step"].astype(np.int64), names["learned_at"]))
    rows = [(names[s], int(c)) for s, c in counts.items()]
    never = int(learned_steps.isna().sum())
    if never:
        rows.append(("never", never))
    table = pd.DataFrame(rows, columns=["learned_at", "clusters"])
    table["cumulative_fraction"] = table["clusters"].cumsum() / max(len(learned), 1)
    return table


# ---------------------------------------------------------------------------------------------
# SVG


def _num(x: float) -> str:
    """A coordinate formatted by us: fixed 2 decimals, never NaN/inf."""
    if not math.isfinite(x):
        raise ValueError(f"non-finite coordinate {x!r}")
    return f"{x:.2f}"


def _fmt_step(step: int) -> str:
    """Compact step label: 0, 1, 512, 1k, 143k."""
    return f"{step // 1000}k" if step >= 1000 and step % 1000 == 0 else str(step)


@dataclass(frozen=True)
class _Axis:
    """Linear map from data [lo, hi] to pixels [p0, p1] (p1 < p0 allowed, for y)."""

    lo: float
    hi: float
    p0: float
    p1: float

    def __call__(self, v: float) -> float:
        if self.hi == self.lo:
            return (self.p0 + self.p1) / 2
        return self.p0 + (v - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _polylines(xs: Sequence[float], ys: Sequence[float], **attrs: str) -> str:
    """Polylines through the points, broken at non-finite y."""
    attr = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    parts, run = [], []
    for x, y in list(zip(xs, ys)) + [(0.0, math.nan)]:
        if math.isfinite(y):
            run.append(f"{_num(x)},{_num(y)}")
        elif run:
            if len(run) == 1:
                run.append(run[0])
            parts.append(f'<polyline points="{" ".join(run)}" fill="none" {attr}/>')
            run = []
    return "".join(parts)


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
    """A small inline SVG of one loss curve over training.

    ``steps``: step numbers (any order; sorted here); ``values``: the cluster's loss at each step
    (nats; NaN breaks the line); ``reference_values``: the overall mean loss at the same steps
    (dashed grey); ``learned_at_step``: a vertical orange mark there; ``band``: (low, high) per
    step, e.g. the quartiles, drawn shaded; ``threshold_nats``: a dotted green horizontal line;
    ``y_range``: fixed (min, max) nats, e.g. to share a scale between sparklines (default: the
    range of what is drawn). The x axis is logarithmic: step s at ``log10(s + 1)``, step0 at the
    left edge. The main line uses ``currentColor``, so it follows the page's text colour
    (light/dark). Everything in the SVG is numbers formatted here.
    """
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
    pick = lambda seq: None if seq is None else [float(seq[i]) for i in order]  # noqa: E731
    steps = [steps[i] for i in order]
    vals, ref = pick(values), pick(reference_values)
    low, high = (pick(band[0]), pick(band[1])) if band is not None else (None, None)

    if y_range is not None:
        y_lo, y_hi = map(float, y_range)
    else:
        drawn = _finite(vals) + _finite(ref or []) + _finite(low or []) + _finite(high or [])
        if threshold_nats is not None:
            drawn += _finite([threshold_nats])
        y_lo, y_hi = (min(drawn), max(drawn)) if drawn else (0.0, 1.0)
    if not (math.isfinite(y_lo) and math.isfinite(y_hi)) or y_hi < y_lo:
        raise ValueError(f"bad y range {(y_lo, y_hi)}")
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    pad = 2.0
    x = _Axis(step_x(steps[0]), step_x(steps[-1]), pad, width - pad)
    y = _Axis(y_lo, y_hi, height - pad, pad)
    clamp = lambda v: min(max(v, y_lo), y_hi) if math.isfinite(v) else v  # noqa: E731
    xs = [x(step_x(s)) for s in steps]
    ys = lambda seq: [y(clamp(v)) for v in seq]  # noqa: E731

    parts = []
    if low is not None:
        pts = [(px, py) for px, py in zip(xs + xs[::-1], ys(low) + ys(high)[::-1]) if math.isfinite(py)]
        if len(pts) >= 3:
            points = " ".join(f"{_num(a)},{_num(b)}" for a, b in pts)
            parts.append(f'<polygon points="{points}" fill="currentColor" fill-opacity="0.15" stroke="none"/>')
    if threshold_nats is not None and y_lo <= threshold_nats <= y_hi:
        ty = _num(y(threshold_nats))
        parts.append(
            f'<line x1="{_num(pad)}" y1="{ty}" x2="{_num(width - pad)}" y2="{ty}" '
            f'stroke="#2f9e44" stroke-width="1" stroke-dasharray="1 2"/>'
        )
    if ref is not None:
        parts.append(_polylines(xs, ys(ref), stroke="#868e96", stroke_width="1", stroke_dasharray="3 2"))
    parts.append(_polylines(xs, ys(vals), stroke="currentColor", stroke_width="1.5", stroke_linejoin="round"))
    if learned_at_step is not None:
        lx = _num(x(step_x(int(learned_at_step))))
        parts.append(f'<line x1="{lx}" y1="0" x2="{lx}" y2="{_num(height)}" stroke="#e8590c" stroke-width="1"/>')
        if int(learned_at_step) in steps:
            v = vals[steps.index(int(learned_at_step))]
            if math.isfinite(v):
                parts.append(f'<circle cx="{lx}" cy="{_num(y(clamp(v)))}" r="2" fill="#e8590c"/>')

    finite_vals = _finite(vals)
    summary = (
        f"loss {finite_vals[0]:.3g} nats at step {steps[0]} to {finite_vals[-1]:.3g} at step {steps[-1]}"
        if finite_vals
        else "no finite values"
    )
    summary += "; learned at step " + (str(int(learned_at_step)) if learned_at_step is not None else "never")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="sparkline" width="{int(width)}" height="{int(height)}" '
        f'viewBox="0 0 {int(width)} {int(height)}" role="img" aria-label="{html.escape(summary)}">'
        f"<title>{html.escape(summary)}</title>{''.join(parts)}</svg>"
    )


def learned_at_distribution_svg(
    learned_at_steps: Sequence[int | None],
    steps: Sequence[int],
    width: int = 640,
    height: int = 240,
) -> str:
    """Bar chart of how many clusters are learned at each step, with the cumulative fraction.

    ``learned_at_steps``: one entry per cluster (a step number, or ``None`` for never);
    ``steps``: the step numbers available (the x positions; logarithmic, step s at
    ``log10(s + 1)``). Bars in ``currentColor``; a separate grey bar at the right for "never";
    an orange line for the cumulative fraction of clusters learned by each step (right axis,
    0–100 %). Everything is numbers and fixed labels formatted here.
    """
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
    never = sum(s is None for s in learned)
    total = max(len(learned), 1)
    top = max([*counts.values(), never, 1])

    left, right, top_pad, bottom = 44.0, 44.0, 14.0, 36.0
    never_w = 40.0
    plot_right = width - right - never_w - 12
    x = _Axis(step_x(steps[0]), step_x(steps[-1]), left + 6, plot_right - 6)
    y = _Axis(0.0, float(top), height - bottom, top_pad)
    yf = _Axis(0.0, 1.0, height - bottom, top_pad)
    bar_w = 6.0
    text = 'fill="currentColor" font-size="10" font-family="sans-serif"'
    parts = [
        f'<line x1="{_num(left)}" y1="{_num(height - bottom)}" x2="{_num(plot_right)}" y2="{_num(height - bottom)}" '
        f'stroke="currentColor" stroke-opacity="0.5"/>',
        f'<line x1="{_num(left)}" y1="{_num(top_pad)}" x2="{_num(left)}" y2="{_num(height - bottom)}" '
        f'stroke="currentColor" stroke-opacity="0.5"/>',
    ]
    for value in sorted({0, top}):  # y ticks: 0 and the maximum count
        parts.append(f'<text x="{_num(left - 4)}" y="{_num(y(value) + 3)}" text-anchor="end" {text}>{int(value)}</text>')
    for frac in (0.0, 0.5, 1.0):
        parts.append(
            f'<text x="{_num(width - right + 4)}" y="{_num(yf(frac) + 3)}" {text} fill-opacity="0.8">{int(frac * 100)}%</text>'
        )
    tick = 0
    while tick <= steps[-1]:  # x ticks at 0, 1, 10, 100, … within the range
        if tick >= steps[0]:
            tx = _num(x(step_x(tick)))
            parts.append(f'<line x1="{tx}" y1="{_num(height - bottom)}" x2="{tx}" y2="{_num(height - bottom + 4)}" stroke="currentColor"/>')
            parts.append(f'<text x="{tx}" y="{_num(height - bottom + 15)}" text-anchor="middle" {text}>{_fmt_step(tick)}</text>')
        tick = 1 if tick == 0 else tick * 10
    parts.append(
        f'<text x="{_num((left + plot_right) / 2)}" y="{_num(height - 4)}" text-anchor="middle" {text}>'
        f"training step (log scale, step + 1)</text>"
    )
    parts.append(
        f'<text x="12" y="{_num((top_pad + height - bottom) / 2)}" text-anchor="middle" {text} '
        f'transform="rotate(-90 12 {_num((top_pad + height - bottom) / 2)})">clusters learned</text>'
    )
    running, points = 0, []
    for s in steps:
        c = counts[s]
        running += c
        px = x(step_x(s))
        points.append(f"{_num(px)},{_num(yf(running / total))}")
        if c:
            parts.append(
                f'<rect x="{_num(px - bar_w / 2)}" y="{_num(y(c))}" width="{_num(bar_w)}" '
                f'height="{_num(y(0) - y(c))}" fill="currentColor" fill-opacity="0.75">'
                f"<title>step {s}: {c} cluster{'s' if c != 1 else ''} learned</title></rect>"
            )
    parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="#e8590c" stroke-width="1.5"/>')
    nx = width - right - never_w
    parts.append(
        f'<rect x="{_num(nx + 8)}" y="{_num(y(never))}" width="{_num(never_w - 16)}" height="{_num(y(0) - y(never))}" '
        f'fill="#868e96"><title>never learned: {never} cluster{"s" if never != 1 else ""}</title></rect>'
    )
    parts.append(f'<text x="{_num(nx + never_w / 2)}" y="{_num(height - bottom + 15)}" text-anchor="middle" {text}>never</text>')
    label = f"{len(learned) - never} of {len(learned)} clusters learned by step {steps[-1]}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="learned-at-distribution" width="{int(width)}" '
        f'height="{int(height)}" viewBox="0 0 {int(width)} {int(height)}" role="img" aria-label="{html.escape(label)}">'
        f"<title>{html.escape(label)}</title>{''.join(parts)}</svg>"
    )


# ---------------------------------------------------------------------------------------------
# report wiring and the model-level page


def cluster_sparklines(
    curves: pd.DataFrame,
    learned: pd.DataFrame,
    width: int = 160,
    height: int = 36,
) -> dict[int, str]:
    """Cluster rank → sparkline SVG (mean with quartile band, overall mean as reference, the
    threshold, learned-at mark)."""
    statistic = str(learned["statistic"].iloc[0]) if "statistic" in learned and len(learned) else "mean"
    threshold = float(learned["threshold_nats"].iloc[0]) if "threshold_nats" in learned and len(learned) else None
    overall = overall_curve(curves).set_index("step_number")["overall_mean"]
    when = dict(zip(learned["cluster"].astype(np.int64), learned["learned_at_step"]))
    out = {}
    for cluster, rows in curves.sort_values("step_number").groupby("cluster", sort=True):
        step_numbers = rows["step_number"].to_numpy(dtype=np.int64)
        at = when.get(int(cluster))
        out[int(cluster)] = sparkline_svg(
            step_numbers,
            rows[statistic].to_numpy(dtype=np.float64),
            overall.reindex(step_numbers).to_numpy(dtype=np.float64),
            None if at is None or pd.isna(at) else int(at),
            width,
            height,
            band=(rows["q25"].to_numpy(dtype=np.float64), rows["q75"].to_numpy(dtype=np.float64)),
            threshold_nats=threshold,
        )
    return out


def cluster_extras_for_report(curves: pd.DataFrame, learned: pd.DataFrame) -> dict[int, dict]:
    """What the per-checkpoint report takes as ``cluster_extras``: cluster rank →
    ``{"learned_at": step name | None, "learned_at_step": int | None, "sparkline_svg": str}``.

    Only meaningful for the report of the reference step the clusters came from (ranks of other
    steps are other clusters)."""
    sparks = cluster_sparklines(curves, learned)
    extras = {}
    for row in learned.itertuples(index=False):
        step = None if pd.isna(row.learned_at_step) else int(row.learned_at_step)
        extras[int(row.cluster)] = {
            "learned_at": None if step is None else str(row.learned_at),
            "learned_at_step": step,
            "sparkline_svg": sparks[int(row.cluster)],
        }
    return extras


@dataclass
class TrainingDynamics:
    """A stored ``quanta_training_dynamics`` result: ``curves`` and ``learned`` as returned by
    :func:`cluster_loss_curves` and :func:`learned_at`; ``summary`` (reference step, steps, settings)."""

    curves: pd.DataFrame
    learned: pd.DataFrame
    summary: dict

    @property
    def reference_step(self) -> str:
        return str(self.summary["reference_step"])


def read_training_dynamics(directory: str | os.PathLike) -> TrainingDynamics | None:
    """Read ``<cache>/<model>/quanta_training_dynamics/`` (``curves.parquet``, ``learned_at.parquet``,
    ``summary.json``); ``None`` when it has not been materialized."""
    import json

    directory = os.fspath(directory)
    files = [os.path.join(directory, f) for f in ("curves.parquet", "learned_at.parquet", "summary.json")]
    if not all(os.path.isfile(f) for f in files):
        return None
    with open(files[2], encoding="utf-8") as f:
        summary = json.load(f)
    return TrainingDynamics(pd.read_parquet(files[0]), pd.read_parquet(files[1]), summary)


def report_extras(directory: str | os.PathLike, step: str) -> tuple[dict[int, dict], list[str]]:
    """``(cluster_extras, extra_sections_html)`` for :func:`quanta_core.report.render_report` of
    ``step``, from the stored dynamics in ``directory`` (``<cache>/<model>/quanta_training_dynamics``);
    ``({}, [])`` when there are none or they follow another step's clusters (cluster ranks of
    different steps are different clusters)."""
    stored = read_training_dynamics(directory)
    if stored is None or stored.reference_step != step:
        return {}, []
    return (
        cluster_extras_for_report(stored.curves, stored.learned),
        [distribution_section_html(stored.learned, stored.curves)],
    )


def distribution_section_html(learned: pd.DataFrame, curves: pd.DataFrame) -> str:
    """An HTML fragment (for the report's ``extra_sections_html``): heading, one sentence stating the
    definition and threshold, and the learned-at distribution plot. Numbers only, no corpus text."""
    steps = overall_curve(curves)["step_number"].tolist()
    svg = learned_at_distribution_svg(
        [None if pd.isna(s) else int(s) for s in learned["learned_at_step"]], steps
    )
    threshold = float(learned["threshold_nats"].iloc[0])
    statistic = html.escape(str(learned["statistic"].iloc[0]))
    return (
        '<section class="training-dynamics"><h2>When clusters are learned</h2>'
        f"<p>A cluster is learned at the first checkpoint from which its {statistic} loss stays below "
        f"{threshold:.3g} nats at every later checkpoint ({len(steps)} checkpoints, step {steps[0]} to "
        f"{steps[-1]}).</p>{svg}</section>"
    )


def render_dynamics_page(
    model: str,
    reference_step: str,
    curves: pd.DataFrame,
    learned: pd.DataFrame,
    settings: Mapping[str, object] | None = None,
    top_tokens: Mapping[int, Sequence[str]] | None = None,
    report_href: str | None = None,
) -> str:
    """The model-level page: a self-contained HTML file (no external resources, light/dark) with
    the learned-at distribution, the overall mean loss over training, and a table of clusters with
    sparklines, sorted by learned-at step (clickable headers re-sort). ``top_tokens``: optional
    cluster → most common target tokens (untrusted text, escaped by the template)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("quanta_core", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    overall = overall_curve(curves)
    sparks = cluster_sparklines(curves, learned)
    rows = []
    for row in learned.itertuples(index=False):
        step = None if pd.isna(row.learned_at_step) else int(row.learned_at_step)
        rows.append(
            {
                "cluster": int(row.cluster),
                "n": int(row.n),
                "learned_at": "never" if step is None else str(row.learned_at),
                "learned_sort": step if step is not None else 10**12,
                "first_loss": f"{row.first_loss:.3f}",
                "last_loss": f"{row.last_loss:.3f}",
                "sparkline": jinja2.utils.markupsafe.Markup(sparks[int(row.cluster)]),
                "tokens": list((top_tokens or {}).get(int(row.cluster), [])),
            }
        )
    rows.sort(key=lambda r: (r["learned_sort"], r["cluster"]))
    histogram = learned_at_histogram(learned)
    steps = overall["step_number"].tolist()
    overall_svg = sparkline_svg(steps, overall["overall_mean"].tolist(), None, None, 480, 90)
    template = env.get_template("dynamics.html.j2")
    return template.render(
        model=model,
        reference_step=reference_step,
        threshold=f"{float(learned['threshold_nats'].iloc[0]):.4g}",
        statistic=str(learned["statistic"].iloc[0]),
        num_steps=len(steps),
        first_step=str(overall["step"].iloc[0]),
        last_step=str(overall["step"].iloc[-1]),
        num_clusters=len(learned),
        num_learned=int(learned["learned_at_step"].notna().sum()),
        distribution_svg=jinja2.utils.markupsafe.Markup(
            learned_at_distribution_svg([None if pd.isna(s) else int(s) for s in learned["learned_at_step"]], steps)
        ),
        overall_svg=jinja2.utils.markupsafe.Markup(overall_svg),
        overall_first=f"{overall['overall_mean'].iloc[0]:.3f}",
        overall_last=f"{overall['overall_mean'].iloc[-1]:.3f}",
        histogram=histogram.to_dict("records"),
        rows=rows,
        settings={str(k): str(v) for k, v in (settings or {}).items()},
        report_href=report_href,
    )
