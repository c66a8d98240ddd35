"""The sparse road through Dagster: the real quanta_similarity asset with ``neighbors`` k > 0 on a
hub-layout checkpoint stores the kNN files (no matrix.npy), equal to the top-k of the dense matrix
computed directly; the real quanta_clusters clusters them (road, solver, seconds, peak memory in
metadata), and on a dense matrix reports the sparse road's agreement when asked."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import torch

from quanta_assets.partitions import checkpoint_partitions
from quanta_core.clustering.sparse import knn_spectral_clustering
from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.corpus.selection import select_tokens
from quanta_core.similarity import similarity_matrix
from quanta_core.similarity.knn import check_knn, knn_from_dense

from support.helpers import cache_resources, make_tiny_gptneox, write_demo_checkpoint

LENGTHS = [400, 300, 2, 1, 250, 50]
KEY = dg.MultiPartitionKey({"model": "quanta-demo", "step": "step0"})


@pytest.fixture
def setup(tmp_path):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    ids = np.concatenate([rng.integers(0, 512, n) for n in LENGTHS]).astype(np.uint16)
    offsets = np.concatenate([[0], np.cumsum(LENGTHS)]).astype(np.int64)
    corpus = CanonicalCorpus(ids, offsets, pd.DataFrame({"num_tokens": LENGTHS}))
    model = make_tiny_gptneox(max_positions=512)
    write_demo_checkpoint(tmp_path, "step0", model)
    losses = rng.exponential(2.0, corpus.num_predictable).astype(np.float32)
    return tmp_path, corpus, model, losses


def _upstream(corpus, losses):
    flags = np.zeros(corpus.num_predictable + 10, dtype=bool)

    @dg.asset(name="pile_canonical")
    def pile_canonical() -> dict:
        return corpus.to_arrays()

    @dg.asset(name="induction_filters")
    def induction_filters() -> dict:
        return {"present_trigram": flags, "present_bigram": flags}

    @dg.asset(name="pile_losses", partitions_def=checkpoint_partitions)
    def pile_losses() -> np.ndarray:
        return losses

    return pile_canonical, induction_filters, pile_losses


def _resources(cache, similarity, clusters):
    from quanta_assets.compute import ComputeResource
    from quanta_assets.resources import ModelLoader

    return {**cache_resources(cache), "models": ModelLoader(device="cpu"), "compute": ComputeResource(),
            "similarity_settings": similarity, "cluster_settings": clusters}


def test_knn_similarity_and_clusters_through_dagster(setup):
    from quanta_assets.assets.clusters import quanta_clusters
    from quanta_assets.assets.similarity import quanta_similarity
    from quanta_assets.settings import ClusterSettings, SimilaritySettings

    cache, corpus, model, losses = setup
    similarity = SimilaritySettings(threshold_bits=1.0, skip=1, num_tokens=30, neighbors=4, filter="none")
    clusters = ClusterSettings(num_clusters=3, knn_eigen_solver="arpack", n_init=4, memory_budget_gib=1.0)
    resources = _resources(cache, similarity, clusters)
    upstream = _upstream(corpus, losses)
    dg.materialize(upstream[:2], resources=resources)
    dg.materialize([upstream[2]], partition_key=KEY, resources=resources)
    result = dg.materialize([*upstream, quanta_similarity, quanta_clusters],
                            selection=[quanta_similarity.key, quanta_clusters.key], partition_key=KEY,
                            resources=resources)
    stored = cache / "quanta-demo" / "step0" / "quanta_similarity"
    assert sorted(p.name for p in stored.iterdir()) == ["indices.npy", "knn_cosines.npy", "knn_indices.npy"]
    indices = np.load(stored / "indices.npy")
    idx, cos = check_knn(np.load(stored / "knn_indices.npy"), np.load(stored / "knn_cosines.npy"))
    expected = select_tokens(losses, None, threshold_bits=1.0, skip=1, num_tokens=30)
    assert indices.tolist() == expected.tolist() and idx.shape == (30, 4) and cos.dtype == np.float32
    dense = similarity_matrix(model, corpus, expected).matrix  # independent: the dense matrix, then its top-k
    ref_idx, ref_cos = knn_from_dense(dense, 4)
    assert np.abs(cos - ref_cos).max() < 1e-6
    ordered = -np.sort(-(dense - 2 * np.eye(30)), axis=1)
    clear = ordered[:, 3] - ordered[:, 4] > 1e-5
    assert all(set(idx[i]) == set(ref_idx[i]) for i in np.flatnonzero(clear)) and clear.sum() > 20
    meta = result.asset_materializations_for_node("quanta_similarity")[0].metadata
    assert meta["setting_neighbors"].value == 4 and meta["neighbors"].value == 4
    assert meta["peak_memory_bytes"].value > 0 and "mean_neighbor_cosine" in meta

    labels = np.load(cache / "quanta-demo" / "step0" / "quanta_clusters" / "labels.npy")
    direct = knn_spectral_clustering(idx, cos, 3, eigen_solver="arpack", n_init=4)
    np.testing.assert_array_equal(labels, direct.labels)
    meta = result.asset_materializations_for_node("quanta_clusters")[0].metadata
    assert meta["road"].value == "sparse" and meta["eigen_solver"].value == "arpack"
    assert meta["embedding_seconds"].value >= 0 and meta["kmeans_seconds"].value >= 0
    assert meta["peak_memory_bytes"].value > 0 and meta["estimated_peak_bytes"].value > 0


def test_settings_that_cannot_fit_fail_early_with_the_numbers(setup):
    from quanta_assets.assets.similarity import quanta_similarity
    from quanta_assets.settings import ClusterSettings, SimilaritySettings

    cache, corpus, _, losses = setup
    similarity = SimilaritySettings(threshold_bits=1.0, skip=1, num_tokens=30, filter="none", method="projected",
                                    neighbors=4, memory_budget_gib=1e-4)
    resources = _resources(cache, similarity, ClusterSettings())
    upstream = _upstream(corpus, losses)
    dg.materialize(upstream[:2], resources=resources)
    dg.materialize([upstream[2]], partition_key=KEY, resources=resources)
    result = dg.materialize([*upstream, quanta_similarity], selection=[quanta_similarity.key], partition_key=KEY,
                            resources=resources, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.event_specific_data.error)
    assert "projected similarity of 30 tokens (k = 4 neighbours) needs" in message
    assert "projected rows 0.47 MiB" in message and "over the memory budget of 0.10 MiB" in message
    assert not (cache / "quanta-demo" / "step0" / "quanta_similarity").exists()


def test_exact_road_reports_the_sparse_road_agreement():
    from quanta_core.clustering.roads import ClusterOptions, cluster_similarity
    from quanta_core.clustering.spectral import compare_labelings, spectral_clustering

    rng = np.random.default_rng(5)
    centres = rng.normal(size=(4, 16))
    x = centres[np.arange(200) % 4] + 0.4 * rng.normal(size=(200, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    matrix = (x @ x.T).astype(np.float32)
    labels, info = cluster_similarity({"indices": np.arange(200), "matrix": matrix}, ClusterOptions(
        4, compare_neighbors=10, knn_eigen_solver="arpack", n_init=5))
    np.testing.assert_array_equal(labels, spectral_clustering(matrix, 4, n_init=5))  # scikit-learn's labels
    sparse = knn_spectral_clustering(*knn_from_dense(matrix, 10), 4, eigen_solver="arpack", n_init=5).labels
    assert info["road"] == "exact" and info["knn_vs_exact_neighbors"] == 10
    assert info["knn_vs_exact_ari"] == round(compare_labelings(labels, sparse)["adjusted_rand"], 4) > 0.9
    with pytest.raises(MemoryError, match=r"exact road for 200 tokens needs .* over the budget"):
        cluster_similarity({"indices": np.arange(200), "matrix": matrix}, ClusterOptions(4, memory_budget_bytes=1000))
    with pytest.raises(ValueError, match="neither matrix.npy nor knn_indices.npy"):
        cluster_similarity({"indices": np.arange(200)}, ClusterOptions(4))
