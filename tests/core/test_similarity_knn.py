"""The sparse road of quanta_core.similarity (``neighbors`` k > 0): the kNN kept while the Gram
streams by equals the top-k of the dense matrix of the same run (exact: streamed blocks; projected:
float32 and scaled float16 rows, tiles), and settings that cannot fit fail before any gradient."""

import numpy as np
import pytest
import torch

from quanta_core.similarity import budget_for_resident, similarity_matrix, similarity_parameters
from quanta_core.similarity.knn import check_knn, knn_from_dense
from quanta_core.similarity.tiles import StoredRows, gram_into_sink

from support.helpers import corpus_from_lengths, make_tiny_gptneox

LENGTHS = [300, 120, 2, 90, 64]


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return make_tiny_gptneox(max_positions=512)


@pytest.fixture(scope="module")
def corpus():
    return corpus_from_lengths(LENGTHS, vocab=512, seed=1)


@pytest.fixture(scope="module")
def indices(corpus):
    return np.sort(np.random.default_rng(2).choice(corpus.num_predictable, 40, replace=False)).astype(np.int64)


def _same_knn(knn, dense, k, atol):
    """kNN of the run vs the top-k of a dense matrix: cosines to ``atol``; indices equal wherever
    the k-th and (k+1)-th cosines of the dense row are further apart than ``atol`` (no near-tie)."""
    idx, cos = knn
    ref_idx, ref_cos = knn_from_dense(dense, k)
    check_knn(idx, cos)
    assert np.abs(cos - ref_cos).max() < atol
    C = dense.astype(np.float64).copy()
    np.fill_diagonal(C, -np.inf)
    ordered = -np.sort(-C, axis=1)
    clear = (ordered[:, k - 1] - ordered[:, k]) > 4 * atol
    assert clear.sum() >= len(C) // 2
    for i in np.flatnonzero(clear):
        assert set(idx[i]) == set(ref_idx[i]), i


@pytest.mark.parametrize("streamed", [False, True])
def test_exact_knn_equals_topk_of_the_dense_matrix(model, corpus, indices, streamed):
    kw = {}
    if streamed:  # 3 resident blocks of 16 tokens: off-diagonal blocks arrive as resident × staged
        p = sum(t.numel() for _, t in similarity_parameters(model))
        kw = {"memory_budget_bytes": budget_for_resident(len(indices), p, 16, "float32", max_batch=4),
              "resident_dtype": "float32"}
    dense = similarity_matrix(model, corpus, indices, max_batch=4, **kw)
    sparse = similarity_matrix(model, corpus, indices, max_batch=4, neighbors=5, **kw)
    assert sparse.matrix is None and sparse.neighbors == 5 and sparse.metadata()["neighbors"] == 5
    assert sparse.blocks == dense.blocks and (sparse.blocks > 1) == streamed
    _same_knn((sparse.knn_indices, sparse.knn_cosines), dense.matrix, 5, atol=1e-6)


@pytest.mark.parametrize("row_dtype", ["float32", "float16"])
def test_projected_knn_equals_topk_of_the_dense_projected_matrix(model, corpus, indices, row_dtype):
    dense = similarity_matrix(model, corpus, indices, method="projected", projection_dim=256, max_batch=4)
    sparse = similarity_matrix(model, corpus, indices, method="projected", projection_dim=256, max_batch=4,
                               neighbors=7, projected_dtype=row_dtype)
    assert sparse.extra["row_dtype"] == row_dtype
    _same_knn((sparse.knn_indices, sparse.knn_cosines), dense.matrix, 7,
              atol=1e-6 if row_dtype == "float32" else 2e-3)


def test_tiles_cover_every_pair_once():
    """Uneven tiles (S = 23, tile 5) into a dense recorder give the whole Gram of the rows."""
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((23, 9)).astype(np.float32))
    x[4] = 0  # a zero row has cosine 0 with everything
    stored = StoredRows(23, 9, "float32", torch.device("cpu"))
    stored.put(torch.arange(23), x.clone())

    class Recorder:
        def __init__(self):
            self.C, self.count = np.zeros((23, 23)), np.zeros((23, 23), int)

        def add(self, rows, cols, block):
            b = block.numpy()
            self.C[np.ix_(rows, cols)], self.C[np.ix_(cols, rows)] = b, b.T
            self.count[np.ix_(rows, cols)] += 1
            if rows is not cols:
                self.count[np.ix_(cols, rows)] += 1

    sink, seen = Recorder(), []
    assert gram_into_sink(stored, sink, tile=5, progress=lambda d, t: seen.append((d, t))) == 1
    assert (sink.count == 1).all() and seen[-1] == (15, 15)
    g = x.double().numpy()
    n = np.linalg.norm(g, axis=1)
    n[n == 0] = 1
    assert np.abs(sink.C - (g @ g.T) / np.outer(n, n)).max() < 1e-6


def test_settings_that_cannot_fit_fail_before_any_gradient(model, corpus, indices):
    calls = []
    many = np.arange(10**6) % corpus.num_predictable  # a dense 10⁶ × 10⁶ matrix: 11 TiB
    with pytest.raises(MemoryError, match=r"of 1,000,000 tokens \(dense\) needs 11175.87 GiB \(dense matrix .*over the "
                                          r"available memory.*neighbors"):
        similarity_matrix(model, corpus, many, progress=calls.append)
    with pytest.raises(MemoryError, match=r"k = 5 neighbours\) needs .*knn .*projected rows .*gram tile"):
        similarity_matrix(model, corpus, indices, method="projected", neighbors=5, memory_budget_bytes=1000,
                          progress=calls.append)
    assert calls == []
    # auto: float16 rows (float32 would take over a quarter of the budget): 100,000 × (4,096 × 2 + 8) bytes
    with pytest.raises(MemoryError, match=r"projected rows 0\.76 GiB, gram tile 0\.19 GiB\), over the memory budget "
                                          r"of 0\.50 GiB"):
        similarity_matrix(model, corpus, many[:100_000], method="projected", projection_dim=4096, neighbors=5,
                          memory_budget_bytes=1 << 29, progress=calls.append)
    assert calls == []
    with pytest.raises(ValueError, match="neighbors must be 0"):
        similarity_matrix(model, corpus, indices, neighbors=40)
    with pytest.raises(ValueError, match="not 'reference'"):
        similarity_matrix(model, corpus, indices, method="reference", neighbors=3)
