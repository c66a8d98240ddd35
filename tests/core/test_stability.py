"""Cluster stability (clusterboot) and coherence: planted clusters are stable and coherent, a random
symmetric matrix's clusters are not stable; best-match Jaccard and coherence against brute-force
loops; the re-clusterings are the clusterings they claim to be."""

import numpy as np
import pytest

from quanta_core.clustering import coherence as ch
from quanta_core.clustering import spectral as qc
from quanta_core.clustering import stability as st
from quanta_core.clustering.roads import ClusterOptions, cluster_similarity
from quanta_core.similarity.knn import knn_from_dense

from support.helpers import planted_cosines

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"resamples": 4, "n_init": 4, "null_groups": 50}


def planted_similarity(noise=0.3, num_samples=150, num_clusters=6, seed=0):
    C, truth = planted_cosines(num_samples, num_clusters, 24, noise, seed)
    return {"indices": np.arange(num_samples), "matrix": C}, truth


def random_symmetric(num_samples, scale, seed=0):
    """Gaussian symmetric matrix, off-diagonal standard deviation ``scale``, unit diagonal."""
    g = np.random.default_rng(seed).normal(scale=scale, size=(num_samples, num_samples))
    C = np.clip((g + g.T) / np.sqrt(2), -1, 1)
    np.fill_diagonal(C, 1.0)
    return C.astype(np.float32)


@pytest.mark.parametrize("road", ["exact", "sparse"])
@pytest.mark.parametrize("scheme", ["seeds", "subsample"])
def test_planted_clusters_are_stable_and_coherent(scheme, road):
    similarity, truth = planted_similarity()
    if road == "sparse":
        idx, cos = knn_from_dense(similarity.pop("matrix"), 10)
        similarity.update(knn_indices=idx, knn_cosines=cos)
    options = ClusterOptions(num_clusters=6, n_init=4, eigen_solver="eigh", knn_eigen_solver="arpack")
    labels, _ = cluster_similarity(similarity, options)
    assert qc.compare_labelings(labels, truth)["adjusted_rand"] == 1.0
    table, summary = st.cluster_stability(similarity, labels, options, st.StabilityOptions(scheme=scheme, **FAST))
    assert list(table.columns[:6]) == ["cluster", "size", "stability", "band", "recovered", "dissolved"]
    assert table["stability"].min() >= 0.95 and set(table["band"]) == {"highly stable"}
    assert table["coherence_z"].min() > 5
    assert summary["fraction_stable"] == 1.0 and summary["mean_ari"] > 0.95 and summary["road"] == road
    assert table["size"].tolist() == np.bincount(labels).tolist()


def test_random_symmetric_matrix_gives_mostly_unstable_clusters():
    planted, _ = planted_similarity(num_samples=200)
    off = planted["matrix"][~np.eye(200, dtype=bool)]
    C = random_symmetric(200, scale=float(off.std()))  # the planted matrix's spread, no structure
    similarity = {"indices": np.arange(200), "matrix": C}
    options = ClusterOptions(num_clusters=10, n_init=4, eigen_solver="eigh")
    labels, _ = cluster_similarity(similarity, options)
    for scheme in st.SCHEMES:
        table, summary = st.cluster_stability(similarity, labels, options, st.StabilityOptions(scheme=scheme, **FAST))
        assert (table["stability"] < 0.6).mean() >= 0.8, scheme
        assert summary["fraction_stable"] <= 0.1 and summary["mean_ari"] < 0.4


def brute_jaccard(labels, other):
    out = []
    for c in range(max(labels) + 1):
        present = [i for i in range(len(labels)) if other[i] >= 0]
        C = {i for i in present if labels[i] == c}
        if not C:
            out.append(float("nan"))
            continue
        best = 0.0
        for d in {other[i] for i in present}:
            D = {i for i in present if other[i] == d}
            best = max(best, len(C & D) / len(C | D))
        out.append(best)
    return out


def test_best_match_jaccard_equals_a_brute_force_loop():
    rng = np.random.default_rng(3)
    for _ in range(20):
        labels = rng.integers(0, 7, 60)
        other = rng.integers(-1, 5, 60)  # −1: left out of the re-clustering
        other[labels == 6] = -1  # one cluster entirely absent → NaN
        got = st.best_match_jaccard(labels, other)
        np.testing.assert_allclose(got, brute_jaccard(labels.tolist(), other.tolist()), rtol=0, atol=1e-12)
        assert np.isnan(got[6])
    same = rng.integers(0, 5, 40)
    np.testing.assert_array_equal(st.best_match_jaccard(same, (same * 3 + 1) % 5), np.ones(5))


def test_bands():
    got = st.stability_band(np.array([0.0, 0.5999, 0.6, 0.7499, 0.75, 0.8499, 0.85, 1.0, np.nan]))
    assert got.tolist() == ["unstable", "unstable", "doubtful", "doubtful", "stable", "stable", "highly stable",
                            "highly stable", "unstable"]


def test_reclusterings_are_the_clusterings_they_claim():
    similarity, _ = planted_similarity(noise=1.0, num_samples=120, seed=2)
    options = ClusterOptions(num_clusters=5, n_init=3, eigen_solver="eigh")
    seeds = st.reclusterings(similarity, options, st.StabilityOptions(scheme="seeds", resamples=2))
    for r, labels in enumerate(seeds):  # the reused embedding: bit for bit a direct run with that seed
        np.testing.assert_array_equal(labels, qc.spectral_clustering(similarity["matrix"], 5, n_init=3,
                                                                     random_state=r + 1, eigen_solver="eigh"))
    sub = st.reclusterings(similarity, options, st.StabilityOptions(scheme="subsample", resamples=2, fraction=0.7))
    for r, labels in enumerate(sub):  # the sub-matrix clustered from scratch by the road
        tokens = np.flatnonzero(labels >= 0)
        assert tokens.size == 84
        part = {"indices": tokens, "matrix": similarity["matrix"][np.ix_(tokens, tokens)]}
        direct, _ = cluster_similarity(part, ClusterOptions(num_clusters=5, n_init=3, eigen_solver="eigh",
                                                            random_state=r + 1))
        np.testing.assert_array_equal(labels[tokens], direct)
    assert not np.array_equal(sub[0] >= 0, sub[1] >= 0)


def test_coherence_equals_brute_force_and_null_is_seeded():
    similarity, _ = planted_similarity(noise=1.0, num_samples=60, seed=1)
    C = similarity["matrix"].astype(np.float64)
    labels = np.random.default_rng(0).integers(0, 4, 60)
    labels[labels == 3] = 2
    labels[0] = 3  # a singleton
    table = ch.cluster_coherence(similarity, labels, null_groups=30, random_state=5)
    for c in range(3):
        members = np.flatnonzero(labels == c)
        pairs = [C[i, j] for i in members for j in members if i != j]
        assert table["coherence"][c] == pytest.approx(np.mean(pairs), abs=1e-9)
    assert np.isnan(table["coherence"][3]) and np.isnan(table["coherence_z"][3])
    again = ch.cluster_coherence(similarity, labels, null_groups=30, random_state=5)
    assert table.equals(again)
    idx, cos = knn_from_dense(similarity["matrix"], 6)
    sparse = ch.cluster_coherence({"knn_indices": idx, "knn_cosines": cos}, labels, null_groups=30)
    for c in range(3):
        members = np.flatnonzero(labels == c)
        edge = {(i, j): float(cos[i, n]) for i in range(60) for n, j in enumerate(idx[i].tolist())}
        pairs = [edge.get((i, j), edge.get((j, i), 0.0)) for i in members for j in members if i != j]
        assert sparse["coherence"][c] == pytest.approx(np.mean(pairs), abs=1e-6)
    complete = ch.cluster_coherence(dict(zip(("knn_indices", "knn_cosines"), knn_from_dense(C, 59))), labels)
    np.testing.assert_allclose(complete["coherence"], table["coherence"], rtol=0, atol=1e-6)


def test_clear_errors():
    with pytest.raises(ValueError, match="scheme must be one of"):
        st.StabilityOptions(scheme="bootstrap")
    with pytest.raises(ValueError, match="resamples ≥ 2"):
        st.StabilityOptions(resamples=1)
    with pytest.raises(ValueError, match="neither matrix nor knn_indices"):
        st.cluster_stability({"indices": np.arange(3)}, np.zeros(3, int), ClusterOptions(num_clusters=2))
