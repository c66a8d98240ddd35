"""The learning-time spectrum and its reconstruction of the mean loss curve, on synthetic tokens."""

import numpy as np
import pytest

from quanta_core.learning.spectrum import checkpoint_edges, learning_time_spectrum, relative_error
from quanta_core.learning.times import fit_learning_times
from quanta_core.steps import PYTHIA_STEPS

from support.learning_synthetic import PYTHIA_X, trajectories


def _fits(y):
    return fit_learning_times({s: y[t].astype(np.float32) for t, s in enumerate(PYTHIA_STEPS)})


def test_exact_sigmoids_reconstruct_the_mean_loss_derivative():
    truth, y = trajectories(PYTHIA_X, 6000, seed=5, noise=0.02)
    fits = _fits(y)
    spectrum = learning_time_spectrum(fits, bins=20)
    bins, summary = spectrum.bins, spectrum.summary
    edges = np.concatenate([bins["x_lo"], bins["x_hi"][-1:]])
    assert set(edges) <= set(PYTHIA_X) and edges[0] == PYTHIA_X[0] and edges[-1] == PYTHIA_X[-1]
    # measured: the mean of the tables at the edges, recomputed naively
    at = np.searchsorted(PYTHIA_X, edges)
    mean = y.astype(np.float32).astype(np.float64).mean(axis=1)[at]
    assert np.allclose(bins["measured"], -np.diff(mean) / np.diff(edges), rtol=1e-9)
    # the spectrum: well-fit tokens by learning time, counted naively
    well = fits.columns["flags"] == 0
    mids = fits.columns["midpoint_x"][well]
    naive = [((mids >= a) & ((mids < b) | (b == edges[-1]))).sum() for a, b in zip(edges[:-1], edges[1:])]
    assert list(bins["tokens"]) == naive and sum(naive) == well.sum()
    # ≈ every token is well fit, so the spectrum accounts for the whole decrease
    assert summary["reconstruction_error"] < 0.02
    assert summary["fitted_all_error"] < 0.02
    assert abs(summary["explained_fraction"] - 1) < 0.02
    # and the truth itself gives the same rates: the per-bin drop of the true sigmoids
    true_mass = [(truth["drop"] / (1 + np.exp((e - truth["mid"]) / truth["width"]))).sum() / 6000 for e in edges]
    assert relative_error(bins["measured"].to_numpy(), -np.diff(true_mass) / np.diff(edges), np.diff(edges)) < 0.02


def test_flagged_tokens_are_missing_from_the_reconstruction():
    """A third of the tokens are too noisy to fit: they still lower the mean loss, the spectrum does
    not have them, and the error and explained fraction say so."""
    _, good = trajectories(PYTHIA_X, 4000, seed=6, noise=0.02)
    _, noisy = trajectories(PYTHIA_X, 2000, seed=7, noise=4.0, drop=(2.0, 3.0))
    fits = _fits(np.concatenate([good, noisy], axis=1))
    summary = learning_time_spectrum(fits).summary
    flagged = (fits.columns["flags"][4000:] != 0).mean()
    assert flagged > 0.9
    good_drop, noisy_drop = good[0].sum() - good[-1].sum(), noisy[0].sum() - noisy[-1].sum()
    expected = good_drop / (good_drop + noisy_drop)  # the well-fit tokens' share of the mean loss decrease
    assert summary["explained_fraction"] == pytest.approx(expected, abs=0.01)
    assert summary["reconstruction_error"] > 0.2
    assert summary["fitted_all_error"] < summary["reconstruction_error"]


def test_checkpoint_edges_and_error_definition():
    x = np.log10(np.array([0, 1, 2, 4, 8, 16, 1000, 2000, 3000]) + 1.0)
    edges = checkpoint_edges(x, 4)
    assert edges[0] == x[0] and edges[-1] == x[-1] and np.all(np.diff(edges) > 0) and set(edges) <= set(x)
    d, dx = np.array([1.0, 2.0]), np.array([1.0, 3.0])
    assert relative_error(d, d, dx) == 0.0
    assert relative_error(d, np.zeros(2), dx) == pytest.approx(1.0)
    assert relative_error(d, np.array([1.0, 1.0]), dx) == pytest.approx(np.sqrt(3.0 / 13.0))
