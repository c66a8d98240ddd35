"""Spectral clustering of the QDG similarity matrix, cluster-count sweeps, and the paper's
rank-frequency envelope.

The original clustered with scikit-learn::

    SpectralClustering(n_clusters=k, affinity="precomputed", assign_labels="kmeans",
                       n_init=30, random_state=0).fit(A),   A = 1 − arccos(clip(C, −1, 1)) / π

:func:`spectral_clustering` performs exactly the calls that ``SpectralClustering.fit`` makes for a
precomputed affinity (one ``RandomState(random_state)`` shared by scikit-learn's spectral
embedding — ARPACK, float64, ``drop_first=False`` — and then ``k_means``), so it gives the same
labels as scikit-learn, bit for bit; only the cluster numbering differs: clusters are *ranked*,
0 = the largest, ties broken by first appearance in sample order.

A sweep over many k (the paper used 27 values on one matrix) computes the embedding once, with
as many eigenvectors as the largest k, and runs k-means on its first k columns for every k, with
the random state that a direct run would have at that point. The first k of K eigenvectors equal
the k eigenvectors of a direct run up to ARPACK's numerical tolerance (and up to rotations inside
eigenvalues that coincide), so a sweep reproduces the direct labels whenever the clustering is
not decided by such numerical noise.

``eigen_solver`` picks how the embedding's eigenvectors are found (:mod:`quanta_core.clustering.eigensolvers`):
``"arpack"`` is scikit-learn's own call; ``"eigh"`` is LAPACK's exact subset solver on the same
Laplacian — same eigenvectors to rounding, same random draws. The sparse road for large S (a kNN
graph instead of a dense matrix) is :mod:`quanta_core.clustering.sparse`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from quanta_core.clustering.eigensolvers import dense_spectral_embedding
from quanta_core.presets import EIGEN_SOLVER, N_INIT, RANDOM_STATE

PAPER_SLOPE_RANKS = (100, 1000)  # ranks (1-based, inclusive) of the paper's envelope fit


# -- affinity and validation ------------------------------------------------------------------


def _check_similarity(similarity: np.ndarray) -> np.ndarray:
    C = np.asarray(similarity)
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"similarity matrix must be square [S, S], got shape {C.shape}")
    if C.shape[0] < 2:
        raise ValueError(f"need at least 2 samples to cluster, got S = {C.shape[0]}")
    bad = ~np.isfinite(C)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise ValueError(
            f"similarity matrix has {int(bad.sum())} non-finite entries (NaN/inf), first at "
            f"[{rows[0]}, {cols[0]}] = {C[rows[0], cols[0]]}; the gradients behind it are broken"
        )
    return C


def affinity_from_similarity(similarity: np.ndarray) -> np.ndarray:
    """Angular affinity ``1 − arccos(clip(C, −1, 1)) / π`` in float64, values in [0, 1].

    ``similarity``: cosine similarities, ``[S, S]`` (any float dtype). Raises ``ValueError`` for a
    non-square or non-finite matrix.
    """
    C = _check_similarity(similarity).astype(np.float64)
    return 1.0 - np.arccos(np.clip(C, -1.0, 1.0)) / np.pi


def _check_k(num_clusters: int, num_samples: int) -> int:
    k = int(num_clusters)
    if k != num_clusters or k < 1:
        raise ValueError(f"num_clusters must be a positive integer, got {num_clusters!r}")
    if k > num_samples:
        raise ValueError(f"num_clusters = {k} is more than the {num_samples} samples (S) to cluster")
    return k


# -- ranking ---------------------------------------------------------------------------------


def rank_clusters(labels: np.ndarray) -> np.ndarray:
    """Relabel so that cluster 0 is the largest, 1 the next, …; equal sizes are ordered by the
    first sample (lowest index) in each. Returns int64 ``[S]``."""
    labels = np.asarray(labels)
    uniq, first, inverse, counts = np.unique(labels, return_index=True, return_inverse=True, return_counts=True)
    order = np.lexsort((first, -counts))  # by size descending, then first appearance
    rank_of = np.empty(len(uniq), dtype=np.int64)
    rank_of[order] = np.arange(len(uniq))
    return rank_of[inverse.reshape(-1)]


def cluster_sizes(labels: np.ndarray) -> np.ndarray:
    """Cluster sizes sorted descending (the rank-frequency curve), int64 ``[K]``."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return np.sort(counts)[::-1].astype(np.int64)


# -- spectral embedding and clustering --------------------------------------------------------


@dataclass
class SpectralEmbedding:
    """The spectral embedding of an affinity matrix, as ``SpectralClustering`` computes it.

    ``maps``: float64 ``[S, m]``, columns = the m eigenvectors of the normalized Laplacian with the
    smallest eigenvalues (scaled by D^−1/2, sign-normalized). ``rng_state``: the state of the
    ``RandomState`` after the embedding consumed its draws — what ``k_means`` starts from.
    """

    maps: np.ndarray
    rng_state: tuple

    @property
    def num_components(self) -> int:
        return self.maps.shape[1]

    def kmeans(self, num_clusters: int, n_init: int = N_INIT, num_columns: int | None = None) -> np.ndarray:
        """Ranked labels (int64 ``[S]``) from k-means on the first ``num_columns`` columns (default
        ``num_clusters``; ``SpectralClustering(n_components=m)`` clusters on all m)."""
        from sklearn.cluster import k_means

        k = _check_k(num_clusters, self.maps.shape[0])
        m = k if num_columns is None else int(num_columns)
        if m > self.num_components:
            raise ValueError(f"embedding has {self.num_components} components, cannot cluster on {m}")
        rng = np.random.RandomState()
        rng.set_state(self.rng_state)
        _, labels, _ = k_means(self.maps[:, :m], k, random_state=rng, n_init=n_init)
        return rank_clusters(labels)


def spectral_embedding(
    similarity: np.ndarray,
    num_components: int,
    random_state: int = RANDOM_STATE,
    eigen_solver: str = EIGEN_SOLVER,
) -> SpectralEmbedding:
    """Embed the samples of a cosine-similarity matrix (``[S, S]``) into ``num_components``
    dimensions exactly as ``SpectralClustering(affinity="precomputed")`` does, in float64.
    ``eigen_solver``: ``"arpack"`` (scikit-learn's call) or ``"eigh"`` (LAPACK, faster)."""
    affinity = affinity_from_similarity(similarity)
    m = _check_k(num_components, affinity.shape[0])
    rng = np.random.RandomState(random_state)
    maps = dense_spectral_embedding(affinity, m, rng, eigen_solver)
    return SpectralEmbedding(maps=maps, rng_state=rng.get_state())


def spectral_clustering(
    similarity: np.ndarray,
    num_clusters: int,
    n_init: int = N_INIT,
    random_state: int = RANDOM_STATE,
    eigen_solver: str = EIGEN_SOLVER,
) -> np.ndarray:
    """Cluster a cosine-similarity matrix (``[S, S]``, float32 or float64) into ``num_clusters``.

    Same partition as scikit-learn's ``SpectralClustering(num_clusters, affinity="precomputed",
    assign_labels="kmeans", n_init=n_init, random_state=random_state)`` on the angular affinity;
    labels are ranks (0 = largest cluster). Returns int64 ``[S]``. Deterministic.
    """
    _check_k(num_clusters, _check_similarity(similarity).shape[0])
    return spectral_embedding(similarity, num_clusters, random_state, eigen_solver).kmeans(num_clusters, n_init)


def cluster_sweep(
    similarity: np.ndarray,
    ks: Sequence[int],
    n_init: int = N_INIT,
    random_state: int = RANDOM_STATE,
    progress: Callable[[int, float], None] | None = None,
    eigen_solver: str = EIGEN_SOLVER,
) -> dict[int, np.ndarray]:
    """Ranked labels (int64 ``[S]``) for every k in ``ks``, from one spectral embedding with
    ``max(ks)`` components (float64) reused for all k. ``progress(k, seconds)`` after each k."""
    import time

    if not len(ks):
        raise ValueError("cluster_sweep needs at least one k")
    C = _check_similarity(similarity)
    ks = [_check_k(k, C.shape[0]) for k in ks]
    embedding = spectral_embedding(C, max(ks), random_state, eigen_solver)
    out = {}
    for k in ks:
        started = time.perf_counter()
        out[k] = embedding.kmeans(k, n_init)
        if progress:
            progress(k, time.perf_counter() - started)
    return out


# -- the paper's rank-frequency envelope ------------------------------------------------------


def rank_frequency_envelope(labelings: Iterable[np.ndarray] | Mapping[object, np.ndarray]) -> np.ndarray:
    """For each rank r (index r − 1), the largest size of the r-th largest cluster over all the
    labelings (e.g. one per k of a sweep). Ranks a labeling does not reach count as 0.
    Returns int64 ``[max number of clusters]``."""
    if isinstance(labelings, Mapping):
        labelings = labelings.values()
    curves = [cluster_sizes(labels) for labels in labelings]
    if not curves:
        raise ValueError("rank_frequency_envelope needs at least one labeling")
    envelope = np.zeros(max(len(c) for c in curves), dtype=np.int64)
    for curve in curves:
        envelope[: len(curve)] = np.maximum(envelope[: len(curve)], curve)
    return envelope


def envelope_slope(envelope: np.ndarray, ranks: tuple[int, int] = PAPER_SLOPE_RANKS) -> float:
    """Least-squares slope of log(size) against log(rank) for 1-based ranks ``ranks[0]``…``ranks[1]``
    (inclusive; the paper: 100–1000, slope ≈ −1.24). Ranks of size 0 are left out."""
    envelope = np.asarray(envelope, dtype=np.float64)
    lo, hi = ranks
    rank = np.arange(1, len(envelope) + 1)
    keep = (rank >= lo) & (rank <= hi) & (envelope > 0)
    if keep.sum() < 2:
        raise ValueError(f"fewer than 2 non-empty ranks in {lo}–{hi} (envelope has {len(envelope)} ranks)")
    slope, _ = np.polyfit(np.log(rank[keep]), np.log(envelope[keep]), 1)
    return float(slope)


# -- comparing two labelings ------------------------------------------------------------------


def compare_labelings(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Agreement of two labelings of the same samples (names of clusters do not matter):
    ``{"adjusted_rand": ARI, "nmi": normalized mutual information (arithmetic mean of the two
    entropies, scikit-learn's default)}``, both from ``sklearn.metrics``; 1 for identical partitions."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"labelings have different lengths: {a.size} and {b.size}")
    if a.size == 0:
        raise ValueError("cannot compare empty labelings")
    return {"adjusted_rand": float(adjusted_rand_score(a, b)), "nmi": float(normalized_mutual_info_score(a, b))}
