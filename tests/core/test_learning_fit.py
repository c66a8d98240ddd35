"""The vectorized sigmoid fit against scipy.optimize.curve_fit and known parameters."""

import warnings

import numpy as np
import pytest
from scipy.optimize import OptimizeWarning, curve_fit

from quanta_core.learning import fit as lf

from support.learning_synthetic import PYTHIA_X, sigmoid, trajectories

X = PYTHIA_X


def _curve_fit(y, p0, bounds):
    """scipy's bounded least squares (trust-region reflective) for one trajectory: (params, SSE)."""
    lo = [-np.inf, -np.inf, bounds.x_min, bounds.min_width]
    hi = [np.inf, np.inf, bounds.x_max, bounds.max_width]
    p0 = np.clip(p0, np.nextafter(lo, 1), np.nextafter(hi, -1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        params, _ = curve_fit(sigmoid, X, y, p0=p0, bounds=(lo, hi), maxfev=20_000)
    return params, float(((y - sigmoid(X, *params)) ** 2).sum())


def test_clean_trajectories_recover_their_parameters():
    truth, y = trajectories(X, 400, seed=1)
    fit = lf.fit_sigmoids(y, X)
    assert np.abs(fit["midpoint"] - truth["mid"]).max() < 1e-6  # decades
    assert np.abs(fit["width"] / truth["width"] - 1).max() < 1e-5
    assert np.abs(fit["final"] - truth["final"]).max() < 1e-6
    assert np.abs(fit["drop"] - truth["drop"]).max() < 1e-6
    assert fit["rms"].max() < 1e-6 and fit["r2"].min() > 1 - 1e-9
    assert (fit["flags"] == 0).all()


def test_noisy_fit_reaches_curve_fits_optimum():
    """0.3-nat noise: curve_fit started at the true parameters (an oracle start) and from a generic
    start; ours must be at least as good (relative SSE 1e-5) and at the same optimum."""
    truth, y = trajectories(X, 150, seed=2, noise=0.3)
    fit = lf.fit_sigmoids(y, X)
    bounds = lf.bounds_for(X, lf.FitSettings())
    oracle, generic = [], []
    for i in range(y.shape[1]):
        start = [truth["final"][i], truth["drop"][i], truth["mid"][i], truth["width"][i]]
        oracle.append(_curve_fit(y[:, i], start, bounds))
        generic.append(_curve_fit(y[:, i], [y[-1, i], y[0, i] - y[-1, i], X.mean(), 0.3], bounds))
    best = np.minimum([s for _, s in oracle], [s for _, s in generic])
    assert (fit["sse"] <= best * (1 + 1e-5)).all()
    params = np.array([p for p, _ in oracle])
    same = fit["sse"] <= np.array([s for _, s in oracle]) * (1 + 1e-6)
    assert same.mean() > 0.97
    assert np.quantile(np.abs(fit["midpoint"] - params[:, 2])[same], 0.9) < 1e-3
    assert np.quantile(np.abs(fit["final"] - params[:, 0])[same], 0.9) < 1e-3
    # and the learning times are recovered: median error 0.05 decades at this noise
    assert np.median(np.abs(fit["midpoint"] - truth["mid"])) < 0.05
    # the reported goodness of fit is the residual itself
    residual = y - lf.sigmoid_curves(X, fit)
    assert np.allclose(fit["sse"], (residual**2).sum(axis=0))
    assert np.allclose(fit["rms"], np.sqrt((residual**2).mean(axis=0)))
    assert np.allclose(np.median(fit["rms"]), 0.3, rtol=0.1)


def test_sharp_steps_between_sparse_checkpoints_are_not_left_stuck():
    """A transition between two checkpoints 0.3 decades apart (steps 1000–2000): a step function fits
    almost as well; the second start must still find the exact smooth curve."""
    y = sigmoid(X[:, None], 1.0, 5.0, np.array([3.18, 2.08, 1.20]), np.array([0.067, 0.065, 0.055]))
    fit = lf.fit_sigmoids(y, X)
    assert fit["rms"].max() < 1e-6
    assert np.allclose(fit["midpoint"], [3.18, 2.08, 1.20], atol=1e-6)


def test_flags_follow_the_documented_rule():
    rng = np.random.default_rng(3)
    flat = 5.0 + rng.normal(0, 0.05, len(X))  # never learned
    rising = sigmoid(X, 6.0, -3.0, 3.0, 0.2) + rng.normal(0, 0.05, len(X))
    noisy = sigmoid(X, 2.0, 1.0, 3.0, 0.2) + rng.normal(0, 1.0, len(X))
    late = sigmoid(X, 1.0, 4.0, X[-1] + 1.0, 0.2)  # still to be learned after the last checkpoint
    good = sigmoid(X, 1.0, 4.0, 3.5, 0.2) + rng.normal(0, 0.05, len(X))
    fit = lf.fit_sigmoids(np.stack([flat, rising, noisy, late, good], axis=1), X)
    flags = fit["flags"]
    assert flags[0] & lf.NO_DROP and not flags[0] & lf.RISES
    assert flags[1] & lf.RISES and fit["drop"][1] < 0 and abs(fit["midpoint"][1] - 3.0) < 0.05
    assert flags[2] & lf.NOISY and fit["r2"][2] < 0.5
    assert flags[3] & lf.EDGE
    assert flags[4] == 0
    # the rule, recomputed from its definition
    settings, bounds = lf.FitSettings(), lf.bounds_for(X, lf.FitSettings())
    margin = 0.01 * (bounds.x_max - bounds.x_min)
    expected = ((np.abs(fit["drop"]) < settings.min_drop_nats) * lf.NO_DROP
                | (fit["drop"] <= -settings.min_drop_nats) * lf.RISES
                | (fit["r2"] < settings.min_r2) * lf.NOISY
                | ((fit["midpoint"] <= bounds.x_min + margin) | (fit["midpoint"] >= bounds.x_max - margin)) * lf.EDGE)
    assert (flags == expected).all()


def test_constant_trajectory_is_flagged_not_nan():
    fit = lf.fit_sigmoids(np.full((len(X), 2), 3.0), X)
    assert all(np.isfinite(v).all() for v in fit.values())
    assert (fit["flags"] & lf.NO_DROP).all() and (fit["r2"] == 0).all()


def test_too_few_points_are_underdetermined():
    x = X[[0, 3, 6, 9, 12]]
    fit = lf.fit_sigmoids(sigmoid(x[:, None], 1.0, 4.0, np.array([1.0, 2.0]), 0.3), x)
    assert (fit["flags"] & lf.UNDERDETERMINED).all()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="strictly increasing"):
        lf.fit_sigmoids(np.zeros((3, 2)), np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="non-finite"):
        lf.fit_sigmoids(np.array([[1.0], [np.nan], [0.0]]), np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="positions"):
        lf.fit_sigmoids(np.zeros((4, 2)), np.array([0.0, 1.0, 2.0]))
