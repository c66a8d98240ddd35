"""Accuracy of QDG similarity against the float64 truth (the same model and tokens run wholly in
float64) on a small GPT-NeoX overfit until the selected tokens' losses are below 0.01 nats: the
regime where float32's softmax − onehot loses the gradient's direction."""

import numpy as np
import pytest
import torch

from quanta_core.similarity import similarity_matrix

from support.truth import float64_truth, low_loss_gptneox


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Deterministic, and fast for this size (no oversubscription on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def low_loss(one_thread):
    model, corpus, losses = low_loss_gptneox()
    below = np.flatnonzero(losses < 0.01)
    indices = np.sort(np.random.default_rng(1).choice(below, 16, replace=False)).astype(np.int64)
    return model, corpus, losses, indices


@pytest.fixture(scope="module")
def truth(low_loss):
    model, corpus, _, indices = low_loss
    return float64_truth(model, corpus, indices)


def test_the_model_is_in_the_low_loss_regime(low_loss):
    model, corpus, losses, indices = low_loss
    assert losses.shape == (corpus.num_predictable,)
    assert losses[indices].max() < 0.01 and losses[indices].min() > 1e-5
    # the losses are the model's own: recompute one token's through the canonical index
    doc, pos = 2, 40
    g = int(corpus.starts[doc] + pos - 1)
    ids = torch.from_numpy(corpus.document(doc).astype(np.int64))[None]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, pos - 1].double()
    assert abs(float(torch.nn.functional.cross_entropy(logits[None], ids[0, pos : pos + 1])) - losses[g]) < 1e-6


def test_exact_within_1e5_of_float64_truth_where_the_original_is_not(low_loss, truth):
    model, corpus, _, indices = low_loss
    assert np.abs(truth - np.eye(len(indices))).max() > 0.05  # not all ~0: swapped rows would show
    ours = similarity_matrix(model, corpus, indices)
    original = similarity_matrix(model, corpus, indices, method="reference")
    ours_error = np.abs(ours.matrix - truth).max()
    original_error = np.abs(original.matrix - truth).max()
    assert ours_error < 1e-5
    assert original_error > 1e-5  # float32 softmax − onehot: the regime this test is about
    assert ours_error < original_error / 10


def test_streamed_float16_and_float32_blocks_within_1e5_of_truth(low_loss, truth):
    from quanta_core.similarity import budget_for_resident

    model, corpus, _, indices = low_loss
    p = similarity_matrix(model, corpus, indices[:1]).num_parameters
    for dtype in ("float32", "float16"):
        budget = budget_for_resident(len(indices), p, 6, dtype, max_batch=4)
        run = similarity_matrix(model, corpus, indices, memory_budget_bytes=budget, resident_dtype=dtype, max_batch=4)
        assert run.blocks == 3
        assert np.abs(run.matrix - truth).max() < (1e-5 if dtype == "float32" else 2e-5)  # measured 4e-7, 4e-6


def test_projected_within_1e5_of_its_float64_truth(low_loss, truth):
    model, corpus, _, indices = low_loss
    sketched = float64_truth(model, corpus, indices, projection_dim=4096, seed=5)
    ours = similarity_matrix(model, corpus, indices, method="projected", projection_dim=4096, seed=5)
    assert np.abs(ours.matrix - sketched).max() < 1e-5
    # the sketch itself is an approximation of the exact cosines, much coarser than 1e-5
    assert np.abs(sketched - truth).max() > 1e-3
