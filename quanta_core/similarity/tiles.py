"""Rows kept for a Gram (float32, or float16 scaled by a power of two per row) and their Gram in
square tiles of the upper triangle, each tile's cosines handed to a sink (:class:`.exact.BlockSink`)
— so a sink like :class:`quanta_core.similarity.knn.KnnSink` never needs an ``[S, S]`` array.

Every stored row keeps the L2 norm of its *stored* values (float64), and a tile's products are
divided by those norms (:func:`.gram.cosines`): float16 rows scaled as in :func:`.gram.to_fp16_`
are normalized directions up to a power of two, and only their rounding (~2⁻¹¹ relative per
element, ~1e-4 on a cosine) remains.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from quanta_core.similarity.gram import cosines, gram, row_sq_norms, to_fp16_

TILE_ROWS = {"cpu": 2048, "cuda": 8192}
"""Rows per tile side by device type: a tile's float64 products are ``8·t²`` bytes."""


class StoredRows:
    """``[S, dim]`` rows on ``device`` in ``dtype`` (``float32`` | ``float16``) and their norms."""

    def __init__(self, num_rows: int, dim: int, dtype: str, device: torch.device):
        if dtype not in ("float32", "float16"):
            raise ValueError(f"stored row dtype must be float32 or float16, got {dtype!r}")
        self.dtype = dtype
        self.rows = torch.empty(num_rows, dim, dtype=getattr(torch, dtype), device=device)
        self.norms = torch.zeros(num_rows, dtype=torch.float64, device=device)

    def put(self, positions: torch.Tensor, values: torch.Tensor) -> None:
        """Store float32 ``values`` ``[n, dim]`` (overwritten: scratch) as rows ``positions`` (int64 ``[n]``)."""
        if self.dtype == "float16":
            half = torch.empty(values.shape, dtype=torch.float16, device=values.device)
            norms = torch.empty(values.shape[0], dtype=torch.float64, device=values.device)
            to_fp16_(values, half, norms)
            self.rows[positions], self.norms[positions] = half, norms
        else:
            self.rows[positions] = values
            self.norms[positions] = row_sq_norms(values).sqrt()

    @staticmethod
    def bytes_needed(num_rows: int, dim: int, dtype: str) -> int:
        return int(num_rows) * (int(dim) * (2 if dtype == "float16" else 4) + 8)


def tile_bytes(tile: int, dim: int) -> int:
    """Working memory of one tile: float64 products and cosines, float32 copies of both row blocks,
    the sink's int64 keys of the block and of its transpose."""
    return int(tile) * int(tile) * 8 * 4 + 2 * int(tile) * min(int(dim), 1 << 13) * 4


def gram_into_sink(stored: StoredRows, sink, *, tile: int | None = None, mode: str = "ieee",
                   progress: Callable[[int, int], None] | None = None) -> int:
    """Cosines of all pairs of stored rows, tile by tile of the upper triangle, into ``sink``
    (diagonal tiles with ``rows is cols``). ``progress(tiles_done, tiles_total)`` after each tile.
    Returns the number of rows whose stored norm is 0 (cosine 0 with everything)."""
    s = stored.rows.shape[0]
    tile = int(tile or TILE_ROWS.get(stored.rows.device.type, 2048))
    positions = np.arange(s, dtype=np.int64)
    spans = [(a, min(a + tile, s)) for a in range(0, s, tile)]
    total, done = len(spans) * (len(spans) + 1) // 2, 0
    rows, norms = stored.rows, stored.norms
    for i, (a, b) in enumerate(spans):
        mine = positions[a:b]
        for c, d in spans[i:]:
            if c == a:  # one product (the symmetric tiling of gram(a) is slow on the CPU), then symmetrized
                square = gram(rows[a:b], rows[a:b], mode=mode)
                block = cosines((square + square.T) / 2, norms[a:b], norms[a:b])
                sink.add(mine, mine, block)
            else:
                block = cosines(gram(rows[a:b], rows[c:d], mode=mode), norms[a:b], norms[c:d])
                sink.add(mine, positions[c:d], block)
            del block
            done += 1
            if progress is not None:
                progress(done, total)
    return int((norms == 0).sum())
