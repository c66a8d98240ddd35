"""QDG similarity (quanta_core.similarity): exact vs the original's algorithm, memory-budget
streaming, the parameter set, the projected approximation. Small random GPT-NeoX models."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from quanta_core.corpus.canonical import CanonicalCorpus, doc_pos_to_index
from quanta_core.similarity import (
    budget_for_resident,
    original_gradient_computations,
    plan_memory,
    similarity_matrix,
    similarity_parameters,
)

from support.helpers import make_tiny_gptneox

LENGTHS = [1024, 300, 2, 1, 700, 50]  # a 1-token document has no predictable token


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return make_tiny_gptneox(max_positions=1024)


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    ids = np.concatenate([rng.integers(0, 512, n) for n in LENGTHS]).astype(np.uint16)
    offsets = np.concatenate([[0], np.cumsum(LENGTHS)]).astype(np.int64)
    return CanonicalCorpus(ids, offsets, pd.DataFrame({"num_tokens": LENGTHS}))


@pytest.fixture(scope="module")
def indices(corpus):
    doc_pos = [(0, 1), (0, 1023), (4, 5), (4, 500), (4, 699), (2, 1), (1, 150), (5, 49)]
    return np.array([int(doc_pos_to_index(d, p, corpus.starts)) for d, p in doc_pos], dtype=np.int64)


@pytest.fixture(scope="module")
def reference(model, corpus, indices):
    return similarity_matrix(model, corpus, indices, method="reference", block_len=3)


@pytest.fixture(scope="module")
def exact(model, corpus, indices):
    return similarity_matrix(model, corpus, indices)


def naive_cosines(model, corpus, indices, exclude_final_layer_norm=False):
    """float64 cosines of plain-autograd gradients of the model run wholly in float64 (a copy),
    full document, one token at a time."""
    model = copy.deepcopy(model).double()
    params = similarity_parameters(model, exclude_final_layer_norm=exclude_final_layer_norm)
    grads = []
    for g in indices:
        doc = int(np.searchsorted(corpus.starts, g, side="right") - 1)
        pos = int(g - corpus.starts[doc] + 1)
        ids = torch.from_numpy(corpus.document(doc).astype(np.int64))[None]
        model.zero_grad()
        logits = model(input_ids=ids).logits[0]
        torch.nn.functional.cross_entropy(logits[pos - 1 : pos], ids[0, pos : pos + 1]).backward()
        grads.append(torch.cat([p.grad.flatten() for _, p in params]))
    g = torch.stack(grads)
    g = g / g.norm(dim=1, keepdim=True)
    return (g @ g.T).numpy()


def test_exact_equals_reference(exact, reference, indices):
    assert exact.matrix.shape == (len(indices), len(indices)) and exact.matrix.dtype == np.float32
    assert np.abs(exact.matrix - reference.matrix).max() < 1e-4
    for result in (exact, reference):
        assert np.array_equal(result.matrix, result.matrix.T)
        assert np.abs(np.diag(result.matrix) - 1).max() < 1e-5
    assert exact.gradient_computations == len(indices)
    # the original's count: blocks of 3 → [3, 3, 2] computed 2, 3, 4 times
    assert reference.gradient_computations == original_gradient_computations(len(indices), 3) == 3 * 2 + 3 * 3 + 2 * 4
    # not all ~0: the test would notice swapped rows
    assert np.abs(exact.matrix - np.eye(len(indices))).max() > 0.05


def test_exact_equals_float64_autograd(model, corpus, indices, exact):
    truth = naive_cosines(model, corpus, indices)
    assert np.abs(exact.matrix - truth).max() < 2e-6  # measured 8.9e-7 (float32 model, float64 truth)


def test_exact_sequential_residual_equals_float64_autograd(corpus, indices):
    """GPT-NeoX without the parallel residual (the other branch the last-layer row pruning meets)."""
    model = make_tiny_gptneox(max_positions=1024, parallel_residual=False, seed=1)
    result = similarity_matrix(model, corpus, indices, max_batch=3)
    truth = naive_cosines(model, corpus, indices)
    assert np.abs(result.matrix - truth).max() < 2e-6


def test_last_layer_runs_on_target_rows_only(model, corpus, indices):
    """The last layer's MLP sees one row per sample; the first layer's the whole contexts."""
    seen = {}
    layers = model.gpt_neox.layers
    hooks = [layers[k].mlp.register_forward_hook(lambda m, a, o, k=k: seen.setdefault(k, []).append(tuple(a[0].shape)))
             for k in (0, -1)]
    try:
        similarity_matrix(model, corpus, indices[:3], max_batch=3)
    finally:
        for h in hooks:
            h.remove()
    assert sum(shape[0] for shape in seen[-1]) == 3 and {shape[1] for shape in seen[-1]} == {1}
    assert sum(shape[0] for shape in seen[0]) == 3 and max(shape[1] for shape in seen[0]) == 1023


def test_memory_budget_streaming_gives_same_matrix(model, corpus, indices, exact):
    p = exact.num_parameters
    for dtype, tol in [("float32", 2e-6), ("float16", 2e-4)]:
        budget = budget_for_resident(len(indices), p, 3, dtype, max_batch=2)
        streamed = similarity_matrix(model, corpus, indices, memory_budget_bytes=budget, resident_dtype=dtype,
                                     max_batch=2)
        assert streamed.resident_tokens == 3 and streamed.blocks == 3 and streamed.resident_dtype == dtype
        # blocks of 3, 3, 2 computed 1, 2, 3 times
        assert streamed.gradient_computations == 3 * 1 + 3 * 2 + 2 * 3
        assert np.abs(streamed.matrix - exact.matrix).max() < tol
        assert np.array_equal(streamed.matrix, streamed.matrix.T)
        assert np.abs(np.diag(streamed.matrix) - 1).max() < 1e-5


def test_plan_memory():
    plan = plan_memory(10_000, 18_903_040, 80 << 30)
    assert plan.resident_dtype == "float16" and plan.blocks == -(-10_000 // plan.resident_tokens)
    assert plan.gradient_computations_per_token < 4  # the original: 21.5
    assert plan.gradient_computations == sum(min(plan.resident_tokens, 10_000 - k * plan.resident_tokens) * (k + 1)
                                             for k in range(plan.blocks))
    all_fit = plan_memory(10, 1000, 10 * 1000 * 4)
    assert all_fit.resident_dtype == "float32" and all_fit.blocks == 1 and all_fit.gradient_computations == 10
    assert original_gradient_computations(10_000) / 10_000 == 21.5
    assert original_gradient_computations(256) == 250 * 2 + 6 * 3


def expected_parameter_names(layers, exclude_final):
    names = []
    for i in range(layers):
        for module in ("attention.query_key_value", "attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h"):
            names += [f"gpt_neox.layers.{i}.{module}.weight", f"gpt_neox.layers.{i}.{module}.bias"]
    if not exclude_final:
        names += ["gpt_neox.final_layer_norm.weight", "gpt_neox.final_layer_norm.bias"]
    return names


@pytest.mark.parametrize("exclude_final", [False, True])
def test_parameter_set(model, exclude_final):
    names = [n for n, _ in similarity_parameters(model, exclude_final_layer_norm=exclude_final)]
    assert names == expected_parameter_names(2, exclude_final)
    # the original's name filter, which transformers ≥ 5's "lm_head" would slip through
    original = [n for n, _ in model.named_parameters() if "layernorm" not in n and "embed" not in n]
    assert "lm_head.weight" in original
    if not exclude_final:
        assert names == [n for n in original if n != "lm_head.weight"]


def test_exclude_final_layer_norm_changes_the_matrix(model, corpus, indices, exact):
    without = similarity_matrix(model, corpus, indices, exclude_final_layer_norm=True)
    truth = naive_cosines(model, corpus, indices, exclude_final_layer_norm=True)
    assert without.num_parameters == exact.num_parameters - 2 * 32
    assert np.abs(without.matrix - truth).max() < 2e-6
    assert np.abs(without.matrix - exact.matrix).max() > 2e-5  # 64 of 25k parameters: a small but real change


def test_projected_approximates_exact(model, corpus, indices, exact):
    errors = []
    for k in (1024, 65536):
        projected = similarity_matrix(model, corpus, indices, method="projected", projection_dim=k, seed=3)
        assert projected.gradient_computations == len(indices)
        assert np.abs(np.diag(projected.matrix) - 1).max() < 1e-5
        errors.append(np.abs(projected.matrix - exact.matrix).max())
    assert errors[0] < 0.25 and errors[1] < 0.03 and errors[1] < errors[0]
    again = similarity_matrix(model, corpus, indices, method="projected", projection_dim=1024, seed=3)
    other = similarity_matrix(model, corpus, indices, method="projected", projection_dim=1024, seed=4)
    first = similarity_matrix(model, corpus, indices, method="projected", projection_dim=1024, seed=3)
    assert np.array_equal(again.matrix, first.matrix) and not np.array_equal(other.matrix, first.matrix)


def test_progress_and_bad_input(model, corpus, indices):
    seen = []
    similarity_matrix(model, corpus, indices[:3], progress=seen.append)
    assert seen[-1].gradients_done == seen[-1].gradients_total == 3
    with pytest.raises(ValueError, match="method"):
        similarity_matrix(model, corpus, indices, method="fast")
    with pytest.raises(IndexError):
        similarity_matrix(model, corpus, np.array([corpus.num_predictable]))
