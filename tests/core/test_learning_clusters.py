"""The learned-at-once permutation test: calibrated under the null, powerful on planted clusters,
matched on the reference loss, deterministic."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kstest

from quanta_core.learning.clusters import learned_at_once


def _fits(mid, flags=None):
    return {"midpoint_x": np.asarray(mid, dtype=np.float32),
            "flags": np.zeros(len(mid), dtype=np.uint8) if flags is None else flags}


def test_random_clusters_give_uniform_p_values():
    p_values, tighter = [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        g = 3000
        fits = _fits(rng.uniform(0.5, 4.5, g))
        indices = rng.choice(g, 1500, replace=False)
        labels = rng.integers(0, 50, 1500)
        table, summary = learned_at_once(indices, labels, fits, rng.uniform(0, 0.1, 1500), permutations=199, seed=seed)
        p_values += list(table["p_value"])
        tighter.append(summary["fraction_tighter"])
    assert kstest(p_values, "uniform").pvalue > 0.01
    assert np.mean(np.array(p_values) < 0.05) < 0.1
    assert max(tighter) <= 0.04  # BH at 5 %: under the null, almost never a discovery


def test_planted_synchronous_clusters_are_found():
    rng = np.random.default_rng(10)
    n, k = 1200, 40
    labels = np.repeat(np.arange(k), n // k)
    mid = rng.uniform(0.5, 4.5, n)
    planted = labels < 10  # clusters 0–9 learned together, within ±0.05 decades of their own time
    centres = rng.uniform(1.0, 4.0, k)
    mid[planted] = centres[labels[planted]] + rng.normal(0, 0.05, planted.sum())
    table, summary = learned_at_once(np.arange(n), labels, _fits(mid), rng.uniform(0, 0.1, n), permutations=499)
    hits = table.set_index("cluster")
    assert (hits.loc[:9, "p_value"] <= 0.01).all() and hits.loc[:9, "tighter"].all()
    assert hits.loc[10:, "tighter"].sum() <= 1
    assert summary["tighter"] >= 10 and summary["global_p_value"] <= 0.01
    assert hits.loc[:9, "ratio"].max() < 0.2


def test_baseline_is_matched_on_the_reference_loss():
    """Learning time follows the reference loss, and clusters are random groups of one loss decile:
    they are tight only because of their loss. Matched on loss (the deciles are the loss bins here),
    nothing is special; unmatched (one loss bin), everything looks tight."""
    rng = np.random.default_rng(11)
    decile = np.repeat(np.arange(10), 200)
    loss = decile + rng.uniform(0.2, 0.8, len(decile))  # deciles apart, so the quantile bins are the deciles
    mid = 0.5 + 0.4 * loss + rng.normal(0, 0.1, len(loss))
    labels = decile * 4 + rng.integers(0, 4, len(loss))  # 4 random clusters per decile
    n = len(loss)
    matched, m_summary = learned_at_once(np.arange(n), labels, _fits(mid), loss, loss_bins=10, permutations=199)
    unmatched, u_summary = learned_at_once(np.arange(n), labels, _fits(mid), loss, loss_bins=1, permutations=199)
    assert m_summary["fraction_tighter"] <= 0.05 and m_summary["global_p_value"] > 0.05
    assert kstest(matched["p_value"], "uniform").pvalue > 0.01
    assert u_summary["fraction_tighter"] == 1.0 and u_summary["global_p_value"] == pytest.approx(1 / 200)


def test_statistics_match_a_naive_computation():
    rng = np.random.default_rng(12)
    g = 500
    mid = rng.uniform(0, 5, g)
    flags = np.where(rng.random(g) < 0.2, 4, 0).astype(np.uint8)  # a fifth of the tokens are noisy
    indices = rng.choice(g, 300, replace=False)
    labels = rng.integers(0, 12, 300)
    labels[:3] = 99  # a cluster of three tokens: too small to test
    table, summary = learned_at_once(indices, labels, _fits(mid, flags), rng.random(300), permutations=99, seed=3)
    for row in table.itertuples(index=False):
        members = indices[labels == row.cluster]
        fit_members = members[flags[members] == 0]
        assert row.n == len(members) and row.n_fit == len(fit_members)
        if row.tested:
            values = mid[fit_members].astype(np.float32).astype(np.float64)
            q25, q50, q75 = np.quantile(values, [0.25, 0.5, 0.75])
            assert row.iqr == pytest.approx(q75 - q25, abs=1e-9)
            assert row.median_x == pytest.approx(q50, abs=1e-9)
            assert row.median_step == pytest.approx(10**q50 - 1, rel=1e-9)
            assert 1 / 100 <= row.p_value <= 1
    small = table.set_index("cluster").loc[99]
    assert not small.tested and np.isnan(small.p_value) and not small.tighter
    assert summary["tested"] == int(table["tested"].sum()) == 12
    again, _ = learned_at_once(indices, labels, _fits(mid, flags), rng.random(300) * 0 + 1, permutations=99, seed=3)
    other, _ = learned_at_once(indices, labels, _fits(mid, flags), np.ones(300), permutations=99, seed=4)
    same, _ = learned_at_once(indices, labels, _fits(mid, flags), np.ones(300), permutations=99, seed=3)
    pd.testing.assert_frame_equal(again, same)
    assert not np.array_equal(other["p_value"], same["p_value"])


def test_bad_input():
    fits = _fits(np.zeros(10))
    with pytest.raises(IndexError, match="canonical indices"):
        learned_at_once(np.array([1, 20]), np.array([0, 0]), fits, np.zeros(2))
    with pytest.raises(ValueError, match="one length"):
        learned_at_once(np.array([1, 2]), np.array([0]), fits, np.zeros(2))
    with pytest.raises(ValueError, match="non-finite"):
        learned_at_once(np.array([1, 2]), np.array([0, 0]), fits, np.array([0.0, np.nan]))
    table, summary = learned_at_once(np.array([1, 2]), np.array([0, 0]), fits, np.zeros(2))
    assert summary["tested"] == 0 and not table["tested"].any()
