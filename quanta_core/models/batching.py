"""Length bucketing: cut a sequence of variable-length items (documents, contexts) into batches
for padded forward passes. The one batcher of the project (losses, similarity, demo training)."""

from __future__ import annotations

import numpy as np


def length_batches(
    order: np.ndarray,
    lengths: np.ndarray,
    *,
    max_tokens: int,
    max_items: int | None = None,
    max_padding: float | None = None,
) -> list[np.ndarray]:
    """Consecutive runs of ``order`` (item indices, in the order they are to be batched).

    ``lengths``: tokens per item, indexed by item. A run takes the next item while it has fewer
    than ``max_items`` items, its padded size (items × longest length) stays ≤ ``max_tokens``,
    and, with ``max_padding``, every item in it is at least ``(1 − max_padding)`` × the longest
    (no item padded by more than that share). An item alone always makes a run, however long.
    Returns int64 arrays that together hold ``order`` once, in order.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    order = np.asarray(order, dtype=np.int64)
    sizes = np.asarray(lengths, dtype=np.int64)[order]
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        end, longest, shortest = start + 1, int(sizes[start]), int(sizes[start])
        while end < len(order) and (max_items is None or end - start < max_items):
            n = int(sizes[end])
            hi, lo = max(longest, n), min(shortest, n)
            if hi * (end - start + 1) > max_tokens:
                break
            if max_padding is not None and lo < (1 - max_padding) * hi:
                break
            longest, shortest, end = hi, lo, end + 1
        batches.append(order[start:end])
        start = end
    return batches
