"""Gram numerics against a float64 Gram of the same rows: IEEE float32 chunks, symmetric tiles,
batched (CUDA-style) chunk groups, the 3xTF32 split emulated on the CPU; the memory plan for an
H200; the pluggable consumer of block products (the hook a streaming top-k would use)."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_tiny_gptneox

from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.similarity import budget_for_resident, plan_memory, similarity_parameters
from quanta_core.similarity.exact import DenseMatrix, exact
from quanta_core.similarity.gradients import Targets
from quanta_core.similarity.gram import gram, round_tf32

P = 300_000  # columns: ~37 chunks of 8,192


@pytest.fixture(scope="module")
def rows():
    """Unit rows with cosines spread over [-0.3, 0.9] (a shared direction plus noise, some flipped)."""
    gen = torch.Generator().manual_seed(0)
    common = torch.randn(P, generator=gen)
    weights = torch.linspace(-0.6, 3.0, 24)[:, None]
    g = weights * common + torch.randn(24, P, generator=gen)
    return (g / g.norm(dim=1, keepdim=True)).float()


def float64_gram(a, b=None):
    a = a.double()
    return (a @ (a if b is None else b.double()).T).numpy()


def test_ieee_gram_within_float32_rounding_of_float64(rows):
    truth = float64_gram(rows)
    assert np.abs(truth - np.eye(len(rows))).max() > 0.5  # not all ~0
    for kwargs in ({}, {"tile": 5}, {"tile": 1000}, {"batched": True}, {"batched": True, "tile": 7}):
        c = gram(rows, **kwargs).numpy()
        assert np.array_equal(c, c.T), kwargs
        assert np.abs(c - truth).max() < 1e-6, kwargs
    ab = gram(rows[:10], rows[10:], batched=True).numpy()
    assert np.abs(ab - truth[:10, 10:]).max() < 1e-6


def test_round_tf32_keeps_ten_mantissa_bits_nearest():
    x = torch.tensor([1.0 + 2**-11, 1.0 + 2**-10 + 2**-12, -3.0 - 2**-9 - 2**-13, 1e-30], dtype=torch.float32)
    r = round_tf32(x)
    assert (r.view(torch.int32) & 0x1FFF == 0).all()
    assert r.tolist()[:3] == [1.0 + 2**-10, 1.0 + 2**-10, -3.0 - 2**-9]  # ties away from zero; nearest
    y = torch.randn(10_000)
    assert ((round_tf32(y) - y).abs() <= y.abs() * 2**-11).all()


def test_3xtf32_split_within_1e6_of_float64(rows):
    """The split ``hi + lo`` of every operand and three TF32 products, emulated with IEEE products of
    the rounded operands (exact in float32): diagonal within 1e-5, |Δ| ≤ 1e-6; one TF32 product of
    the rounded rows alone (what allow_tf32 gives) is far off."""
    truth = float64_gram(rows)
    split = gram(rows, mode="3xtf32-emulated").numpy()
    assert np.abs(np.diag(split) - np.diag(truth)).max() < 1e-5
    assert np.abs(split - truth).max() <= 1e-6
    one = float64_gram(round_tf32(rows))
    assert np.abs(one - truth).max() > 1e-6  # measured 2.7e-6: 1xTF32 misses the goal
    with pytest.raises(ValueError, match="CUDA"):
        gram(rows, mode="3xtf32")


def test_float16_rows_are_exact_in_tf32(rows):
    """float16 rows (as resident blocks store them) are TF32 numbers: one product, no split."""
    half = (rows * 2**13).half()
    truth = float64_gram(half.float())
    got = gram(half, mode="3xtf32-emulated", batched=True).numpy()
    assert np.abs(got - truth).max() / truth.max() < 1e-6


def test_plan_for_an_h200_at_10000_tokens():
    """85 % of 139 GiB of float16 rows of pythia-70m: ≤ 2.5 gradient computations per token."""
    budget = int(0.85 * 139 * (1 << 30))
    plan = plan_memory(10_000, 18_903_040, budget)
    assert plan.resident_dtype == "float16" and plan.resident_tokens >= 3_000
    assert plan.gradient_computations_per_token <= 2.5
    assert plan.resident_tokens * 18_903_040 * 2 + plan.stream_tokens * 18_903_040 * 2 <= budget


class PairLog:
    """A sink that counts the unordered token pairs reaching it (the contract a streaming top-k
    relies on): a diagonal block (``rows is cols``) holds its pairs i ≤ j, any other block all."""

    def __init__(self, num_tokens):
        self.dense, self.count = DenseMatrix(num_tokens), {}

    def add(self, rows, cols, block):
        assert block.shape == (len(rows), len(cols)) and block.dtype == torch.float64
        self.dense.add(rows, cols, block)
        for a, i in enumerate(rows):
            for b, j in enumerate(cols):
                if rows is not cols or a <= b:
                    key = (min(int(i), int(j)), max(int(i), int(j)))
                    self.count[key] = self.count.get(key, 0) + 1

    def finish(self):
        return self.dense.finish()


def test_every_pair_reaches_the_sink_once():
    model = make_tiny_gptneox(max_positions=128, seed=4)
    rng = np.random.default_rng(0)
    lengths = [100, 90, 60, 120]
    ids = np.concatenate([rng.integers(0, 512, n) for n in lengths]).astype(np.uint16)
    corpus = CanonicalCorpus(ids, np.concatenate([[0], np.cumsum(lengths)]), pd.DataFrame({"num_tokens": lengths}))
    indices = np.sort(rng.choice(corpus.num_predictable, 11, replace=False)).astype(np.int64)
    params = similarity_parameters(model)
    p = sum(x.numel() for _, x in params)
    budget = budget_for_resident(11, p, 4, "float32", max_batch=2)
    log = PairLog(11)
    run = exact(model, corpus, Targets.of(corpus, indices), params, budget=budget, resident_dtype="float32",
                max_batch=2, batch_tokens=4096, sink=log)
    assert run.blocks == 3 and run.resident_tokens == 4
    assert log.count == {(i, j): 1 for i in range(11) for j in range(i, 11)}
    m = run.matrix
    assert np.array_equal(m, m.T) and np.abs(np.diag(m) - 1).max() < 1e-6
