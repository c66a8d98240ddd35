"""Synthetic QDG-like data for the clustering and report benchmarks (and tests).

``planted_similarity(S, K)``: unit vectors around K centres whose sizes follow a Zipf law (like
the paper's clusters), their cosine matrix float32 ``[S, S]`` and the planted labels.
"""

from __future__ import annotations

import numpy as np


def zipf_sizes(num_samples: int, num_clusters: int, exponent: float = 1.2) -> np.ndarray:
    """Cluster sizes ∝ rank^−exponent, each ≥ 1, summing to ``num_samples`` (int64 ``[K]``)."""
    weights = np.arange(1, num_clusters + 1, dtype=np.float64) ** -exponent
    sizes = np.maximum(1, np.floor(weights / weights.sum() * num_samples)).astype(np.int64)
    sizes[0] += num_samples - sizes.sum()
    return sizes


def planted_similarity(num_samples: int, num_clusters: int, dim: int = 64, noise: float = 0.6,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(cosine matrix float32 ``[S, S]``, planted labels int64 ``[S]``, shuffled order)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(num_clusters), zipf_sizes(num_samples, num_clusters)))
    centres = rng.normal(size=(num_clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[labels] + noise / np.sqrt(dim) * rng.normal(size=(num_samples, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return (x @ x.T).astype(np.float32), labels
