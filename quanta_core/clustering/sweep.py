"""The paper's cluster-count sweep on one similarity: labels for its cluster counts, the
rank-frequency envelope of the cluster sizes, and the envelope's slope with a bootstrap interval.

* cluster counts: the paper's 27 (:data:`~quanta_core.clustering.paper.PAPER_KS`, 10…1100) that are
  ≤ S / 2;
* one spectral embedding with ``max(ks)`` eigenvectors, k-means on its first k columns for each k
  (exact road: :func:`~quanta_core.clustering.spectral.cluster_sweep`, the labels a direct
  ``spectral_clustering`` at that k gives; sparse road: the kNN graph's embedding, the same way);
* the slope of log(size) against log(rank) of the envelope over ranks 100–1000 (the paper's fit,
  slope −1.24 on its labels); for S < 10,000 the range is scaled by S / 10,000 (S = 600: ranks
  6–60), and it ends at the last rank the envelope has;
* the interval: the 2.5 and 97.5 percentiles of the slope over bootstrap draws of the fitted
  points (pairs bootstrap of the regression, seeded) — the uncertainty of the fit. Neighbouring
  ranks of an envelope are correlated, so it is narrow; resampling the *tokens* instead (each
  labelling's sizes drawn multinomially) is biased for an envelope of sorted maxima: on the paper's
  labels it gave −1.48 to −1.40 around the estimate −1.24 (docs/clustering.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from quanta_core.clustering import sparse
from quanta_core.clustering.paper import PAPER_KS, PAPER_NUM_TOKENS, load_paper_labels
from quanta_core.clustering.roads import ClusterOptions
from quanta_core.clustering.spectral import (
    PAPER_SLOPE_RANKS,
    cluster_sweep,
    envelope_slope,
    rank_clusters,
    rank_frequency_envelope,
)
from quanta_core.presets import STABILITY_RANDOM_STATE, SWEEP_BOOTSTRAPS

PAPER_REPORTED_SLOPE = -1.24  # Michaud et al. (2023), the envelope over ranks 100–1000
PAPER_LABELS_SLOPE = -1.2376  # the same fit on the paper's published labels (paper_sweep(), tested)


def sweep_ks(num_tokens: int, ks: Sequence[int] = PAPER_KS) -> list[int]:
    """The cluster counts of ``ks`` (default: the paper's) that are ≤ ``num_tokens`` / 2."""
    out = [int(k) for k in ks if 2 <= k <= num_tokens // 2]
    if not out:
        raise ValueError(f"no cluster count of {list(ks)} is ≤ S / 2 = {num_tokens // 2}")
    return out


def slope_ranks(num_tokens: int, num_ranks: int) -> tuple[int, int]:
    """The ranks (1-based, inclusive) of the slope fit: the paper's 100–1000, scaled by
    S / 10,000 when S is smaller, ending at ``num_ranks`` at most."""
    lo, hi = PAPER_SLOPE_RANKS
    scale = min(1.0, num_tokens / PAPER_NUM_TOKENS)
    lo, hi = max(2, int(round(lo * scale))), min(int(num_ranks), int(round(hi * scale)))
    if hi - lo < 1:
        raise ValueError(f"no slope range: ranks {lo}–{hi} for S = {num_tokens} and {num_ranks} ranks")
    return lo, hi


def slope_interval(envelope: np.ndarray, ranks: tuple[int, int], draws: int = SWEEP_BOOTSTRAPS,
                   random_state: int = STABILITY_RANDOM_STATE, level: float = 0.95) -> tuple[float, float]:
    """Bootstrap interval (``level``, percentiles) of :func:`envelope_slope` over ``ranks``: the
    fitted (log rank, log size) points resampled with replacement, the line refitted per draw."""
    lo, hi = ranks
    rank = np.arange(1, len(envelope) + 1)
    keep = (rank >= lo) & (rank <= hi) & (np.asarray(envelope) > 0)
    x, y = np.log(rank[keep]), np.log(np.asarray(envelope, dtype=np.float64)[keep])
    pick = np.random.default_rng(random_state).integers(0, x.size, size=(int(draws), x.size))
    bx, by = x[pick], y[pick]
    dx = bx - bx.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        slopes = (dx * (by - by.mean(axis=1, keepdims=True))).sum(axis=1) / (dx * dx).sum(axis=1)
    slopes = slopes[np.isfinite(slopes)]  # a draw of one distinct rank has no slope
    tail = (1 - level) / 2 * 100
    return float(np.percentile(slopes, tail)), float(np.percentile(slopes, 100 - tail))


@dataclass
class ClusterSweep:
    """Labels per cluster count (ranked int64 ``[S]``), the envelope (int64 ``[max k]``, cluster
    size at rank r + 1), its slope over ``ranks`` with the bootstrap ``interval``, and ``info``."""

    labels: dict[int, np.ndarray]
    envelope: np.ndarray
    slope: float
    interval: tuple[float, float]
    ranks: tuple[int, int]
    info: dict = field(default_factory=dict)

    def envelope_table(self) -> pd.DataFrame:
        """``rank`` (1-based) and ``size`` of the envelope, one row per rank."""
        return pd.DataFrame({"rank": np.arange(1, len(self.envelope) + 1), "size": self.envelope})

    def labels_table(self) -> pd.DataFrame:
        """One int32 column ``k<k>`` of ranked labels per cluster count, row = token position."""
        return pd.DataFrame({f"k{k}": v.astype(np.int32) for k, v in self.labels.items()})

    def summary(self, paper: bool = False) -> dict:
        """JSON-able: ``ks``, ``envelope_slope``, ``slope_interval``, ``slope_ranks``, and ``info``;
        ``paper=True`` (a run :func:`~quanta_core.clustering.paper.paper_comparable` says matches the
        paper's) adds ``paper_envelope_slope`` (−1.24 reported) and ``paper_labels_slope`` (−1.2376)."""
        out = {"ks": list(self.labels), "envelope_slope": round(self.slope, 4),
               "slope_interval": [round(v, 4) for v in self.interval], "slope_ranks": list(self.ranks), **self.info}
        if paper:
            out.update(paper_envelope_slope=PAPER_REPORTED_SLOPE, paper_labels_slope=PAPER_LABELS_SLOPE)
        return out


def _sparse_sweep(similarity: Mapping[str, np.ndarray], ks: list[int], o: ClusterOptions,
                  say: Callable[[str], None]) -> dict[int, np.ndarray]:
    W = sparse.knn_affinity(similarity["knn_indices"], similarity["knn_cosines"])
    maps, _ = sparse.graph_embedding(W, max(ks), o.knn_eigen_solver, o.random_state)
    out = {}
    for k in ks:
        out[k] = rank_clusters(sparse.kmeans_labels(maps[:, :k], k, o.kmeans, o.n_init, o.random_state))
        say(f"k = {k}: done")
    return out


def sweep_similarity(similarity: Mapping[str, np.ndarray], options: ClusterOptions, ks: Sequence[int] | None = None,
                     draws: int = SWEEP_BOOTSTRAPS, progress: Callable[[str], None] | None = None) -> ClusterSweep:
    """The sweep of a stored similarity (``matrix`` ``[S, S]`` or ``knn_indices`` + ``knn_cosines``)
    over ``ks`` (default: :func:`sweep_ks`), with ``options``' road settings (``num_clusters`` and
    ``n_components`` are not used: each k clusters on its first k eigenvectors)."""
    say = progress or (lambda message: None)
    started = time.perf_counter()
    num_tokens = len(similarity["indices"])
    ks = sweep_ks(num_tokens, PAPER_KS if ks is None else ks)
    if "matrix" in similarity:
        labels = cluster_sweep(similarity["matrix"], ks, options.n_init, options.random_state,
                               lambda k, s: say(f"k = {k}: {s:.1f} s"), options.eigen_solver)
    elif "knn_indices" in similarity:
        labels = _sparse_sweep(similarity, ks, options, say)
    else:
        raise ValueError(f"similarity has neither matrix nor knn_indices (got {sorted(similarity)})")
    envelope = rank_frequency_envelope(labels)
    ranks = slope_ranks(num_tokens, len(envelope))
    interval = slope_interval(envelope, ranks, draws)
    info = {"num_tokens": num_tokens, "road": "exact" if "matrix" in similarity else "sparse",
            "bootstrap_draws": int(draws), "seconds": round(time.perf_counter() - started, 2)}
    return ClusterSweep(labels, envelope, envelope_slope(envelope, ranks), interval, ranks, info)


def paper_sweep() -> ClusterSweep:
    """The paper's own sweep from its published labels (10,000 tokens, 27 ks): slope −1.2376."""
    labels = {k: rank_clusters(v) for k, v in load_paper_labels().items()}
    envelope = rank_frequency_envelope(labels)
    ranks = slope_ranks(PAPER_NUM_TOKENS, len(envelope))
    return ClusterSweep(labels, envelope, envelope_slope(envelope, ranks), slope_interval(envelope, ranks), ranks,
                        {"num_tokens": PAPER_NUM_TOKENS, "paper_reported_slope": PAPER_REPORTED_SLOPE})
