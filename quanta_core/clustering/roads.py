"""Clustering a stored similarity by the road its files call for.

* ``matrix`` (float32 ``[S, S]``): the exact road, :mod:`quanta_core.clustering.spectral` — scikit-learn's
  ``SpectralClustering`` labels (``eigen_solver`` ``arpack``) or LAPACK's (``eigh``).
* ``knn_indices`` / ``knn_cosines`` (``[S, k]``): the sparse road, :mod:`quanta_core.clustering.sparse`.

:func:`cluster_similarity` returns ranked labels and an ``info`` dict for metadata: the road, the
solver, seconds per phase, the process's peak memory and, on the exact road when asked
(``compare_neighbors``), the sparse road's agreement with it on the same tokens (ARI, NMI).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from quanta_core.clustering import sparse as knn_clustering
from quanta_core.clustering import spectral as clustering
from quanta_core.clustering.eigensolvers import EIGEN_SOLVERS
from quanta_core.host_memory import GIB, process_peak_bytes
from quanta_core.presets import EIGEN_SOLVER, KNN_EIGEN_SOLVER, N_INIT, RANDOM_STATE
from quanta_core.similarity.knn import knn_from_dense


@dataclass(frozen=True)
class ClusterOptions:
    """How a similarity is clustered into ``num_clusters`` candidate quanta.

    ``n_init`` k-means restarts; ``random_state`` of the embedding and k-means; ``n_components``
    eigenvectors (None: ``num_clusters``, as scikit-learn). Exact road: ``eigen_solver``
    ``arpack`` (scikit-learn's call) | ``eigh``. Sparse road: ``knn_eigen_solver`` ``amg`` |
    ``lobpcg`` | ``arpack``, ``kmeans`` ``full`` | ``minibatch``. Execution only:
    ``memory_budget_bytes`` (``MemoryError`` before any work when the road's estimate exceeds it;
    None: no check) and ``compare_neighbors`` (k > 0 on the exact road: also cluster the top-k
    graph of the same matrix and report ARI / NMI against the exact labels).
    """

    num_clusters: int
    n_init: int = N_INIT
    random_state: int = RANDOM_STATE
    eigen_solver: str = EIGEN_SOLVER
    knn_eigen_solver: str = KNN_EIGEN_SOLVER
    n_components: int | None = None
    kmeans: str = "full"
    memory_budget_bytes: int | None = None
    compare_neighbors: int = 0

    def __post_init__(self) -> None:
        for name, choices in (("eigen_solver", EIGEN_SOLVERS), ("knn_eigen_solver", knn_clustering.KNN_EIGEN_SOLVERS),
                              ("kmeans", knn_clustering.KMEANS_METHODS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        if self.num_clusters < 1 or (self.n_components is not None and self.n_components < 1):
            raise ValueError(f"num_clusters and n_components must be ≥ 1, got {self.num_clusters}, "
                             f"{self.n_components}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def dense_bytes(num_tokens: int) -> int:
    """Peak of the exact road, bytes: the float64 affinity (Laplacian built in place) and the
    float32 matrix it comes from (12·S²), ARPACK's LU or eigh's workspace on top (another 8·S²)."""
    return 20 * int(num_tokens) ** 2


def _dense(matrix: np.ndarray, k: int, m: int, *, eigen_solver: str, n_init: int, random_state: int,
           budget: int | None, say: Callable[[str], None]) -> tuple[np.ndarray, dict]:
    s = matrix.shape[0]
    if budget is not None and dense_bytes(s) > budget:
        raise MemoryError(f"the exact road for {s:,} tokens needs ~{dense_bytes(s) / GIB:.2f} GiB (float64 "
                          f"affinity and eigensolver workspace, 20·S² bytes), over the budget of {budget / GIB:.2f} "
                          f"GiB; compute the similarity with similarity_settings.neighbors (the sparse road)")
    started = time.perf_counter()
    embedding = clustering.spectral_embedding(np.asarray(matrix), m, random_state, eigen_solver)
    embedded = time.perf_counter()
    say(f"spectral embedding ({eigen_solver}, {m:,} eigenvectors) done in {embedded - started:.1f} s; k-means next")
    labels = embedding.kmeans(k, n_init, num_columns=m)
    return labels, {"road": "exact", "eigen_solver": eigen_solver, "n_components": m,
                    "embedding_seconds": round(embedded - started, 2),
                    "kmeans_seconds": round(time.perf_counter() - embedded, 2)}


def _agreement(matrix: np.ndarray, labels: np.ndarray, k: int, neighbors: int, settings: dict,
               say: Callable[[str], None]) -> dict:
    """The sparse road on the top-``neighbors`` of the same matrix, against the exact road's labels."""
    t = time.perf_counter()
    idx, cos = knn_from_dense(np.asarray(matrix), neighbors)
    sparse = knn_clustering.knn_spectral_clustering(idx, cos, k, **settings)
    agreement = clustering.compare_labelings(labels, sparse.labels)
    say(f"sparse road ({neighbors} neighbours) vs exact road on the same tokens: ARI "
        f"{agreement['adjusted_rand']:.3f}, NMI {agreement['nmi']:.3f}")
    return {"knn_vs_exact_neighbors": neighbors, "knn_vs_exact_ari": round(agreement["adjusted_rand"], 4),
            "knn_vs_exact_nmi": round(agreement["nmi"], 4), "knn_vs_exact_seconds": round(time.perf_counter() - t, 2)}


def cluster_similarity(
    similarity: Mapping[str, np.ndarray], options: ClusterOptions, progress: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, dict]:
    """Ranked labels (int64 ``[S]``, in the order of ``similarity["indices"]``) and ``info``.

    ``similarity``: the stored ``quanta_similarity`` arrays — ``indices`` and either ``matrix`` or
    ``knn_indices`` + ``knn_cosines``. ``options``: :class:`ClusterOptions`. ``progress``: called
    with a line of text per phase."""
    say = progress or (lambda message: None)
    o = options
    s = len(similarity["indices"])
    k = int(o.num_clusters)
    m = k if o.n_components is None else int(o.n_components)
    sparse = {"eigen_solver": o.knn_eigen_solver, "kmeans": o.kmeans, "n_init": o.n_init,
              "random_state": o.random_state}
    started = time.perf_counter()
    if "knn_indices" in similarity:
        if similarity["knn_indices"].shape[0] != s:
            raise ValueError(f"knn_indices has {similarity['knn_indices'].shape[0]} rows for {s} indices")
        result = knn_clustering.knn_spectral_clustering(
            similarity["knn_indices"], similarity["knn_cosines"], k, n_components=m,
            memory_budget_bytes=o.memory_budget_bytes, progress=say, **sparse)
        labels = result.labels
        info = {"road": "sparse", **{n: v for n, v in result.info.items() if not isinstance(v, list)}}
    elif "matrix" in similarity:
        matrix = similarity["matrix"]
        if matrix.shape != (s, s):
            raise ValueError(f"similarity matrix {matrix.shape} does not match {s} indices")
        labels, info = _dense(matrix, k, m, eigen_solver=o.eigen_solver, n_init=o.n_init,
                              random_state=o.random_state, budget=o.memory_budget_bytes, say=say)
        if o.compare_neighbors:
            info.update(_agreement(matrix, labels, k, o.compare_neighbors, {"n_components": m, **sparse}, say))
    else:
        raise ValueError(f"quanta_similarity has neither matrix.npy nor knn_indices.npy (got {sorted(similarity)})")
    if len(labels) != s:
        raise ValueError(f"{len(labels)} labels for {s} indices: the similarity files disagree")
    info["clustering_seconds"] = round(time.perf_counter() - started, 2)
    info["peak_memory_bytes"] = process_peak_bytes()
    return labels, info
