"""The streaming top-k accumulator against a dense sort of each row (ties: lower position first)."""

import numpy as np
import pytest

from quanta_core.similarity import knn


def dense_topk(C, k):
    """Row by row with Python's sort: key (−cosine at float32, position), self excluded."""
    C = np.asarray(C, dtype=np.float32)
    idx, cos = [], []
    for i, row in enumerate(C.tolist()):
        order = sorted((j for j in range(len(row)) if j != i), key=lambda j: (-np.float32(row[j]), j))[:k]
        idx.append(order)
        cos.append([row[j] for j in order])
    return np.array(idx, dtype=np.int64), np.array(cos, dtype=np.float32)


def cosines(S, dim=6, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(S, dim))
    if ties:  # duplicated tokens give exactly equal cosines (and cos = 1 with each other)
        x[S // 2: S // 2 + 5] = x[3]
        x[-4:] = x[7]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    C = (x @ x.T).astype(np.float32)
    C[rng.random(C.shape) < 0.02] = 0.25  # many exact ties at one value
    return np.minimum(C, C.T)  # keep it symmetric


@pytest.mark.parametrize("k", [1, 5, 17])
def test_blocks_in_any_order_equal_a_dense_sort(k):
    S = 83
    C = cosines(S)
    want_idx, want_cos = dense_topk(C, k)
    rng = np.random.default_rng(k)
    top = knn.TopK(S, k)
    row_blocks = np.array_split(rng.permutation(S), 5)
    col_blocks = np.array_split(rng.permutation(S), 4)
    pairs = [(r, c) for r in row_blocks for c in col_blocks]
    for n in rng.permutation(len(pairs)):
        r, c = pairs[n]
        top.add(C[np.ix_(r, c)], r, c)
    idx, cos = top.result()
    assert idx.dtype == np.int64 and cos.dtype == np.float32 and idx.shape == (S, k)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(cos, want_cos)


def test_knn_from_dense_and_the_upper_triangle_loop():
    S, k = 120, 9
    C = cosines(S, seed=3)
    want = dense_topk(C, k)
    for got in (knn.knn_from_dense(C, k, block_rows=32), knn.knn_from_dense(C.astype(np.float64), k, block_rows=7)):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    top = knn.TopK(S, k)
    blocks = np.array_split(np.arange(S), 6)
    for a in range(len(blocks)):
        for b in range(a, len(blocks)):
            top.add_pair(C[np.ix_(blocks[a], blocks[b])], blocks[a], blocks[b])
    np.testing.assert_array_equal(top.result()[0], want[0])


def test_including_self_and_negative_zero():
    C = np.array([[1.0, -0.0, 0.0], [-0.0, 1.0, -0.5], [0.0, -0.5, 1.0]], dtype=np.float32)
    top = knn.TopK(3, 2, exclude_self=False)
    top.add(C, np.arange(3), np.arange(3))
    idx, cos = top.result()
    np.testing.assert_array_equal(idx, [[0, 1], [1, 0], [2, 0]])  # −0.0 ties with 0.0: lower position first
    np.testing.assert_array_equal(cos, [[1, 0], [1, 0], [1, 0]])


def test_torch_blocks_give_the_same_result():
    torch = pytest.importorskip("torch")
    S, k = 70, 6
    C = cosines(S, seed=5)
    top = knn.TopK(S, k)
    for r in np.array_split(np.arange(S), 3):
        for c in np.array_split(np.arange(S)[::-1], 2):
            top.add(torch.from_numpy(C[np.ix_(r, c)]), r, c)
    want = dense_topk(C, k)
    np.testing.assert_array_equal(top.result()[0], want[0])
    np.testing.assert_array_equal(top.result()[1], want[1])


def test_keys_round_trip():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.uniform(-1, 1, 500), [-1, 1, 0, -0.0, 1e-30, -1e-30]]).astype(np.float32)
    cols = rng.integers(0, knn.MAX_COLUMNS, v.size)
    keys = knn._keys(v[None, :], cols)[0]
    got_cols, got_v = knn.decode_keys(keys)
    np.testing.assert_array_equal(got_cols, cols)
    np.testing.assert_array_equal(got_v, v + np.float32(0))
    order = np.argsort(-keys, kind="stable")
    assert np.all(np.diff(v[order]) <= 0)


def test_clear_errors():
    C = cosines(20)
    top = knn.TopK(20, 3)
    top.add(C[:10], np.arange(10), np.arange(20))
    with pytest.raises(ValueError, match="10 rows have not seen every column.*row 10 saw 0"):
        top.result()
    top.add(C[:10], np.arange(10), np.arange(20))
    with pytest.raises(ValueError, match="given twice"):
        top.result()
    with pytest.raises(ValueError, match="k must be an integer in 1…19"):
        knn.TopK(20, 20)
    with pytest.raises(ValueError, match="unique"):
        top.add(C[:2], np.array([1, 1]), np.arange(20))
    with pytest.raises(ValueError, match=r"positions in 0…19"):
        top.add(C[:1], np.array([20]), np.arange(20))
    bad = C[:2].copy()
    bad[1, 4] = np.nan
    with pytest.raises(ValueError, match="non-finite cosine at row 6, column 4"):
        top.add(bad, np.array([5, 6]), np.arange(20))
    with pytest.raises(ValueError, match="disjoint"):
        top.add_pair(C[:3, 2:5], np.arange(3), np.arange(2, 5))


def test_check_knn():
    idx, cos = knn.knn_from_dense(cosines(30), 4)
    assert knn.check_knn(idx, cos)[0] is idx
    with pytest.raises(ValueError, match="exclude each token itself; row 2"):
        bad = idx.copy()
        bad[2, 1] = 2
        knn.check_knn(bad, cos)
    with pytest.raises(ValueError, match="must both be"):
        knn.check_knn(idx, cos[:, :3])
    with pytest.raises(ValueError, match="positions in 0…29"):
        knn.check_knn(idx + 30, cos)
