"""The sparse road: kNN affinity against a naive construction, the embedding of a complete kNN
graph against the dense road's, planted clusters recovered, memory budget and settings errors."""

import math

import numpy as np
import pytest

from quanta_core.clustering import sparse as kc
from quanta_core.clustering import spectral as qc
from quanta_core.host_memory import GIB
from quanta_core.similarity import knn

from support.helpers import planted_cosines

pytestmark = pytest.mark.usefixtures("one_thread")


def planted(num_samples=300, num_clusters=6, dim=16, noise=0.5, seed=0):
    return planted_cosines(num_samples, num_clusters, dim, noise, seed)


def test_affinity_is_the_union_of_knn_edges_with_the_angular_weight():
    C, _ = planted(num_samples=40)
    idx, cos = knn.knn_from_dense(C, 5)
    W = kc.knn_affinity(idx, cos).toarray()
    want = np.zeros((40, 40))
    for i in range(40):
        for j in idx[i].tolist():
            a = 1 - math.acos(max(-1.0, min(1.0, float(C[i, j])))) / math.pi
            want[i, j] = want[j, i] = a
    np.testing.assert_allclose(W, want, rtol=0, atol=1e-12)
    assert np.array_equal(W, W.T) and not W.diagonal().any()


def test_complete_graph_embedding_equals_the_dense_road():
    """With every other token as a neighbour the sparse affinity *is* the dense one (the
    Laplacian ignores the diagonal), so ARPACK on it gives the dense embedding."""
    C, _ = planted(num_samples=120, noise=0.8, seed=2)
    idx, cos = knn.knn_from_dense(C, 119)
    maps, _ = kc.graph_embedding(kc.knn_affinity(idx, cos), 6, "arpack", 0)
    dense = qc.spectral_embedding(C, 6).maps
    np.testing.assert_allclose(maps, dense, rtol=0, atol=1e-9 * np.abs(dense).max())


@pytest.mark.parametrize("eigen_solver,kmeans", [("amg", "full"), ("lobpcg", "full"), ("amg", "minibatch"),
                                                  ("arpack", "full")])
def test_planted_clusters_are_recovered(eigen_solver, kmeans):
    C, truth = planted(num_samples=400, num_clusters=6, noise=0.5, seed=1)
    idx, cos = knn.knn_from_dense(C, 15)
    messages = []
    result = kc.knn_spectral_clustering(idx, cos, 6, eigen_solver=eigen_solver, kmeans=kmeans, n_init=4,
                                        progress=messages.append)
    assert result.labels.dtype == np.int64 and result.labels.shape == (400,)
    np.testing.assert_array_equal(result.labels, qc.rank_clusters(result.labels))
    assert qc.compare_labelings(result.labels, truth)["adjusted_rand"] > 0.98
    dense = qc.spectral_clustering(C, 6, n_init=4)
    assert qc.compare_labelings(result.labels, dense)["adjusted_rand"] > 0.98
    assert messages[0].startswith("affinity: 400 tokens") and "k-means" in messages[-1]
    info = result.info
    assert info["neighbors"] == 15 and info["n_components"] == 6 and info["edges"] >= 400 * 15 / 2
    disconnected = any("not fully connected" in note for note in info["embedding_warnings"])
    assert disconnected == (info["connected_components"] > 1)
    again = kc.knn_spectral_clustering(idx, cos, 6, eigen_solver=eigen_solver, kmeans=kmeans, n_init=4)
    np.testing.assert_array_equal(again.labels, result.labels)  # deterministic (amg: numpy's global seed)


def test_memory_budget_fails_early_with_the_numbers():
    C, _ = planted(num_samples=60)
    idx, cos = knn.knn_from_dense(C, 5)
    with pytest.raises(MemoryError, match=r"clustering 60 tokens \(k = 5 neighbours\) into 4 clusters.*GiB peak"
                                          r".*over the budget of 0\.00 GiB"):
        kc.knn_spectral_clustering(idx, cos, 4, memory_budget_bytes=1000)
    big = kc.estimate_memory(100_000, 30, 400, 4000)
    assert 1 * GIB < big.peak < 8 * GIB  # the target size fits 8 GiB
    assert kc.estimate_memory(100_000, 30, 4000, 4000).peak > big.peak


def test_clear_errors():
    C, _ = planted(num_samples=30)
    idx, cos = knn.knn_from_dense(C, 4)
    with pytest.raises(ValueError, match="eigen_solver must be one of"):
        kc.knn_spectral_clustering(idx, cos, 3, eigen_solver="eigh")
    with pytest.raises(ValueError, match="kmeans must be one of"):
        kc.knn_spectral_clustering(idx, cos, 3, kmeans="elkan")
    with pytest.raises(ValueError, match=r"num_clusters must be an integer in 1…30"):
        kc.knn_spectral_clustering(idx, cos, 31)
    with pytest.raises(ValueError, match=r"n_components must be an integer in 1…29"):
        kc.knn_spectral_clustering(idx, cos, 3, n_components=30)
    bad = idx.copy()
    bad[4, 2] = bad[4, 1]
    with pytest.raises(ValueError, match="row 4 repeats"):
        kc.knn_spectral_clustering(bad, cos, 3)
