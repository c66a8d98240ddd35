"""Token learning times: a sigmoid fit of every token's loss over the checkpoints of a model.

For every predictable token g of a model's loss tables (one table per checkpoint step, float32
``[G]`` nats, indexed by canonical index), the loss at the T available steps is fitted against
``x = log10(step + 1)`` (the axis of :func:`quanta_core.steps.step_x`: step0 at 0, one unit per decade)
by :func:`quanta_core.learning.fit.fit_sigmoids`: loss before (``loss_initial``), after (``loss_final``),
learning time (``midpoint_x``, and ``midpoint_step = 10**midpoint_x − 1``), ``width`` (decades),
goodness of fit (``r2``, ``rms`` in nats) and ``flags`` (0: well fit; the rule is in that module).

Tables are read lazily: each is opened memory-mapped and tokens are processed ``chunk_tokens`` at a
time, so the working memory is bounded by ``workers × chunk_tokens × T × ~12 × 8`` bytes (measured
peak ≈ 9.3 float64 ``[T, chunk]`` arrays: 8,192 tokens × 154 steps → 90 MiB per worker, bound 116 MiB) plus the
outputs (29 bytes per token: seven float32 columns and the uint8 flags).
:func:`fit_tables` is the same over any positions, e.g. ``log10(parameters)`` across model sizes.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

import numpy as np
import pandas as pd

from quanta_core.learning.fit import FLAG_NAMES, FitSettings, bounds_for, fit_sigmoids, sigmoid_curves
from quanta_core.steps import sorted_steps, step_number
from quanta_core.store import open_table

CHUNK_TOKENS = 8192
WORKING_ARRAYS = 12  # float64 [T, chunk] arrays alive at the peak of a chunk's fit (tracemalloc: 9.3)
FIT_COLUMNS = ("loss_initial", "loss_final", "midpoint_x", "width", "r2", "rms", "flags")
Table = "str | os.PathLike | np.ndarray"


@dataclass
class TokenFits:
    """Per-token fits. ``columns``: name → array ``[G]`` (float32, ``flags`` uint8, as documented in
    the module docstring); ``points``: one row per fitted table (``name``, ``x``, ``mean_loss`` = mean
    over all G tokens of the table, ``mean_fitted`` = mean over all tokens of the fitted curves at x,
    both float64 nats, plus ``step_number`` or ``num_parameters``); ``summary``: settings, bounds,
    flag counts, timing (JSON-ready)."""

    columns: dict[str, np.ndarray]
    points: pd.DataFrame
    summary: dict

    def __getitem__(self, column: str) -> np.ndarray:
        return self.columns[column]

    @property
    def well_fit(self) -> np.ndarray:
        """bool ``[G]``: no flag set."""
        return self.columns["flags"] == 0

    def frame(self) -> pd.DataFrame:
        """The columns as a DataFrame, row g = canonical index g."""
        return pd.DataFrame(self.columns)

    def tables(self) -> dict:
        """What an asset returns for the cache IO manager: ``fits`` (→ ``fits.parquet``), ``points``
        (→ ``points.parquet``), ``summary`` (→ ``summary.json``)."""
        return {"fits": self.frame(), "points": self.points, "summary": self.summary}

    @classmethod
    def from_tables(cls, fits: pd.DataFrame, points: pd.DataFrame, summary: dict) -> TokenFits:
        return cls({c: fits[c].to_numpy() for c in fits.columns}, points, summary)


def read_token_fits(directory: str | os.PathLike) -> TokenFits | None:
    """Read a stored ``fits.parquet``, ``points.parquet``, ``summary.json``; ``None`` if absent."""
    import json

    directory = os.fspath(directory)
    files = [os.path.join(directory, f) for f in ("fits.parquet", "points.parquet", "summary.json")]
    if not all(os.path.isfile(f) for f in files):
        return None
    with open(files[2], encoding="utf-8") as f:
        summary = json.load(f)
    return TokenFits.from_tables(pd.read_parquet(files[0]), pd.read_parquet(files[1]), summary)


def _read_chunk(arrays, names, wheres, start: int, stop: int) -> np.ndarray:
    """Losses ``[T, stop − start]`` float64 of tokens ``start:stop``; a clear error for non-finite ones."""
    y = np.empty((len(arrays), stop - start))
    for t, array in enumerate(arrays):
        y[t] = array[start:stop]
        bad = ~np.isfinite(y[t])
        if bad.any():
            raise ValueError(
                f"loss table for {names[t]} ({wheres[t]}) has {int(bad.sum())} non-finite losses among canonical "
                f"indices {start:,}…{stop - 1:,}, the first at {start + int(np.argmax(bad)):,}"
            )
    return y


def _fit_chunk(arrays, names, wheres, x, settings, start, stop) -> dict:
    y = _read_chunk(arrays, names, wheres, start, stop)
    fit = fit_sigmoids(y, x, settings)
    fit["sum_loss"] = y.sum(axis=1)
    del y
    fit["sum_fitted"] = sigmoid_curves(x, fit).sum(axis=1)
    return fit


def _store(columns: dict, fit: dict, start: int, stop: int) -> None:
    part = slice(start, stop)
    columns["loss_initial"][part] = fit["final"] + fit["drop"]
    columns["loss_final"][part] = fit["final"]
    columns["midpoint_x"][part] = fit["midpoint"]
    columns["width"][part] = fit["width"]
    columns["r2"][part] = fit["r2"]
    columns["rms"][part] = fit["rms"]
    columns["flags"][part] = fit["flags"]


def _in_order(fit_one, total: int, chunk: int, workers: int):
    """Yield ``(start, stop, fit_one(start, stop))`` chunk by chunk, in order, ``workers`` threads
    fitting ahead; at most ``2 × workers`` chunks are submitted at a time, so an error stops the
    run after the chunks in flight."""
    bounds = ((s, min(s + chunk, total)) for s in range(0, total, chunk))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = deque((a, b, pool.submit(fit_one, a, b)) for a, b in islice(bounds, 2 * workers))
        while pending:
            start, stop, future = pending.popleft()
            fit = future.result()
            for a, b in islice(bounds, 1):
                pending.append((a, b, pool.submit(fit_one, a, b)))
            yield start, stop, fit


def fit_tables(
    tables: Sequence[tuple[str, Table]],
    x: Sequence[float],
    *,
    settings: FitSettings = FitSettings(),
    chunk_tokens: int = CHUNK_TOKENS,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> TokenFits:
    """Fit every token of ``tables`` (``(name, table)`` pairs, a table being a ``.npy`` path opened
    memory-mapped or a float array ``[G]`` in nats, all of the same length) at positions ``x``
    (``[T]``, strictly increasing, one per table). ``workers`` chunks are fitted at a time in threads
    (numpy releases the GIL); ``progress(tokens_done)`` is called after each chunk, in order.

    Returns :class:`TokenFits` with columns ``loss_initial``, ``loss_final`` (nats), ``midpoint_x``,
    ``width`` (units of x), ``r2``, ``rms`` (nats), ``flags`` and ``points`` ``name``, ``x``,
    ``mean_loss``, ``mean_fitted``.
    """
    if not tables:
        raise ValueError("no loss tables given")
    x = np.asarray(x, dtype=np.float64)
    if len(x) != len(tables):
        raise ValueError(f"{len(tables)} tables but {len(x)} positions")
    bounds = bounds_for(x, settings)
    if chunk_tokens < 1 or workers < 1:
        raise ValueError(f"chunk_tokens and workers must be ≥ 1, got {chunk_tokens} and {workers}")
    names = [str(n) for n, _ in tables]
    opened = [open_table(t, n) for n, t in tables]
    arrays, wheres = [a for a, _ in opened], [w for _, w in opened]
    total = len(arrays[0])
    for name, array, where in zip(names, arrays, wheres):
        if len(array) != total:
            raise ValueError(f"loss table for {name} ({where}) has {len(array):,} entries, {names[0]}'s has {total:,}")
    if total == 0:
        raise ValueError(f"loss table for {names[0]} ({wheres[0]}) is empty")

    columns = {c: np.empty(total, dtype=np.uint8 if c == "flags" else np.float32) for c in FIT_COLUMNS}
    sum_loss, sum_fitted = np.zeros(len(x)), np.zeros(len(x))
    started = time.perf_counter()
    fit_one = lambda start, stop: _fit_chunk(arrays, names, wheres, x, settings, start, stop)  # noqa: E731
    for start, stop, fit in _in_order(fit_one, total, chunk_tokens, workers):
        _store(columns, fit, start, stop)
        sum_loss += fit["sum_loss"]
        sum_fitted += fit["sum_fitted"]
        if progress:
            progress(stop)
    seconds = time.perf_counter() - started
    points = pd.DataFrame({"name": names, "x": x, "mean_loss": sum_loss / total, "mean_fitted": sum_fitted / total})
    summary = _summary(columns, x, bounds, settings, chunk_tokens, workers, seconds)
    return TokenFits(columns, points, summary)


def _summary(columns, x, bounds, settings, chunk_tokens, workers, seconds) -> dict:
    flags, total = columns["flags"], len(columns["flags"])
    well = int((flags == 0).sum())
    return {
        "tokens": total,
        "positions": len(x),
        "well_fit": well,
        "well_fit_fraction": well / total,
        "flag_counts": {name: int((flags & bit).astype(bool).sum()) for bit, name in FLAG_NAMES.items()},
        "bounds": {"x_min": bounds.x_min, "x_max": bounds.x_max, "min_width": bounds.min_width,
                   "max_width": bounds.max_width},
        "settings": settings.as_dict(),
        "chunk_tokens": chunk_tokens,
        "workers": workers,
        "working_memory_bytes_bound": workers * WORKING_ARRAYS * chunk_tokens * len(x) * 8,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(total / max(seconds, 1e-9), 1),
    }


def step_positions(steps: Sequence[str]) -> np.ndarray:
    """``log10(step + 1)`` for step names, float64 ``[T]``."""
    return np.log10(np.array([step_number(s) for s in steps], dtype=np.float64) + 1.0)


def fit_learning_times(
    loss_tables: Mapping[str, Table],
    *,
    settings: FitSettings = FitSettings(),
    chunk_tokens: int = CHUNK_TOKENS,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> TokenFits:
    """When every token is learned: :func:`fit_tables` over ``loss_tables`` (step name ``"step<N>"``
    → ``.npy`` path or array, float ``[G]`` nats; any order) at ``x = log10(step + 1)``.

    Adds the column ``midpoint_step`` (float32, ``10**midpoint_x − 1``, the learning time in steps)
    and the points' ``step_number``; the summary gains ``axis`` and ``steps``.
    """
    steps = sorted_steps(loss_tables)
    if len(set(map(step_number, steps))) != len(steps):
        raise ValueError(f"two tables for the same step number: {steps}")
    fits = fit_tables([(s, loss_tables[s]) for s in steps], step_positions(steps), settings=settings,
                      chunk_tokens=chunk_tokens, workers=workers, progress=progress)
    mid = fits.columns["midpoint_x"].astype(np.float64)
    fits.columns["midpoint_step"] = (np.power(10.0, mid) - 1.0).astype(np.float32)
    fits.points.insert(1, "step_number", np.array([step_number(s) for s in steps], dtype=np.int64))
    fits.summary.update(axis="log10(step + 1)", steps=steps)
    return fits


def x_to_step(x) -> np.ndarray:
    """Inverse of ``log10(step + 1)``: ``10**x − 1`` (float64)."""
    return np.power(10.0, np.asarray(x, dtype=np.float64)) - 1.0

