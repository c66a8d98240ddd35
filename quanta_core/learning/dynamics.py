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

This module is analysis only: the charts are :mod:`quanta_core.report.charts`, the model page and the
report's extras :mod:`quanta_core.report.dynamics_page`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from quanta_core.steps import sorted_steps, step_number
from quanta_core.store import open_table

CURVE_COLUMNS = ["step", "step_number", "cluster", "n", "mean", "median", "q25", "q75", "overall_mean"]
STATISTICS = ("mean", "median", "q25", "q75")
CHUNK = 1 << 20  # floats summed at a time for the whole-table mean (4 MiB of float32)


# ---------------------------------------------------------------------------------------------
# curves


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


def _gather(table_ref, step: str, indices: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, float]:
    """(float64 ``[S]`` losses of the selected tokens, in ``indices`` order; whole-table mean), nats.

    ``order`` sorts ``indices`` so the table is read in file order; the table (a memmap) is
    dropped before returning, so only one step is open at a time."""
    table, where = open_table(table_ref, step)
    sorted_indices = indices[order]
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
    return losses, _whole_mean(table, step, where)


def reference_step(model: str, steps_with_clusters: list[str], requested: str | None) -> str:
    """The step whose clusters are followed: ``requested``, else the latest of
    ``steps_with_clusters`` (in step order); ``FileNotFoundError`` naming what exists otherwise."""
    if requested is not None:
        if requested not in steps_with_clusters:
            raise FileNotFoundError(f"no quanta_clusters of {model} at the reference step {requested} "
                                    f"(materialized: {', '.join(steps_with_clusters) or 'none'})")
        return requested
    if not steps_with_clusters:
        raise FileNotFoundError(f"no quanta_clusters for model {model}: materialize it for a step first")
    return steps_with_clusters[-1]


def cluster_loss_curves(
    indices: np.ndarray,
    labels: np.ndarray,
    loss_tables: Mapping[str, str | os.PathLike | np.ndarray],
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
    steps = sorted_steps(loss_tables)
    order = np.argsort(indices, kind="stable")  # read pages in file order
    clusters, codes = np.unique(labels, return_inverse=True)
    counts = np.bincount(codes, minlength=len(clusters))
    frames = []
    for done, step in enumerate(steps, start=1):
        losses, overall = _gather(loss_tables[step], step, indices, order)
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
# the stored result


@dataclass
class TrainingDynamics:
    """A stored ``quanta_training_dynamics`` result: ``curves`` and ``learned`` as returned by
    :func:`cluster_loss_curves` and :func:`learned_at`; ``summary`` (reference step, steps, settings);
    ``together`` and ``together_summary``: the "learned at once" test
    (:func:`quanta_core.learning.clusters.learned_at_once`), ``None`` without token learning times."""

    curves: pd.DataFrame
    learned: pd.DataFrame
    summary: dict
    together: pd.DataFrame | None = None
    together_summary: dict | None = None

    @property
    def reference_step(self) -> str:
        """The step (``"step<N>"``) whose clusters are followed; only its report may show them."""
        return str(self.summary["reference_step"])

    @classmethod
    def from_stored(cls, value: Mapping) -> TrainingDynamics:
        """From the value the asset returns (and the IO manager loads back): a mapping with
        ``curves`` and ``learned_at`` (DataFrames), ``summary`` (dict with ``reference_step``) and,
        optionally, ``learned_together`` (DataFrame) with ``learned_together_summary`` (dict); other
        keys (the ``page``) are ignored. A ``ValueError`` names what is missing or wrong."""
        missing = [k for k in ("curves", "learned_at", "summary") if k not in value]
        if missing:
            raise ValueError(f"stored training dynamics lack {missing} (have {sorted(value)})")
        curves, learned, summary = value["curves"], value["learned_at"], value["summary"]
        if not (isinstance(curves, pd.DataFrame) and isinstance(learned, pd.DataFrame)):
            raise ValueError(f"stored training dynamics: curves and learned_at must be DataFrames, got "
                             f"{type(curves).__name__} and {type(learned).__name__}")
        if not isinstance(summary, Mapping) or "reference_step" not in summary:
            raise ValueError("stored training dynamics: summary must be a dict with a reference_step")
        together, together_summary = value.get("learned_together"), value.get("learned_together_summary")
        if (together is None) != (together_summary is None) or not (
                together is None or isinstance(together, pd.DataFrame) and isinstance(together_summary, Mapping)):
            raise ValueError("stored training dynamics: learned_together (a DataFrame) and "
                             "learned_together_summary (a dict) come together")
        together_summary = None if together_summary is None else dict(together_summary)
        return cls(curves, learned, dict(summary), together, together_summary)


# ---------------------------------------------------------------------------------------------
