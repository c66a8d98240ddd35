"""The learning-time spectrum and how well it reconstructs the mean loss curve.

Bins: ``bins`` intervals of x = log10(step + 1) whose edges are checkpoints (evenly spaced targets over
[x_first, x_last], each moved to the nearest checkpoint; duplicates merged), so the measured mean loss
is known exactly at every edge. For bin b = [lo, hi) (the last one closed), Δx = hi − lo:

* ``tokens``: well-fit tokens (``flags == 0``) whose learning time ``midpoint_x`` lies in the bin —
  the **spectrum** (a histogram of learning times on the log-step axis);
* ``measured``: −ΔL̄/Δx, L̄ = the mean loss over all G tokens at a checkpoint (nats per decade);
* ``reconstructed``: the loss decrease the spectrum predicts, (1/G) Σ over well-fit tokens i of
  drop_i · [σ((m_i − lo)/w_i) − σ((m_i − hi)/w_i)] / Δx — each well-fit token's fitted sigmoid (its
  drop spread over its width around its learning time); flagged tokens contribute nothing;
* ``fitted_all``: −ΔF̄/Δx, F̄ the mean of *every* token's fitted curve (the derivative of the mean of
  the per-token fits, no token left out).

Error of a reconstruction r against the measurement d (the ``reconstruction_error`` in metadata for
r = ``reconstructed``): the Δx-weighted relative L2 distance
``sqrt(Σ_b Δx_b (d_b − r_b)²) / sqrt(Σ_b Δx_b d_b²)`` — 0 is perfect, 1 is as far as predicting no
change. ``explained_fraction``: (Σ_b Δx_b r_b) / (Σ_b Δx_b d_b), the share of the mean loss decrease from
the first to the last checkpoint that the spectrum accounts for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from quanta_core.learning.fit import sigmoid_shape
from quanta_core.learning.times import TokenFits, x_to_step

SPECTRUM_BINS = 24
_CHUNK = 1 << 20  # tokens at a time when summing the sigmoids at the bin edges


@dataclass
class Spectrum:
    """``bins``: one row per bin — ``x_lo``, ``x_hi``, ``step_lo``, ``step_hi`` (checkpoint steps at the
    edges), ``tokens`` (int64), ``measured``, ``reconstructed``, ``fitted_all`` (float64, nats per decade);
    ``summary``: errors and totals (JSON-ready)."""

    bins: pd.DataFrame
    summary: dict

    def tables(self) -> dict:
        """For the cache IO manager: ``spectrum`` (→ ``spectrum.parquet``), ``spectrum_summary``."""
        return {"spectrum": self.bins, "spectrum_summary": self.summary}


def checkpoint_edges(x: np.ndarray, bins: int) -> np.ndarray:
    """Bin edges among the positions ``x`` ``[T]`` (sorted): evenly spaced targets snapped to the
    nearest position, distinct, always including the first and last."""
    x = np.asarray(x, dtype=np.float64)
    if bins < 1 or len(x) < 2:
        raise ValueError(f"need ≥ 1 bin and ≥ 2 positions, got {bins} and {len(x)}")
    targets = np.linspace(x[0], x[-1], bins + 1)
    nearest = np.abs(x[:, None] - targets[None, :]).argmin(axis=0)
    return x[np.unique(np.concatenate([[0], nearest, [len(x) - 1]]))]


def relative_error(measured: np.ndarray, other: np.ndarray, dx: np.ndarray) -> float:
    """``sqrt(Σ dx (measured − other)²) / sqrt(Σ dx measured²)`` (NaN when the measurement is all 0)."""
    norm = float(np.sqrt((dx * measured**2).sum()))
    return float(np.sqrt((dx * (measured - other) ** 2).sum())) / norm if norm > 0 else float("nan")


def _sigmoid_mass(fits: TokenFits, edges: np.ndarray) -> np.ndarray:
    """(1/G) Σ over well-fit tokens of drop · σ((m − edge)/w) at each edge, float64 ``[E]``."""
    cols, total = fits.columns, len(fits.columns["flags"])
    mass = np.zeros(len(edges))
    for start in range(0, total, _CHUNK):
        part = slice(start, start + _CHUNK)
        keep = cols["flags"][part] == 0
        drop = (cols["loss_initial"][part][keep] - cols["loss_final"][part][keep]).astype(np.float64)
        mid = cols["midpoint_x"][part][keep].astype(np.float64)
        width = cols["width"][part][keep].astype(np.float64)
        mass += sigmoid_shape(edges, mid, width) @ drop
    return mass / total


def learning_time_spectrum(fits: TokenFits, bins: int = SPECTRUM_BINS) -> Spectrum:
    """The spectrum of ``fits`` (from :func:`quanta_core.learning.times.fit_learning_times`) and its
    reconstruction of the mean loss curve, on ``bins`` checkpoint-aligned bins (module docstring)."""
    points = fits.points.sort_values("x")
    x = points["x"].to_numpy(dtype=np.float64)
    edges = checkpoint_edges(x, bins)
    at = np.searchsorted(x, edges)
    lo, hi, dx = edges[:-1], edges[1:], np.diff(edges)
    mean_loss = points["mean_loss"].to_numpy(dtype=np.float64)[at]
    mean_fitted = points["mean_fitted"].to_numpy(dtype=np.float64)[at]
    measured = -np.diff(mean_loss) / dx
    fitted_all = -np.diff(mean_fitted) / dx
    reconstructed = -np.diff(_sigmoid_mass(fits, edges)) / dx

    well = fits.well_fit
    learned = fits.columns["midpoint_x"][well].astype(np.float64)
    counts = np.histogram(learned, bins=edges)[0].astype(np.int64)  # numpy closes the last bin
    table = pd.DataFrame({
        "x_lo": lo, "x_hi": hi, "step_lo": np.rint(x_to_step(lo)).astype(np.int64),
        "step_hi": np.rint(x_to_step(hi)).astype(np.int64), "tokens": counts,
        "measured": measured, "reconstructed": reconstructed, "fitted_all": fitted_all,
    })
    total_drop = float((dx * measured).sum())
    quartiles = np.quantile(learned, [0.25, 0.5, 0.75]) if len(learned) else np.full(3, np.nan)
    summary = {
        "bins": len(table),
        "tokens": len(well),
        "well_fit": int(well.sum()),
        "mean_loss_first": float(mean_loss[0]),
        "mean_loss_last": float(mean_loss[-1]),
        "reconstruction_error": relative_error(measured, reconstructed, dx),
        "fitted_all_error": relative_error(measured, fitted_all, dx),
        "explained_fraction": float((dx * reconstructed).sum()) / total_drop if total_drop else float("nan"),
        "learning_step_quartiles": [float(v) for v in x_to_step(quartiles)],  # of well-fit tokens, in steps
        "error_definition": "sqrt(sum dx (measured - reconstructed)^2) / sqrt(sum dx measured^2), "
                            "rates -dL/dx in nats per decade of step + 1, bins between checkpoints",
    }
    return Spectrum(table, summary)
