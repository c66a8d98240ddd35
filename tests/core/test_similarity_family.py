"""Accuracy of QDG similarity on a family of small GPT-NeoX models it was not tuned on (widths,
depths, rotary fractions, tied/untied embeddings, lightly and heavily trained at high learning
rates: large logits, saturated attention), against float64 autograd of the same model
(:func:`similarity_family.float64_gradients`: a float64 copy, eager attention, full document and
logits) — on both CPU paths, with and without oneDNN (``QUANTA_ONEDNN``)."""

import functools

import numpy as np
import pytest
import torch

from quanta_core.similarity import budget_for_resident, onednn, similarity_matrix
from quanta_core.similarity.gradients import unembed, unembedding64
from quanta_core.similarity.sketches import Sketch

from support.similarity_family import (
    BEYOND_FLOAT32,
    FAMILY,
    block_errors,
    build,
    float32_gradients,
    float64_gradients,
    selected,
    unit_rows,
)

GOAL = 1e-5  # max |Δcos| against float64


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Deterministic, and fast for these sizes (no oversubscription on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def trained(name: str):
    """``(model, corpus, losses, indices, float64 gradients)`` of the member ``name``, built once."""
    member = next(m for m in FAMILY + BEYOND_FLOAT32 if m.name == name)
    model, corpus, losses = build(member)
    indices = selected(losses)
    return model, corpus, losses, indices, float64_gradients(model, corpus, indices)


@pytest.fixture(params=[True, False], ids=["onednn", "mkl"])
def cpu_path(request, monkeypatch):
    """Both CPU paths: oneDNN's products (where available) and torch's own (``QUANTA_ONEDNN=0``)."""
    monkeypatch.setenv("QUANTA_ONEDNN", "1" if request.param else "0")
    onednn.available.cache_clear()
    yield request.param
    onednn.available.cache_clear()


def cosines64(g: torch.Tensor) -> np.ndarray:
    u = unit_rows(g)
    return (u @ u.T).numpy()


@pytest.mark.parametrize("name", [m.name for m in FAMILY])
def test_exact_streamed_and_projected_within_1e5_of_float64(name, cpu_path):
    model, corpus, losses, indices, g64 = trained(name)
    truth = cosines64(g64)
    assert np.abs(truth - np.eye(len(indices))).max() > 0.05  # not all ~0: swapped rows would show
    exact = similarity_matrix(model, corpus, indices)
    assert np.abs(exact.matrix - truth).max() < GOAL
    p = exact.num_parameters
    budget = budget_for_resident(len(indices), p, 5, "float32", max_batch=4)
    streamed = similarity_matrix(model, corpus, indices, memory_budget_bytes=budget, resident_dtype="float32",
                                 max_batch=4)
    assert streamed.blocks == 3
    assert np.abs(streamed.matrix - truth).max() < GOAL
    sketched = cosines64(Sketch(p, 4096, 5, torch.device("cpu")).apply(g64))  # the same sketch, float64 rows
    projected = similarity_matrix(model, corpus, indices, method="projected", projection_dim=4096, seed=5)
    assert np.abs(projected.matrix - sketched).max() < GOAL


def test_the_family_spans_what_it_claims():
    """Losses from 1e-4 to 1 nat among the selected tokens, saturated attention somewhere."""
    lows, highs = [], []
    for member in FAMILY:
        _, _, losses, indices, _ = trained(member.name)
        lows.append(losses[indices].min())
        highs.append(losses[indices].max())
    assert min(lows) < 2e-4 and max(highs) > 0.9
    assert {m.tied for m in FAMILY} == {True, False} and len({m.layers for m in FAMILY}) >= 3
    assert len({m.rotary for m in FAMILY}) >= 3 and len({m.hidden for m in FAMILY}) >= 3


def test_the_fused_cpu_attention_kernel_is_what_the_fix_removes(cpu_path):
    """The diagnostic on the hottest member: with the model's fused ``sdpa`` kernel the first
    layer's QKV block is off by more than twice the goal; with the engine's own attention no block is
    off by the goal."""
    model, corpus, _, indices, g64 = trained(FAMILY[0].name)
    fused = block_errors(model, corpus, indices, g64, fused_attention=True)
    ours = block_errors(model, corpus, indices, g64)
    qkv = "gpt_neox.layers.0.attention.query_key_value.weight"
    assert fused[qkv] > 2 * GOAL and ours[qkv] < GOAL and fused[qkv] > 3 * ours[qkv]  # measured 3.6e-5 → 6.9e-6
    assert max(ours.values()) < GOAL


def test_unembedding_backward_sums_the_vocabulary_in_float64():
    """The input gradient of the target rows' logits: within float32 rounding of a float64 product
    over 50,304 rows (a float32 GEMM is off by ~1e-6 of it on these numbers, see docs/similarity.md)."""
    from torch import nn

    gen = torch.Generator().manual_seed(0)
    head = nn.Linear(32, 50304, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(50304, 32, generator=gen) + 3)  # a common direction: cancellation

    class Model(nn.Module):
        def get_output_embeddings(self):
            return head

    x = torch.randn(4, 32, generator=gen).requires_grad_(True)
    grad = torch.softmax(torch.randn(4, 50304, generator=gen, dtype=torch.float64) * 4, -1)
    grad[:, 7] -= 1  # softmax − onehot: rows sum to 0
    with torch.enable_grad():
        logits = unembed(Model(), x, unembedding64(Model()))
        assert logits.dtype == torch.float64
        logits.backward(grad)
    want = grad @ head.weight.detach().double()
    assert ((x.grad.double() - want).norm(dim=1) / want.norm(dim=1)).max() < 2e-7


@pytest.mark.parametrize("name", [m.name for m in BEYOND_FLOAT32 if m.vocab < 50304])  # the quick one to build
def test_hotter_models_lose_nothing_beyond_float32(name, cpu_path):
    """Where float32 itself is above the goal (:data:`similarity_family.BEYOND_FLOAT32`), ``exact``
    is no further from float64 than a plain float32 computation of the same gradients."""
    model, corpus, _, indices, g64 = trained(name)
    truth = cosines64(g64)
    floor = np.abs(cosines64(float32_gradients(model, corpus, indices)) - truth).max()
    assert floor > GOAL  # the premise: float32 activations cannot reach the goal here
    assert np.abs(similarity_matrix(model, corpus, indices).matrix - truth).max() < floor
