"""The paper's second matrix, C_abs = |G||G|ᵀ: the cosines of the element-wise absolute per-token
gradients, against float64 autograd (|g| of each float64 gradient, normalized, dotted)."""

import numpy as np
import pytest
import torch

from quanta_core.similarity import similarity_matrix

from support.truth import cosines, float64_gradients, low_loss_gptneox


@pytest.fixture(scope="module")
def model_and_tokens():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, corpus, losses = low_loss_gptneox(steps=20)
    indices = np.sort(np.random.default_rng(2).choice(corpus.num_predictable, 12, replace=False)).astype(np.int64)
    yield model, corpus, indices, float64_gradients(model, corpus, indices)
    torch.set_num_threads(threads)


def test_exact_absolute_matches_float64(model_and_tokens):
    model, corpus, indices, g64 = model_and_tokens
    got = similarity_matrix(model, corpus, indices, absolute_gradients=True).matrix
    truth = cosines(g64.abs())
    assert np.abs(got - truth).max() < 1e-5
    signed = cosines(g64)
    assert np.abs(got - signed).max() > 0.05  # the two matrices differ: the flag is not ignored
    assert (got > -1e-6).all()  # cosines of non-negative vectors


def test_projected_absolute_matches_the_sketch_of_float64(model_and_tokens):
    from quanta_core.similarity.projected import countsketch, sketch

    model, corpus, indices, g64 = model_and_tokens
    got = similarity_matrix(model, corpus, indices, method="projected", projection_dim=256, seed=3,
                            absolute_gradients=True).matrix
    buckets, signs = countsketch(g64.shape[1], 256, 3, g64.device)
    truth = cosines(sketch(g64.abs(), buckets, signs.double(), 256))
    assert np.abs(got - truth).max() < 1e-5


def test_the_reference_method_refuses_absolute(model_and_tokens):
    model, corpus, indices, _ = model_and_tokens
    with pytest.raises(ValueError, match="absolute_gradients need method 'exact' or 'projected'"):
        similarity_matrix(model, corpus, indices, method="reference", absolute_gradients=True)
