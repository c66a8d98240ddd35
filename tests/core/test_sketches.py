"""Projections of the ``projected`` method (quanta_core.similarity.sketches): CountSketch identical to
the previous implementation, the sparse JL transform's error against a dense Gaussian JL and the
theory on random data, determinism, and the errors on bad input."""

import numpy as np
import pandas as pd
import pytest
import torch

from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.host_memory import check_fits
from quanta_core.similarity import similarity_matrix
from quanta_core.similarity.memory import result_bytes
from quanta_core.similarity.projected import countsketch as reexported
from quanta_core.similarity.sketches import MAX_DIM, Sketch, countsketch, parse_kind, sketch

from support.helpers import make_tiny_gptneox


def previous_countsketch(num_parameters, dim, seed, device):
    """``quanta_core.similarity.projected.countsketch`` before the sketches module (commit 7da1983)."""
    gen = torch.Generator().manual_seed(int(seed))
    buckets, signs = [], []
    for a in range(0, num_parameters, 1 << 20):
        n = min(1 << 20, num_parameters - a)
        buckets.append(torch.randint(0, dim, (n,), generator=gen))
        signs.append(torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1)
    return torch.cat(buckets).to(device), torch.cat(signs).to(device)


def previous_sketch(g, buckets, signs, dim):
    part = torch.zeros(g.shape[0], dim, dtype=torch.float64, device=g.device)
    for a in range(0, g.shape[1], 1 << 22):
        sl = slice(a, a + (1 << 22))
        part.index_add_(1, buckets[sl], (g[:, sl] * signs[sl]).double())
    return part


def correlated_rows(n, p, seed, shared=0.5):
    """float32 ``[n, p]`` Gaussian rows sharing a common part: pairwise cosines ≈ shared²."""
    gen = torch.Generator().manual_seed(seed)
    common = torch.randn(p, generator=gen)
    return shared * common + (1 - shared**2) ** 0.5 * torch.randn(n, p, generator=gen)


def cosines(x):
    x = x.double()
    x = x / x.norm(dim=1, keepdim=True)
    return x @ x.T


def off_diagonal_rms(a, b):
    mask = ~torch.eye(a.shape[0], dtype=torch.bool)
    return float(((a - b)[mask] ** 2).mean().sqrt())


def test_countsketch_identical_to_the_previous_implementation():
    p, dim = (1 << 22) + (1 << 20) + 12_345, 4096  # two scatter steps, a partial generator block
    g = torch.randn(3, p, generator=torch.Generator().manual_seed(0))
    old_b, old_s = previous_countsketch(p, dim, 7, "cpu")
    for new_b, new_s in (countsketch(p, dim, 7, "cpu"), reexported(p, dim, 7, "cpu")):
        assert torch.equal(new_b, old_b) and torch.equal(new_s, old_s)
    expected = previous_sketch(g, old_b, old_s, dim)
    assert torch.equal(sketch(g, old_b, old_s, dim), expected)
    assert torch.equal(Sketch(p, dim, 7, "cpu").apply(g), expected)
    assert torch.equal(Sketch(p, dim, 7, "cpu", "sjlt-1").apply(g), expected)  # s = 1 is CountSketch


def test_sjlt_structure():
    p, dim = 10_000, 512
    sk = Sketch(p, dim, 3, "cpu", "sjlt-4")
    assert sk.nonzeros == 4 and len(sk.tables) == 4 and sk.table_bytes == 4 * p * 12
    for j, (buckets, signs) in enumerate(sk.tables):  # one nonzero in each block of dim / s rows
        assert int(buckets.min()) >= j * 128 and int(buckets.max()) < (j + 1) * 128
        assert set(signs.unique().tolist()) == {-1.0, 1.0}
    x = torch.zeros(1, p)
    x[0, 17] = 1.0
    y = sk.apply(x)[0]
    assert int((y != 0).sum()) == 4 and torch.allclose(y.abs()[y != 0], torch.full((4,), 0.5, dtype=torch.float64))
    g = correlated_rows(5, p, 1)
    assert torch.allclose(sk.apply(g).norm(dim=1) ** 2 / g.double().norm(dim=1) ** 2,
                          torch.ones(5, dtype=torch.float64), atol=0.3)  # unbiased norms, JL-sized error


def test_cosine_error_matches_a_dense_gaussian_jl_and_the_theory():
    """rms error of the normalized cosines (what ``projected`` stores), pooled over seeds, for each
    kind within 20 % of a dense float64 Gaussian JL's and of the theory (1 − cos²)/√k."""
    n, p, k, seeds = 48, 20_000, 256, range(6)
    errors = {kind: [] for kind in ("countsketch", "sjlt-2", "sjlt-4", "sjlt-8", "dense")}
    theory = []
    for seed in seeds:
        g = correlated_rows(n, p, 100 + seed)
        exact = cosines(g)
        mask = ~torch.eye(n, dtype=torch.bool)
        theory.append(float(((1 - exact[mask] ** 2) ** 2 / k).mean()))
        for kind in errors:
            if kind == "dense":
                gauss = torch.randn(p, k, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
                projected = g.double() @ gauss
            else:
                projected = Sketch(p, k, seed, "cpu", kind).apply(g)
            errors[kind].append(off_diagonal_rms(cosines(projected), exact) ** 2)
    rms = {kind: float(np.sqrt(np.mean(v))) for kind, v in errors.items()}
    bound = float(np.sqrt(np.mean(theory)))
    for kind in ("countsketch", "sjlt-2", "sjlt-4", "sjlt-8"):
        assert 0.8 < rms[kind] / rms["dense"] < 1.25, rms
        assert 0.8 < rms[kind] / bound < 1.25, (rms, bound)
    assert 0.8 < rms["dense"] / bound < 1.25


def test_sjlt_lighter_tails_on_a_heavy_coordinate():
    """Rows dominated by a few coordinates: a CountSketch collision moves a cosine by up to the
    product of the heavy entries; s nonzeros average s collisions, so the worst error shrinks."""
    n, p, k = 40, 4_000, 512
    gen = torch.Generator().manual_seed(5)
    g = 0.005 * torch.randn(n, p, generator=gen)  # rest: norm 0.3
    heavy = torch.randint(0, p, (n,), generator=gen)
    g[torch.arange(n), heavy] = 1.0
    exact = cosines(g)
    worst = {kind: np.mean([float((cosines(Sketch(p, k, s, "cpu", kind).apply(g)) - exact).abs().max())
                            for s in range(8)]) for kind in ("countsketch", "sjlt-8")}
    assert worst["sjlt-8"] < 0.5 * worst["countsketch"], worst


def test_deterministic_per_seed():
    p, dim = 50_000, 1024
    g = correlated_rows(4, p, 2)
    for kind in ("countsketch", "sjlt"):
        a, b = Sketch(p, dim, 11, "cpu", kind), Sketch(p, dim, 11, torch.device("cpu"), kind)
        assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a.tables, b.tables))
        assert torch.equal(a.apply(g), b.apply(g))
        assert not torch.equal(Sketch(p, dim, 12, "cpu", kind).apply(g), a.apply(g))


def test_largest_dim_and_clear_errors():
    out = Sketch(1000, MAX_DIM, 0, "cpu", "sjlt").apply(torch.ones(2, 1000))
    assert out.shape == (2, MAX_DIM) and out.dtype == torch.float64
    for dim in (0, -1, MAX_DIM + 1, 2.5, True):
        with pytest.raises(ValueError, match="projection_dim"):
            Sketch(1000, dim, 0, "cpu")
    with pytest.raises(ValueError, match="divisible"):
        Sketch(1000, 1000, 0, "cpu", "sjlt-3")
    for kind in ("dense", "sjlt-0", "sjlt-x", "SJLT"):
        with pytest.raises(ValueError, match="projection must be"):
            parse_kind(kind)
    with pytest.raises(ValueError, match="rows of 1000 coordinates"):
        Sketch(1000, 64, 0, "cpu").apply(torch.ones(2, 999))
    # what similarity_matrix checks before any gradient: 100,000 rows × 2^18 float64 = 195.31 GiB
    with pytest.raises(MemoryError, match=r"projected rows 195.31 GiB"):
        check_fits(result_bytes(100_000, 0, MAX_DIM), 16 << 30, "projected similarity", "lower projection_dim")


def test_similarity_matrix_projection_setting():
    torch.set_num_threads(1)
    model = make_tiny_gptneox(max_positions=256)
    lengths = [200, 120]
    ids = np.random.default_rng(0).integers(0, 512, sum(lengths)).astype(np.uint16)
    corpus = CanonicalCorpus(ids, np.array([0, 200, 320]), pd.DataFrame({"num_tokens": lengths}))
    idx = np.array([3, 50, 150, 198, 210, 300], dtype=np.int64)
    exact = similarity_matrix(model, corpus, idx).matrix
    for kind in ("countsketch", "sjlt"):
        run = similarity_matrix(model, corpus, idx, method="projected", projection_dim=16384, projection=kind)
        assert run.metadata()["projection"] == kind
        assert np.abs(run.matrix - exact).max() < 0.05
    with pytest.raises(ValueError, match="projection must be"):
        similarity_matrix(model, corpus, idx, method="projected", projection="gaussian")
    with pytest.raises(ValueError, match="projection_dim"):
        similarity_matrix(model, corpus, idx, method="projected", projection_dim=MAX_DIM * 2)
