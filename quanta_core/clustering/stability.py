"""Which clusters are real: clusterboot stability (Hennig 2007, R package fpc) and coherence.

The clustering is re-run R times under a resampling scheme, with the road and options of
``quanta_clusters`` (:class:`~quanta_core.clustering.roads.ClusterOptions`):

* ``"seeds"``: all tokens, re-clustering r with ``random_state = options.random_state + 1 + r``.
  The embedding is computed once and reused: on the exact road with ``eigh`` it does not depend on
  the seed, so each re-clustering equals ``spectral_clustering(…, random_state=seed)`` bit for bit;
  with ARPACK (and the sparse road's AMG / LOBPCG) only the solver's start vector differs, which
  moves the eigenvectors within the solver's tolerance. What varies is k-means.
* ``"subsample"``: a fraction (default 80 %) of the tokens without replacement, the whole
  clustering re-run on the sub-matrix (exact road) or the kNN sub-graph (sparse road: the edges
  between kept tokens), embedding included. The affinity is computed once and sub-selected (the
  affinity of a sub-matrix is the sub-matrix of the affinity).

Each original cluster C is scored by its best-match Jaccard in each re-clustering, on the tokens
present in both (P): ``max_D |C ∩ D| / |(C ∩ P) ∪ D|``, and its **stability** is the mean over the
R re-clusterings (NaN where C ∩ P was empty). Hennig's bands: < 0.6 unstable, 0.6–0.75 doubtful,
≥ 0.75 stable, ≥ 0.85 highly stable. Coherence: :mod:`quanta_core.clustering.coherence`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from quanta_core.clustering import sparse
from quanta_core.clustering.coherence import cluster_coherence
from quanta_core.clustering.eigensolvers import dense_spectral_embedding
from quanta_core.clustering.roads import ClusterOptions
from quanta_core.clustering.spectral import SpectralEmbedding, affinity_from_similarity, rank_clusters
from quanta_core.presets import (
    COHERENCE_NULL_GROUPS,
    STABILITY_FRACTION,
    STABILITY_RANDOM_STATE,
    STABILITY_RESAMPLES,
    STABILITY_SCHEME,
)

SCHEMES = ("seeds", "subsample")
BANDS = ((0.85, "highly stable"), (0.75, "stable"), (0.6, "doubtful"))  # below the last: "unstable"
STABLE = 0.75


@dataclass(frozen=True)
class StabilityOptions:
    """How the stability is measured: ``scheme`` (``"seeds"`` | ``"subsample"``), ``resamples``
    (R re-clusterings), ``fraction`` of tokens each subsample keeps, ``random_state`` of the
    subsamples and of the coherence null, ``null_groups`` random groups per cluster for the
    coherence z-score, ``n_init`` k-means restarts of each re-clustering (None: the clustering's)."""

    scheme: str = STABILITY_SCHEME
    resamples: int = STABILITY_RESAMPLES
    fraction: float = STABILITY_FRACTION
    random_state: int = STABILITY_RANDOM_STATE
    null_groups: int = COHERENCE_NULL_GROUPS
    n_init: int | None = None

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if self.resamples < 2 or not 0 < self.fraction <= 1:
            raise ValueError(f"need resamples ≥ 2 and 0 < fraction ≤ 1, got {self.resamples}, {self.fraction}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def stability_band(stability: np.ndarray) -> np.ndarray:
    """Hennig's band of each stability value (object ``[K]``: ``"highly stable"``, ``"stable"``,
    ``"doubtful"``, ``"unstable"``; NaN counts as unstable)."""
    values = np.asarray(stability, dtype=np.float64)
    out = np.full(values.shape, "unstable", dtype=object)
    for threshold, name in reversed(BANDS):
        out[values >= threshold] = name
    return out


def best_match_jaccard(labels: np.ndarray, other: np.ndarray) -> np.ndarray:
    """For each cluster c = 0…max(labels) of ``labels`` (int ``[S]``), the best Jaccard index with a
    cluster of ``other`` (int ``[S]``, −1 = token left out of that clustering) on the tokens present
    in both: float64 ``[K]``, NaN where no token of c is present."""
    labels, other = np.asarray(labels).reshape(-1), np.asarray(other).reshape(-1)
    if labels.shape != other.shape:
        raise ValueError(f"labelings have different lengths: {labels.size} and {other.size}")
    from scipy.sparse import coo_array

    k = int(labels.max()) + 1
    present = other >= 0
    a, b = labels[present], other[present]
    kb = int(b.max()) + 1 if b.size else 1
    both = coo_array((np.ones(a.size), (a, b)), shape=(k, kb)).toarray()
    rows, cols = np.bincount(a, minlength=k), np.bincount(b, minlength=kb)
    union = rows[:, None] + cols[None, :] - both
    with np.errstate(invalid="ignore", divide="ignore"):
        jaccard = np.where(union > 0, both / union, 0.0)
    return np.where(rows > 0, jaccard.max(axis=1), np.nan)


def mean_pairwise_ari(labelings: list[np.ndarray]) -> float:
    """Mean adjusted Rand index over all pairs of labelings (int ``[S]``, −1 = absent), each pair on
    the tokens present in both."""
    from sklearn.metrics import adjusted_rand_score

    scores = [adjusted_rand_score(a[(a >= 0) & (b >= 0)], b[(a >= 0) & (b >= 0)])
              for a, b in combinations(labelings, 2)]
    return float(np.mean(scores)) if scores else float("nan")


# -- the re-clusterings, per road --------------------------------------------------------------


class _Road:
    """Re-clusters one stored similarity: ``seed(s)`` on all tokens, ``subsample(tokens, s)``."""

    def __init__(self, options: ClusterOptions, n_init: int):
        self.k = int(options.num_clusters)
        self.m = self.k if options.n_components is None else int(options.n_components)
        self.options, self.n_init = options, n_init
        self.maps: np.ndarray | None = None


class _Exact(_Road):
    def __init__(self, matrix: np.ndarray, options: ClusterOptions, n_init: int):
        super().__init__(options, n_init)
        self.affinity = affinity_from_similarity(matrix)  # once; sub-selected for subsamples

    def _cluster(self, affinity: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.RandomState(seed)
        maps = dense_spectral_embedding(affinity, self.m, rng, self.options.eigen_solver)
        return SpectralEmbedding(maps, rng.get_state()).kmeans(self.k, self.n_init, num_columns=self.m)

    def subsample(self, tokens: np.ndarray, seed: int) -> np.ndarray:
        return self._cluster(self.affinity[np.ix_(tokens, tokens)], seed)  # a copy (eigh overwrites it)

    def seed(self, seed: int) -> np.ndarray:
        if self.maps is None:
            rng = np.random.RandomState(self.options.random_state)
            self.maps = dense_spectral_embedding(self.affinity.copy(), self.m, rng, self.options.eigen_solver)
        rng = np.random.RandomState(seed)
        rng.uniform(-1, 1, self.maps.shape[0])  # the embedding's draw: k-means starts where a direct run does
        return SpectralEmbedding(self.maps, rng.get_state()).kmeans(self.k, self.n_init, num_columns=self.m)


class _Sparse(_Road):
    def __init__(self, knn_indices: np.ndarray, knn_cosines: np.ndarray, options: ClusterOptions, n_init: int):
        super().__init__(options, n_init)
        self.affinity = sparse.knn_affinity(knn_indices, knn_cosines)

    def _kmeans(self, maps: np.ndarray, seed: int) -> np.ndarray:
        return rank_clusters(sparse.kmeans_labels(maps, self.k, self.options.kmeans, self.n_init, seed))

    def subsample(self, tokens: np.ndarray, seed: int) -> np.ndarray:
        W = self.affinity[tokens][:, tokens]
        return self._kmeans(sparse.graph_embedding(W, self.m, self.options.knn_eigen_solver, seed)[0], seed)

    def seed(self, seed: int) -> np.ndarray:
        if self.maps is None:
            self.maps = sparse.graph_embedding(self.affinity, self.m, self.options.knn_eigen_solver,
                                               self.options.random_state)[0]
        return self._kmeans(self.maps, seed)


def _road(similarity: Mapping[str, np.ndarray], options: ClusterOptions, n_init: int) -> _Road:
    if "matrix" in similarity:
        return _Exact(np.asarray(similarity["matrix"]), options, n_init)
    if "knn_indices" in similarity:
        return _Sparse(similarity["knn_indices"], similarity["knn_cosines"], options, n_init)
    raise ValueError(f"similarity has neither matrix nor knn_indices (got {sorted(similarity)})")


def reclusterings(similarity: Mapping[str, np.ndarray], options: ClusterOptions,
                  stability: StabilityOptions = StabilityOptions(),
                  progress: Callable[[str], None] | None = None) -> list[np.ndarray]:
    """The R re-clusterings of the scheme: ranked labels int64 ``[S]`` each, −1 for tokens a
    subsample left out."""
    say = progress or (lambda message: None)
    s = stability
    road = _road(similarity, options, options.n_init if s.n_init is None else int(s.n_init))
    num_tokens = road.affinity.shape[0]
    rng = np.random.default_rng(s.random_state)
    keep = max(2, int(round(s.fraction * num_tokens)))
    out = []
    for r in range(int(s.resamples)):
        started, seed = time.perf_counter(), int(options.random_state) + 1 + r
        if s.scheme == "seeds":
            labels = road.seed(seed)
        else:
            tokens = np.sort(rng.choice(num_tokens, size=keep, replace=False))
            labels = np.full(num_tokens, -1, dtype=np.int64)
            labels[tokens] = road.subsample(tokens, seed)
        out.append(labels)
        say(f"re-clustering {r + 1}/{s.resamples} ({s.scheme}, seed {seed}): {time.perf_counter() - started:.1f} s")
    return out


def cluster_stability(
    similarity: Mapping[str, np.ndarray],
    labels: np.ndarray,
    options: ClusterOptions,
    stability: StabilityOptions = StabilityOptions(),
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Per-cluster stability, band and coherence of ``labels``, and a JSON-able summary.

    ``similarity``: the stored ``quanta_similarity`` arrays (``matrix`` ``[S, S]`` or ``knn_indices``
    + ``knn_cosines`` ``[S, k]``). ``labels``: the clustering to judge (``quanta_clusters``' ranked
    labels, int ``[S]``), made with ``options``. Returns (one row per cluster: ``cluster``, ``size``,
    ``stability``, ``band``, ``recovered`` / ``dissolved`` = re-clusterings with Jaccard ≥ 0.75 /
    ≤ 0.5, ``coherence``, ``null_coherence``, ``null_std``, ``coherence_z``; summary dict)."""
    started = time.perf_counter()
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    again = reclusterings(similarity, options, stability, progress)
    reclustered = time.perf_counter()
    jaccard = np.stack([best_match_jaccard(labels, other) for other in again])  # [R, K]
    with np.errstate(invalid="ignore"):
        score = np.nanmean(np.where(np.isfinite(jaccard), jaccard, np.nan), axis=0)
    table = cluster_coherence(similarity, labels, stability.null_groups, stability.random_state)
    table.insert(2, "stability", score)
    table.insert(3, "band", stability_band(score))
    table.insert(4, "recovered", (jaccard >= STABLE).sum(axis=0))
    table.insert(5, "dissolved", (jaccard <= 0.5).sum(axis=0))
    road = "exact" if "matrix" in similarity else "sparse"
    summary = _summary(table, again, labels, road, options, stability)
    summary.update(recluster_seconds=round(reclustered - started, 2),
                   seconds=round(time.perf_counter() - started, 2))
    return table, summary


def _summary(table: pd.DataFrame, again: list[np.ndarray], labels: np.ndarray, road: str,
             options: ClusterOptions, stability: StabilityOptions) -> dict:
    from sklearn.metrics import adjusted_rand_score

    score = table["stability"].to_numpy()
    vs_original = [adjusted_rand_score(labels[other >= 0], other[other >= 0]) for other in again]
    return {
        "scheme": stability.scheme, "resamples": int(stability.resamples), "fraction": float(stability.fraction),
        "num_clusters": int(len(table)), "num_tokens": int(labels.size),
        "fraction_stable": float(np.mean(score >= STABLE)),
        "fraction_highly_stable": float(np.mean(score >= BANDS[0][0])),
        "median_stability": float(np.nanmedian(score)),
        "bands": {name: int((table["band"] == name).sum()) for name in ("highly stable", "stable", "doubtful",
                                                                       "unstable")},
        "mean_ari": round(mean_pairwise_ari(again), 4), "mean_ari_vs_clustering": round(float(np.mean(vs_original)), 4),
        "median_coherence_z": float(np.nanmedian(table["coherence_z"])),
        "road": road,
        "options": {**options.as_dict(), **{f"stability_{k}": v for k, v in stability.as_dict().items()}},
    }
