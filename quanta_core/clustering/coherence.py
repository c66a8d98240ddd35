"""How similar a cluster's members are to each other, against random groups of the same size.

Coherence of a cluster (Gradient Atoms, arXiv 2603.14665: mean pairwise cosine of the members'
gradients), on the similarity the cluster was found in:

* dense road (``matrix`` ``[S, S]``): the mean cosine over the cluster's n(n − 1) ordered pairs of
  distinct members (the diagonal left out); NaN for a singleton;
* sparse road (``knn_indices`` / ``knn_cosines`` ``[S, k]``): the same mean over the n(n − 1) pairs,
  with the cosines of the kNN edges inside the cluster and 0 for pairs that are no edge (the sparse
  road's affinity treats them so too); on a complete graph it equals the dense coherence. (The mean
  over the inside edges alone does not tell a cluster from a random group: a kNN edge is a near
  neighbour either way — measured on planted clusters, z ≈ 0.)

The null: a random permutation of the labels splits the tokens into random groups of exactly the
clusters' sizes; ``null_groups`` permutations (seeded) give each cluster that many random groups
of its size, scored the same way. ``coherence_z = (coherence − mean) / std`` of those groups
(NaN where the null has < 2 finite values or no spread).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from quanta_core.presets import COHERENCE_NULL_GROUPS, STABILITY_RANDOM_STATE


def _check_labels(labels: np.ndarray, num_tokens: int) -> tuple[np.ndarray, int]:
    labels = np.asarray(labels).reshape(-1)
    if labels.size != num_tokens:
        raise ValueError(f"{labels.size} labels for a similarity of {num_tokens} tokens")
    if labels.dtype.kind not in "iu" or labels.min() < 0:
        raise ValueError("labels must be non-negative integers (cluster numbers)")
    return labels.astype(np.int64, copy=False), int(labels.max()) + 1


def dense_block_means(matrix: np.ndarray, labels: np.ndarray, num_clusters: int) -> np.ndarray:
    """Mean off-diagonal entry of ``matrix`` (``[S, S]``) inside each cluster of ``labels`` (int
    ``[S]``, values < ``num_clusters``): float64 ``[num_clusters]``, NaN for clusters of < 2 tokens."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(num_clusters + 1))
    diagonal = np.asarray(matrix.diagonal(), dtype=np.float64)
    out = np.full(num_clusters, np.nan)
    for c in range(num_clusters):
        members = order[bounds[c]:bounds[c + 1]]
        n = members.size
        if n >= 2:
            total = matrix[np.ix_(members, members)].sum(dtype=np.float64) - diagonal[members].sum()
            out[c] = total / (n * (n - 1))
    return out


def knn_pair_means(knn_indices: np.ndarray, knn_cosines: np.ndarray, labels: np.ndarray,
                   num_clusters: int) -> np.ndarray:
    """Mean cosine over each cluster's ordered pairs of distinct members, a pair's cosine taken from
    the kNN graph (``[S, k]`` indices / cosines; an edge in either direction counts for both) and 0
    where the pair is no edge: float64 ``[num_clusters]``, NaN for clusters of < 2 tokens. On a
    complete graph (k = S − 1) this is :func:`dense_block_means` of the matrix."""
    idx = np.asarray(knn_indices, dtype=np.int64)
    num_tokens = idx.shape[0]
    source = np.repeat(np.arange(num_tokens, dtype=np.int64), idx.shape[1])
    target = idx.reshape(-1)
    pair = np.minimum(source, target) * num_tokens + np.maximum(source, target)
    pair, first = np.unique(pair, return_index=True)  # each unordered edge once
    a, b = pair // num_tokens, pair % num_tokens
    inside = labels[a] == labels[b]
    cosines = np.asarray(knn_cosines, dtype=np.float64).reshape(-1)[first]
    sums = 2 * np.bincount(labels[a][inside], weights=cosines[inside], minlength=num_clusters)
    n = np.bincount(labels, minlength=num_clusters).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= 2, sums / (n * (n - 1)), np.nan)


def _scorer(similarity: Mapping[str, np.ndarray]):
    if "matrix" in similarity:
        matrix = np.asarray(similarity["matrix"])
        return matrix.shape[0], lambda lab, k: dense_block_means(matrix, lab, k)
    if "knn_indices" in similarity:
        idx, cos = similarity["knn_indices"], similarity["knn_cosines"]
        return idx.shape[0], lambda lab, k: knn_pair_means(idx, cos, lab, k)
    raise ValueError(f"similarity has neither matrix nor knn_indices (got {sorted(similarity)})")


def cluster_coherence(
    similarity: Mapping[str, np.ndarray],
    labels: np.ndarray,
    null_groups: int = COHERENCE_NULL_GROUPS,
    random_state: int = STABILITY_RANDOM_STATE,
) -> pd.DataFrame:
    """Coherence of each cluster and its z-score against random groups of the same size.

    ``similarity``: the stored arrays (``matrix`` float ``[S, S]`` or ``knn_indices`` +
    ``knn_cosines`` ``[S, k]``). ``labels``: cluster numbers, int ``[S]``. Returns one row per
    cluster number 0…K−1: ``cluster``, ``size``, ``coherence`` (mean cosine, see the module),
    ``null_coherence`` and ``null_std`` (mean and standard deviation over ``null_groups`` random
    groups of that size), ``coherence_z``. Deterministic for a given ``random_state``.
    """
    num_tokens, score = _scorer(similarity)
    labels, k = _check_labels(labels, num_tokens)
    if null_groups < 2:
        raise ValueError(f"null_groups must be ≥ 2, got {null_groups}")
    observed = score(labels, k)
    rng = np.random.default_rng(random_state)
    null = np.stack([score(labels[rng.permutation(num_tokens)], k) for _ in range(int(null_groups))])
    finite = np.isfinite(null).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite >= 2, np.nansum(null, axis=0) / np.maximum(finite, 1), np.nan)
        std = np.sqrt(np.where(finite >= 2, np.nansum((null - mean) ** 2, axis=0) / np.maximum(finite - 1, 1), np.nan))
        z = np.where(std > 0, (observed - mean) / std, np.nan)
    return pd.DataFrame({"cluster": np.arange(k), "size": np.bincount(labels, minlength=k),
                         "coherence": observed, "null_coherence": mean, "null_std": std, "coherence_z": z})
