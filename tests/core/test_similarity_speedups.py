"""The CPU speed levers of ``exact`` change nothing but speed: oneDNN products equal torch's within
float32 rounding, the last layer's attention runs on the target rows only, the engine's own
attention is the causal attention, the heap setting is
undone, and the gradients equal plain torch's."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_gptneox

from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.similarity import attention, onednn, similarity_matrix, similarity_parameters
from quanta_core.similarity.gradients import PerTokenGradients, Targets, collate
from quanta_core.similarity.memory import ReusedHeap


@pytest.fixture(scope="module")
def setup():
    model = make_tiny_gptneox(max_positions=256, seed=2)
    rng = np.random.default_rng(3)
    lengths = [200, 150, 90, 40, 180]
    ids = np.concatenate([rng.integers(0, 512, n) for n in lengths]).astype(np.uint16)
    corpus = CanonicalCorpus(ids, np.concatenate([[0], np.cumsum(lengths)]), pd.DataFrame({"num_tokens": lengths}))
    indices = np.sort(rng.choice(corpus.num_predictable, 9, replace=False)).astype(np.int64)
    return model, corpus, indices


@pytest.mark.skipif(not onednn.available(), reason="oneDNN float32 linear not available on this build/CPU")
def test_onednn_products_equal_torch():
    gen = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(5, 7, 96, generator=gen), torch.randn(40, 96, generator=gen), torch.randn(40, generator=gen)
    want = (x.double() @ w.double().T + b.double()).float()
    assert torch.allclose(onednn.linear(x, w, b), want, rtol=1e-5, atol=1e-5)
    assert torch.allclose(onednn.linear(x[0], w.T.contiguous().T), x[0] @ w.T, rtol=1e-5, atol=1e-5)
    go, xs = torch.randn(3, 11, 40, generator=gen), torch.randn(3, 11, 96, generator=gen)
    out = torch.zeros(3, 40 * 96 + 5)
    onednn.outer_sums_(go, xs, out[:, 5:].unflatten(1, (40, 96)))
    assert torch.allclose(out[:, 5:].unflatten(1, (40, 96)), torch.bmm(go.transpose(1, 2), xs), rtol=1e-5, atol=1e-5)
    assert (out[:, :5] == 0).all()
    with torch.enable_grad():  # a graph to record: plain torch, never an untracked oneDNN product
        xg = x.clone().requires_grad_(True)
        onednn.linear(xg, w, b).sum().backward()
    assert torch.allclose(xg.grad, w.sum(0).expand_as(x), rtol=1e-5, atol=1e-5)


def test_linears_are_restored_and_gradients_equal_plain_torch(setup, monkeypatch):
    model, corpus, indices = setup
    params = similarity_parameters(model)
    targets = Targets.of(corpus, indices)
    ids, lens, tgt = collate(corpus, targets, np.arange(len(indices)), torch.device("cpu"))
    engine = PerTokenGradients(model, params)
    fast = torch.zeros(len(indices), engine.num_parameters)
    engine.compute(ids, lens, tgt, fast)
    assert all("forward" not in m.__dict__ for m in model.modules())  # the swapped forwards are gone
    monkeypatch.setenv("QUANTA_ONEDNN", "0")
    onednn.available.cache_clear()
    try:
        plain = torch.zeros_like(fast)
        engine.compute(ids, lens, tgt, plain)
    finally:
        monkeypatch.delenv("QUANTA_ONEDNN")
        onednn.available.cache_clear()
    rel = (fast - plain).norm(dim=1) / plain.norm(dim=1)
    assert rel.max() < 1e-5


def test_last_layer_attention_sees_one_query_per_sample(setup, monkeypatch):
    model, corpus, indices = setup
    full, single = [], []
    causal, rows = attention.attention, attention.target_row_attention

    def spy_causal(q, k, v, *args, **kwargs):
        full.append((q.shape[0], q.shape[2], k.shape[2]))
        return causal(q, k, v, *args, **kwargs)

    def spy_rows(q, k, v, last, *args, **kwargs):
        single.append(len(last))
        return rows(q, k, v, last, *args, **kwargs)

    monkeypatch.setattr(attention, "attention", spy_causal)
    monkeypatch.setattr(attention, "target_row_attention", spy_rows)
    similarity_matrix(model, corpus, indices, max_batch=9, batch_tokens=1 << 16)
    layers = model.config.num_hidden_layers
    assert sum(single) == len(indices)  # the last layer: one query row per sample
    assert len(full) == (layers - 1) * len(single) and all(t == k for _, t, k in full)
    assert model.config._attn_implementation == "sdpa"  # restored


def test_own_attention_equals_sdpa_within_float32_rounding():
    """:func:`attention.causal_attention` (chunks of query rows, exact softmax) is the causal
    attention: it matches ``F.scaled_dot_product_attention`` on ordinary scores, masks included."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 300, 16, generator=gen) for _ in range(3))
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.25)
    assert torch.allclose(attention.causal_attention(q, k, v, None, 0.25, rows=128), want, atol=1e-6)
    visible = torch.ones(300, 300, dtype=torch.bool).tril()[None, None].clone()
    visible[..., 5:, 0] = False  # a padding-like mask
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=visible, scale=0.25)
    assert torch.allclose(attention.causal_attention(q, k, v, visible, 0.25, rows=64), want, atol=1e-6)
    additive = torch.zeros(1, 1, 300, 300).masked_fill(~visible, float("-inf"))
    assert torch.allclose(attention.causal_attention(q, k, v, additive, 0.25, rows=100), want, atol=1e-6)


def test_fused_kernel_where_its_lse_is_exact_else_the_exact_softmax(monkeypatch):
    """:func:`attention.attention` keeps the fused kernel (and its gradients) for ordinary scores and
    falls back to :func:`attention.causal_attention` when a row's log-sum-exp exceeds the limit."""
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 200, 16, generator=gen).requires_grad_(True) for _ in range(3))
    calls = []
    causal = attention.causal_attention
    monkeypatch.setattr(attention, "causal_attention", lambda *a, **kw: calls.append(1) or causal(*a, **kw))
    with torch.enable_grad():
        out = attention.attention(q, k, v, 0.25)
        out.backward(torch.ones_like(out))
    assert not calls
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    with torch.enable_grad():
        want = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.25)
        want.backward(torch.ones_like(want))
    assert torch.allclose(out, want, atol=1e-6)
    assert all(torch.allclose(g, t.grad, atol=1e-5) for g, t in zip(grads, (q, k, v)))
    with torch.enable_grad():
        hot = attention.attention(q * 40, k * 40, v, 0.25)  # scores in the hundreds
    assert calls and torch.allclose(hot, causal(q * 40, k * 40, v, None, 0.25), atol=1e-6)


def test_reused_heap_is_undone():
    with ReusedHeap() as heap:
        x = torch.ones(1 << 22)
        del x
    assert heap.libc is None or heap.libc.mallopt(-4, 65536) == 1
