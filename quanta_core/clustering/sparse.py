"""The sparse road: spectral clustering of a kNN graph, for S where a dense [S, S] matrix does not fit.

Input: the stored kNN format of :mod:`quanta_core.similarity.knn` — ``knn_indices`` int64 ``[S, k]`` (each
token's k most similar other tokens) and ``knn_cosines`` float32 ``[S, k]``.

1. Affinity: the dense road's angular affinity ``1 − arccos(c)/π`` on the edges of the kNN graph,
   symmetrized as the union (an edge i–j exists when j is among i's neighbours *or* i among j's;
   its weight is that same cosine's affinity). Sparse CSR, float64, no diagonal; at most 2·S·k
   edges. Every other pair counts as affinity 0 (the dense road gives them ≈ 0.5).
2. Spectral embedding: ``sklearn.manifold.spectral_embedding`` of that sparse affinity with
   ``n_components`` eigenvectors (default: the number of clusters, as ``SpectralClustering``),
   solver ``"amg"`` (LOBPCG preconditioned by pyamg's smoothed aggregation), ``"lobpcg"`` or
   ``"arpack"`` (shift-invert: a sparse LU, only for small S).
3. k-means on the embedding: ``"full"`` = scikit-learn's ``k_means`` (Lloyd) with ``n_init``
   restarts, or ``"minibatch"`` = ``MiniBatchKMeans``. Clusters ranked as on the dense road.

Settings that cannot fit ``memory_budget_bytes`` fail before any work, with the estimate's parts.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from quanta_core.clustering.spectral import N_INIT, RANDOM_STATE, rank_clusters
from quanta_core.host_memory import GIB
from quanta_core.similarity.knn import check_knn

KNN_EIGEN_SOLVERS = ("amg", "lobpcg", "arpack")
KMEANS_METHODS = ("full", "minibatch")
MINIBATCH_SIZE = 4096


def knn_affinity(knn_indices: np.ndarray, knn_cosines: np.ndarray):
    """Symmetric sparse affinity (``scipy.sparse.csr_array`` float64 ``[S, S]``, no diagonal):
    ``1 − arccos(clip(c, −1, 1))/π`` on the union of the kNN edges."""
    from scipy import sparse

    idx, cos = check_knn(knn_indices, knn_cosines)
    S, k = idx.shape
    weights = 1.0 - np.arccos(np.clip(cos.astype(np.float64), -1.0, 1.0)) / np.pi
    if 2 * S * k >= 2**31:
        raise ValueError(f"{S:,} tokens × {k} neighbours is too many edges for 32-bit sparse indices")
    rows = np.repeat(np.arange(S, dtype=np.int32), k)
    W = sparse.csr_array((weights.ravel(), (rows, idx.ravel().astype(np.int32))), shape=(S, S))
    W = W.maximum(W.T).tocsr()
    W.eliminate_zeros()  # affinity 0 (cosine −1) is no edge
    W.sort_indices()
    W.indices, W.indptr = W.indices.astype(np.int32, copy=False), W.indptr.astype(np.int32, copy=False)
    return W


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of one sparse-road clustering, in bytes, by stage (an upper-bound estimate)."""

    affinity: int
    embedding: int
    kmeans: int

    @property
    def peak(self) -> int:
        return max(self.affinity, self.embedding, self.kmeans)

    def describe(self) -> str:
        return (f"~{self.peak / GIB:.2f} GiB peak (affinity {self.affinity / GIB:.2f} GiB, embedding "
                f"{self.embedding / GIB:.2f} GiB, k-means {self.kmeans / GIB:.2f} GiB)")


def estimate_memory(num_tokens: int, neighbors: int, n_components: int, num_clusters: int,
                    eigen_solver: str = "amg", kmeans: str = "full") -> MemoryEstimate:
    """Upper-bound estimate of the peak memory (bytes) of :func:`knn_spectral_clustering`.

    Affinity: ≤ 2·S·k edges, 12 bytes each, ~5 copies while symmetrizing and forming the Laplacian.
    Embedding: LOBPCG holds up to ~16 blocks of S × (m + 1) float64 at once (X, AX, residuals,
    directions, their images, the stacked [X R P] and A·[X R P] of each Rayleigh–Ritz step, the
    result) and Gram matrices of (3(m + 1))² float64 ×4; AMG adds ~3× the Laplacian; ARPACK's sparse
    LU is not bounded here (small S only). k-means: the embedding ×3 (input, centred copy, result)
    and its distance chunks. Checked against tracemalloc at S = 50,000, k = 30: m = 500 → traced
    2.78 GiB, estimate 3.3 GiB; m = 100 → 0.65 GiB, estimate 0.82 GiB (docs/clustering.md)."""
    S, m, K = int(num_tokens), int(n_components), int(num_clusters)
    edges = 2 * S * int(neighbors)
    knn_in = S * int(neighbors) * 12
    affinity = knn_in + 5 * edges * 12
    n = m + 1
    embedding = knn_in + 3 * edges * 12 + 16 * S * n * 8 + 4 * (3 * n) ** 2 * 8
    if eigen_solver == "amg":
        embedding += 3 * edges * 12
    chunk = MINIBATCH_SIZE if kmeans == "minibatch" else min(S, 256 * 8)
    kmeans_bytes = 3 * S * m * 8 + chunk * K * 8 + 2 * K * m * 8 + S * 16
    return MemoryEstimate(affinity=int(affinity), embedding=int(embedding), kmeans=int(kmeans_bytes))


@dataclass
class KnnClustering:
    """Result of :func:`knn_spectral_clustering`: ranked ``labels`` int64 ``[S]`` and ``info``
    (stage seconds, edges, connected components, the memory estimate, solver settings)."""

    labels: np.ndarray
    info: dict = field(default_factory=dict)


def _check_settings(S: int, num_clusters: int, n_components: int, eigen_solver: str, kmeans: str) -> None:
    if eigen_solver not in KNN_EIGEN_SOLVERS:
        raise ValueError(f"eigen_solver must be one of {KNN_EIGEN_SOLVERS}, got {eigen_solver!r}")
    if kmeans not in KMEANS_METHODS:
        raise ValueError(f"kmeans must be one of {KMEANS_METHODS}, got {kmeans!r}")
    if int(num_clusters) != num_clusters or not 1 <= num_clusters <= S:
        raise ValueError(f"num_clusters must be an integer in 1…{S} (the tokens), got {num_clusters!r}")
    if int(n_components) != n_components or not 1 <= n_components < S:
        raise ValueError(f"n_components must be an integer in 1…{S - 1}, got {n_components!r}")


def graph_embedding(W, m: int, eigen_solver: str, random_state: int) -> tuple[np.ndarray, list[str]]:
    """The m-column spectral embedding (float64 ``[S, m]``) of a sparse affinity ``W`` and the
    solver's warnings (first lines)."""
    from sklearn.manifold import spectral_embedding

    rng = np.random.RandomState(random_state)
    saved = np.random.get_state()
    np.random.seed(random_state)  # pyamg draws from numpy's global generator
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            maps = spectral_embedding(W, n_components=m, eigen_solver=eigen_solver, random_state=rng,
                                      drop_first=False)
    finally:
        np.random.set_state(saved)
    notes = sorted({str(w.message).splitlines()[0][:200] for w in caught})
    return np.ascontiguousarray(maps, dtype=np.float64), notes


def kmeans_labels(X: np.ndarray, k: int, method: str, n_init: int, random_state: int,
                  say: Callable[[str], None] = lambda message: None) -> np.ndarray:
    """k-means labels (unranked, int ``[S]``) of the rows of ``X`` (``[S, m]``): ``"full"``, the
    best of ``n_init`` seeded ``k_means`` runs, or ``"minibatch"``."""
    from sklearn.cluster import MiniBatchKMeans, k_means

    if method == "minibatch":
        model = MiniBatchKMeans(n_clusters=k, n_init=n_init, batch_size=MINIBATCH_SIZE, random_state=random_state)
        return model.fit_predict(X)
    seeds = np.random.RandomState(random_state).randint(np.iinfo(np.int32).max, size=n_init)
    best, best_inertia = None, np.inf
    for i, seed in enumerate(seeds):
        _, labels, inertia = k_means(X, k, n_init=1, random_state=int(seed))
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
        say(f"k-means restart {i + 1}/{n_init}: inertia {inertia:.6g} (best {best_inertia:.6g})")
    return best


def knn_spectral_clustering(
    knn_indices: np.ndarray,
    knn_cosines: np.ndarray,
    num_clusters: int,
    *,
    n_components: int | None = None,
    eigen_solver: str = "amg",
    kmeans: str = "full",
    n_init: int = N_INIT,
    random_state: int = RANDOM_STATE,
    memory_budget_bytes: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> KnnClustering:
    """Cluster S tokens given as a kNN graph (``[S, k]`` indices and cosines, the stored format)
    into ``num_clusters`` ranked clusters (0 = largest). ``n_components``: eigenvectors of the
    embedding (default ``num_clusters``). ``progress(message)`` gets a line per stage and per
    k-means restart. Raises ``MemoryError`` before any work when the estimate exceeds
    ``memory_budget_bytes``; ``ValueError`` for bad input or settings."""
    say = progress or (lambda message: None)
    idx, cos = check_knn(knn_indices, knn_cosines)
    S, neighbors = idx.shape
    m = int(num_clusters if n_components is None else n_components)
    _check_settings(S, num_clusters, m, eigen_solver, kmeans)
    estimate = estimate_memory(S, neighbors, m, num_clusters, eigen_solver, kmeans)
    if memory_budget_bytes is not None and estimate.peak > memory_budget_bytes:
        raise MemoryError(
            f"clustering {S:,} tokens (k = {neighbors} neighbours) into {num_clusters:,} clusters with {m:,} "
            f"eigenvectors needs {estimate.describe()}, over the budget of {memory_budget_bytes / GIB:.2f} GiB; "
            f"lower n_components or num_clusters, use kmeans='minibatch', or raise the budget")
    info: dict = {"num_tokens": S, "neighbors": neighbors, "num_clusters": int(num_clusters), "n_components": m,
                  "eigen_solver": eigen_solver, "kmeans": kmeans, "n_init": n_init,
                  "estimated_peak_bytes": estimate.peak}
    started = time.perf_counter()
    W = knn_affinity(idx, cos)
    from scipy.sparse.csgraph import connected_components

    info["edges"] = int(W.nnz // 2)
    info["connected_components"] = int(connected_components(W, directed=False)[0])
    info["affinity_seconds"] = round(time.perf_counter() - started, 3)
    say(f"affinity: {S:,} tokens, {info['edges']:,} edges, {info['connected_components']:,} connected "
        f"component(s), {info['affinity_seconds']:.1f} s")
    t = time.perf_counter()
    maps, notes = graph_embedding(W, m, eigen_solver, random_state)
    del W
    info["embedding_seconds"] = round(time.perf_counter() - t, 3)
    info["embedding_warnings"] = notes
    say(f"spectral embedding ({eigen_solver}, {m:,} eigenvectors): {info['embedding_seconds']:.1f} s")
    t = time.perf_counter()
    labels = kmeans_labels(maps, int(num_clusters), kmeans, n_init, random_state, say)
    info["kmeans_seconds"] = round(time.perf_counter() - t, 3)
    say(f"k-means ({kmeans}, {n_init} restarts): {info['kmeans_seconds']:.1f} s")
    return KnnClustering(labels=rank_clusters(labels), info=info)
