"""Synthetic loss trajectories with known sigmoid parameters, for the learning-time tests.

The curve is written here independently of :mod:`quanta_core.learning.fit` (exp form, not tanh)."""

import numpy as np

from quanta_core.steps import PYTHIA_STEPS, step_number

PYTHIA_X = np.log10(np.array([step_number(s) for s in PYTHIA_STEPS], dtype=np.float64) + 1.0)


def sigmoid(x, final, drop, mid, width):
    """final + drop / (1 + exp((x − mid) / width)), broadcasting."""
    return final + drop / (1.0 + np.exp(np.clip((x - mid) / width, -500, 500)))


def trajectories(x, n, seed, noise=0.0, mid=(0.8, 4.5), width=(0.05, 0.6), drop=(2.0, 8.0), final=(0.0, 3.0)):
    """``(params, y)``: parameters ``final``, ``drop``, ``mid``, ``width`` ``[n]`` drawn uniformly (width
    log-uniformly) from the ranges, and losses ``y`` ``[T, n]`` at ``x`` with Gaussian noise (nats)."""
    rng = np.random.default_rng(seed)
    p = {
        "final": rng.uniform(*final, n),
        "drop": rng.uniform(*drop, n),
        "mid": rng.uniform(*mid, n),
        "width": np.exp(rng.uniform(np.log(width[0]), np.log(width[1]), n)),
    }
    y = sigmoid(np.asarray(x)[:, None], p["final"], p["drop"], p["mid"], p["width"])
    if noise:
        y = y + rng.normal(0.0, noise, y.shape)
    return p, y
