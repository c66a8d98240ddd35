"""Spectral clustering against scikit-learn, ranking, sweeps, the paper's envelope slope, and
labeling comparison against sklearn.metrics."""

import math
from itertools import combinations

import numpy as np
import pytest
from sklearn.cluster import SpectralClustering
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from quanta_core.clustering import paper
from quanta_core.clustering import spectral as qc

from support.helpers import planted_cosines

pytestmark = pytest.mark.usefixtures("one_thread")


def planted(num_samples=180, num_clusters=8, dim=24, noise=0.9, seed=0):
    return planted_cosines(num_samples, num_clusters, dim, noise, seed)


def sklearn_labels(similarity, k, n_init=30, random_state=0):
    """The original's call, on an affinity computed naively entry by entry."""
    S = similarity.shape[0]
    affinity = np.empty((S, S))
    for i in range(S):
        for j in range(S):
            c = min(1.0, max(-1.0, float(similarity[i, j])))
            affinity[i, j] = 1 - math.acos(c) / math.pi
    return SpectralClustering(k, affinity="precomputed", assign_labels="kmeans", n_init=n_init,
                              random_state=random_state).fit_predict(affinity)


def naive_rank(labels):
    """Rank clusters by size descending, ties by first appearance, with plain Python."""
    first, size = {}, {}
    for i, label in enumerate(labels.tolist()):
        first.setdefault(label, i)
        size[label] = size.get(label, 0) + 1
    order = sorted(size, key=lambda label: (-size[label], first[label]))
    rank = {label: r for r, label in enumerate(order)}
    return np.array([rank[label] for label in labels.tolist()])


def test_affinity_formula_and_clipping():
    C = np.array([[1.0000001, 0.0, -1.0000002], [0.0, 1.0, 0.5], [-1.0000002, 0.5, 1.0]], dtype=np.float32)
    A = qc.affinity_from_similarity(C)
    assert A.dtype == np.float64
    a = 1 - math.acos(0.5) / math.pi
    np.testing.assert_allclose(A, [[1, 0.5, 0], [0.5, 1, a], [0, a, 1]], atol=1e-12)


@pytest.mark.parametrize("eigen_solver", ["arpack", "eigh"])
@pytest.mark.parametrize("k,noise,seed", [(8, 0.9, 0), (5, 1.6, 1), (13, 1.3, 2)])
def test_same_labels_as_sklearn_spectral_clustering(k, noise, seed, eigen_solver):
    C, _ = planted(noise=noise, seed=seed)
    ours = qc.spectral_clustering(C, k, eigen_solver=eigen_solver)
    theirs = sklearn_labels(C, k)
    assert ours.dtype == np.int64 and ours.shape == (C.shape[0],)
    np.testing.assert_array_equal(ours, naive_rank(theirs))  # same partition, ranked the same way
    assert qc.compare_labelings(ours, theirs)["adjusted_rand"] == pytest.approx(1.0)
    # the data are not trivially separable at this noise: a different seed gives another partition
    if noise > 1.5:
        other = SpectralClustering(k, affinity="precomputed", n_init=1, random_state=5).fit_predict(
            qc.affinity_from_similarity(C))
        assert not np.array_equal(naive_rank(other), ours)


def test_deterministic_and_ranked():
    C, _ = planted(noise=1.4, seed=3)
    a, b = qc.spectral_clustering(C, 9), qc.spectral_clustering(C, 9)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, naive_rank(a))
    sizes = np.bincount(a)
    assert np.all(np.diff(sizes) <= 0) and len(sizes) == 9


def test_rank_clusters_ties_by_first_appearance():
    labels = np.array([5, 5, 2, 2, 9, 9, 9, 7])
    np.testing.assert_array_equal(qc.rank_clusters(labels), [1, 1, 2, 2, 0, 0, 0, 3])
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 12, 60) * 7 - 3
        np.testing.assert_array_equal(qc.rank_clusters(labels), naive_rank(labels))


def test_clear_errors():
    C, _ = planted(num_samples=20)
    with pytest.raises(ValueError, match="num_clusters = 21 is more than the 20 samples"):
        qc.spectral_clustering(C, 21)
    with pytest.raises(ValueError, match="positive integer"):
        qc.spectral_clustering(C, 0)
    bad = C.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*\[3, 4\]"):
        qc.spectral_clustering(bad, 3)
    bad[3, 4] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        qc.cluster_sweep(bad, [2, 3])
    with pytest.raises(ValueError, match="square"):
        qc.spectral_clustering(C[:, :10], 3)


def test_k_equal_to_samples_works():
    C, _ = planted(num_samples=12)
    labels = qc.spectral_clustering(C, 12, n_init=2)
    assert sorted(labels.tolist()) == list(range(12))


def test_sweep_reuses_one_embedding_and_equals_direct(monkeypatch):
    C, _ = planted(num_samples=200, num_clusters=10, noise=0.8, seed=4)
    ks = [4, 7, 10, 14]
    direct = {k: qc.spectral_clustering(C, k, n_init=5) for k in ks}
    import sklearn.manifold

    calls = []
    original = sklearn.manifold.spectral_embedding

    def counting(*args, **kwargs):
        calls.append(kwargs["n_components"])
        return original(*args, **kwargs)

    monkeypatch.setattr(sklearn.manifold, "spectral_embedding", counting)
    seen = []
    swept = qc.cluster_sweep(C, ks, n_init=5, progress=lambda k, s: seen.append(k))
    assert calls == [14] and seen == ks  # one float64 embedding, max(ks) components
    for k in ks:
        assert swept[k].max() == k - 1
        assert qc.compare_labelings(swept[k], direct[k])["adjusted_rand"] == pytest.approx(1.0), k
    # one k alone: the embedding has exactly k components, so the sweep *is* the direct run
    np.testing.assert_array_equal(qc.cluster_sweep(C, [7], n_init=5)[7], direct[7])


def naive_envelope(labelings):
    curves = [sorted(np.bincount(labels)[np.bincount(labels) > 0].tolist(), reverse=True) for labels in labelings]
    length = max(len(c) for c in curves)
    return [max(c[r] if r < len(c) else 0 for c in curves) for r in range(length)]


def test_envelope_matches_naive_and_slope_of_a_power_law():
    rng = np.random.default_rng(0)
    labelings = [rng.integers(0, k, 500) for k in (3, 10, 40)]
    assert qc.rank_frequency_envelope(labelings).tolist() == naive_envelope(labelings)
    assert qc.rank_frequency_envelope(dict(enumerate(labelings))).tolist() == naive_envelope(labelings)
    sizes = np.round(1e6 * np.arange(1, 2001, dtype=float) ** -1.5)
    assert qc.envelope_slope(sizes) == pytest.approx(-1.5, abs=1e-3)
    with pytest.raises(ValueError, match="fewer than 2"):
        qc.envelope_slope(np.ones(50))


def test_paper_envelope_slope():
    labels = paper.load_paper_labels()  # the packaged copy of the paper's published labels
    assert len(labels) == 27 and all(v.shape == (10_000,) for v in labels.values())
    envelope = qc.rank_frequency_envelope(labels)
    assert envelope.tolist() == naive_envelope(list(labels.values()))
    assert qc.envelope_slope(envelope) == pytest.approx(-1.24, abs=0.01)  # the paper reports ≈ −1.24
    assert qc.envelope_slope(envelope) == pytest.approx(-1.238, abs=5e-4)


def test_compare_labelings_against_sklearn_metrics():
    rng = np.random.default_rng(1)
    cases = [(rng.integers(0, 5, 300), rng.integers(0, 7, 300)) for _ in range(5)]
    a = rng.integers(0, 20, 400)
    cases += [
        (a, a * 3 + 1),  # renamed
        (a, np.where(rng.random(400) < 0.2, rng.integers(0, 20, 400), a)),  # mostly the same
        (np.zeros(50, int), np.zeros(50, int)),
        (np.zeros(50, int), np.arange(50)),
        (np.arange(50), np.arange(50)),
        (np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])),
    ]
    for x, y in cases:
        got = qc.compare_labelings(x, y)
        assert got["adjusted_rand"] == pytest.approx(adjusted_rand_score(x, y), abs=1e-12)
        assert got["nmi"] == pytest.approx(normalized_mutual_info_score(x, y), abs=1e-12)
        # and against the definitions, computed independently (pairs of samples; plain entropies)
        assert got["adjusted_rand"] == pytest.approx(naive_ari(x, y), abs=1e-9)
        assert got["nmi"] == pytest.approx(naive_nmi(x, y), abs=1e-9)
    with pytest.raises(ValueError, match="different lengths"):
        qc.compare_labelings(np.zeros(3), np.zeros(4))


def naive_ari(x, y):
    """Hubert–Arabie ARI by counting pairs of samples: together in x, in y, in both."""
    x, y = list(x), list(y)
    both = in_x = in_y = pairs = 0
    for i, j in combinations(range(len(x)), 2):
        sx, sy = x[i] == x[j], y[i] == y[j]
        in_x, in_y, both, pairs = in_x + sx, in_y + sy, both + (sx and sy), pairs + 1
    expected = in_x * in_y / pairs
    maximum = (in_x + in_y) / 2
    return 1.0 if maximum == expected else (both - expected) / (maximum - expected)


def naive_nmi(x, y):
    """I(x; y) / mean(H(x), H(y)) from the joint distribution, in plain Python."""
    n = len(x)
    joint, px, py = {}, {}, {}
    for a, b in zip(list(x), list(y)):
        joint[a, b] = joint.get((a, b), 0) + 1
        px[a], py[b] = px.get(a, 0) + 1, py.get(b, 0) + 1
    h = lambda counts: -sum(c / n * math.log(c / n) for c in counts.values())  # noqa: E731
    mi = sum(c / n * math.log(c * n / (px[a] * py[b])) for (a, b), c in joint.items())
    hx, hy = h(px), h(py)
    return 1.0 if hx == hy == 0 else max(mi, 0.0) / ((hx + hy) / 2)


def orthogonal_equal(num_samples, num_clusters, noise, seed=0):
    """Equal clusters around orthogonal centres: K − 1 nearly equal Laplacian eigenvalues."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_clusters), num_samples // num_clusters)
    x = np.eye(num_clusters)[labels] + noise * rng.normal(size=(labels.size, num_clusters))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return (x @ x.T).astype(np.float32)


@pytest.mark.parametrize("noise,K,k", [(0.05, 8, 8), (0.05, 8, 5), (0.05, 8, 9), (0.01, 10, 6), (0.0, 10, 10)])
def test_eigh_same_labels_on_near_degenerate_spectra(noise, K, k):
    """Eigenvalues 1e−4 apart, or a cut at a gap of an exactly degenerate spectrum: eigh and ARPACK
    give the same labels (k-means does not see a rotation inside the embedded space)."""
    C = orthogonal_equal(400, K, noise)
    a = qc.spectral_embedding(C, k, eigen_solver="arpack")
    b = qc.spectral_embedding(C, k, eigen_solver="eigh")
    assert [np.array_equal(x, y) for x, y in zip(a.rng_state, b.rng_state)] == [True] * 5  # same draws
    np.testing.assert_array_equal(b.kmeans(k, n_init=5), a.kmeans(k, n_init=5))
    if noise > 0:  # apart eigenvalues: the same eigenvectors, to rounding
        np.testing.assert_allclose(b.maps, a.maps, rtol=0, atol=1e-10 * np.abs(a.maps).max())


def test_eigh_sweep_equals_direct_arpack():
    C, _ = planted(num_samples=200, num_clusters=10, noise=0.8, seed=4)
    ks = [4, 7, 10, 14]
    swept = qc.cluster_sweep(C, ks, n_init=5, eigen_solver="eigh")
    for k in ks:  # as the ARPACK sweep: the first k of max(ks) eigenvectors, same partition
        direct = qc.spectral_clustering(C, k, n_init=5)
        assert qc.compare_labelings(swept[k], direct)["adjusted_rand"] == pytest.approx(1.0), k
    with pytest.raises(ValueError, match="eigen_solver must be one of 'arpack', 'eigh'"):
        qc.spectral_clustering(C, 3, eigen_solver="lobpcg")
