"""Each token's k most similar tokens, kept while the similarity Gram streams by in blocks.

The kNN format (what the sparse road stores and clusters):

* ``knn_indices`` int64 ``[S, k]``: row i holds the positions (0 … S − 1, in the selection's order,
  like the rows of the dense matrix) of the k tokens most similar to token i, **excluding i
  itself**, most similar first; equal cosines are ordered by the lower position first.
* ``knn_cosines`` float32 ``[S, k]``: the cosine similarity of i with each of them (non-increasing
  along the row).

:class:`TopK` builds these from blocks ``C[rows, cols]`` of the cosine matrix that arrive in any
order, in memory O(S·k): each (cosine, column) pair is packed into one int64 *key* whose order is
(cosine at float32 precision, then lower column first), so "the k largest keys" is a unique,
deterministic set and needs no sort of the whole row. Blocks may be numpy arrays or torch tensors
(then the per-block selection runs on the tensor's device and only k keys per row come back).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_EMPTY = np.iinfo(np.int64).min  # key of an empty slot (and of excluded entries)
_LOW = np.int64(0xFFFFFFFF)
MAX_COLUMNS = 2**32 - 1


def _keys(values: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """int64 keys ``[r, c]`` ordered by (float32 value, then lower column) — larger is better."""
    v = np.ascontiguousarray(values, dtype=np.float32) + np.float32(0)  # −0.0 → +0.0
    bits = v.view(np.int32).astype(np.int64)
    bits = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # monotone in the float's value
    return (bits << 32) | (_LOW - cols.astype(np.int64))


def decode_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(columns int64, cosines float32) of keys made by :class:`TopK`; empty slots give column −1."""
    keys = np.asarray(keys, dtype=np.int64)
    cols = _LOW - (keys & _LOW)
    bits = keys >> 32
    bits = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits).astype(np.int32)
    cosines = bits.view(np.float32).copy()
    empty = keys == _EMPTY
    cols[empty], cosines[empty] = -1, np.nan
    return cols, cosines


def _top_keys_numpy(keys: np.ndarray, k: int) -> np.ndarray:
    if keys.shape[1] <= k:
        return keys
    return np.partition(keys, keys.shape[1] - k, axis=1)[:, -k:]


def _top_keys_torch(block: Any, rows: np.ndarray, cols: np.ndarray, k: int, exclude_self: bool) -> np.ndarray:
    import torch

    device = block.device
    v = block.detach().to(torch.float32).contiguous() + 0.0
    if not bool(torch.isfinite(v).all()):
        bad = torch.nonzero(~torch.isfinite(v))[0].tolist()
        raise ValueError(f"block has a non-finite cosine at row {rows[bad[0]]}, column {cols[bad[1]]}")
    bits = v.view(torch.int32).to(torch.int64)
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    c = torch.as_tensor(cols, device=device)
    keys = (bits << 32) | (int(_LOW) - c)[None, :]
    if exclude_self:
        keys[torch.as_tensor(rows, device=device)[:, None] == c[None, :]] = int(_EMPTY)
    if keys.shape[1] > k:
        keys = torch.topk(keys, k, dim=1, sorted=False).values
    return keys.cpu().numpy()


class TopK:
    """Streaming top-k of each row of an ``[S, S]`` cosine matrix given block by block.

    ``add(block, rows, cols)``: ``block`` float ``[len(rows), len(cols)]`` = C[rows][:, cols]
    (global positions, int, unique within the block). Every (row, column) pair must arrive exactly
    once over all blocks (``result()`` checks the counts). ``exclude_self``: the diagonal is never
    a neighbour (the stored format). Memory: one int64 per kept neighbour (8·S·k bytes).
    """

    def __init__(self, num_rows: int, k: int, *, exclude_self: bool = True):
        if int(num_rows) != num_rows or num_rows < 1 or num_rows > MAX_COLUMNS:
            raise ValueError(f"num_rows must be an integer in 1…{MAX_COLUMNS:,}, got {num_rows!r}")
        limit = num_rows - 1 if exclude_self else num_rows
        if int(k) != k or not 1 <= k <= limit:
            raise ValueError(f"k must be an integer in 1…{limit} for {num_rows} rows"
                             f"{' (excluding each row itself)' if exclude_self else ''}, got {k!r}")
        self.num_rows, self.k, self.exclude_self = int(num_rows), int(k), exclude_self
        self.keys = np.full((self.num_rows, self.k), _EMPTY, dtype=np.int64)
        self.seen = np.zeros(self.num_rows, dtype=np.int64)

    def _positions(self, positions: Any, what: str, length: int) -> np.ndarray:
        p = np.asarray(positions)
        if p.ndim != 1 or p.shape[0] != length:
            raise ValueError(f"{what} must be 1-D of length {length} (the block's {what}), got shape {p.shape}")
        if p.size and (p.dtype.kind not in "iu" or p.min() < 0 or p.max() >= self.num_rows):
            raise ValueError(f"{what} must be integer positions in 0…{self.num_rows - 1}")
        if np.unique(p).size != p.size:
            raise ValueError(f"{what} of one block must be unique")
        return p.astype(np.int64)

    def add(self, block: Any, rows: Any, cols: Any) -> None:
        """Take block ``C[rows][:, cols]`` into each row's running top-k."""
        if getattr(block, "ndim", None) != 2:
            raise ValueError(f"block must be 2-D [rows, cols], got shape {getattr(block, 'shape', None)}")
        r, c = block.shape
        rows, cols = self._positions(rows, "rows", r), self._positions(cols, "cols", c)
        if type(block).__module__.startswith("torch"):
            candidates = _top_keys_torch(block, rows, cols, self.k, self.exclude_self)
        else:
            values = np.asarray(block)
            if not np.isfinite(values).all():
                i, j = np.argwhere(~np.isfinite(values))[0]
                raise ValueError(f"block has a non-finite cosine at row {rows[i]}, column {cols[j]}")
            keys = _keys(values, cols)
            if self.exclude_self:
                keys[rows[:, None] == cols[None, :]] = _EMPTY
            candidates = _top_keys_numpy(keys, self.k)
        merged = np.concatenate([self.keys[rows], candidates], axis=1)
        self.keys[rows] = _top_keys_numpy(merged, self.k)
        self.seen[rows] += c - (np.isin(rows, cols) if self.exclude_self else 0)

    def add_pair(self, block: Any, rows: Any, cols: Any) -> None:
        """Take ``C[rows][:, cols]`` and, when rows and cols are disjoint, its transpose for
        ``C[cols][:, rows]`` too (C is symmetric: an upper-triangle block loop then covers all).
        A block on the diagonal (rows == cols) is taken once."""
        self.add(block, rows, cols)
        r, c = np.asarray(rows), np.asarray(cols)
        if np.array_equal(r, c):
            return
        if np.intersect1d(r, c).size:
            raise ValueError("add_pair: rows and cols must be equal (a diagonal block) or disjoint")
        self.add(block.T, cols, rows)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(``knn_indices`` int64 ``[S, k]``, ``knn_cosines`` float32 ``[S, k]``), most similar
        first. Raises if some row has not seen every column exactly once."""
        expected = self.num_rows - (1 if self.exclude_self else 0)
        wrong = np.flatnonzero(self.seen != expected)
        if wrong.size:
            i = int(wrong[0])
            raise ValueError(f"{wrong.size:,} rows have not seen every column exactly once: row {i} saw "
                             f"{int(self.seen[i]):,} entries, expected {expected:,} (a block missing or given twice)")
        keys = np.sort(self.keys, axis=1)[:, ::-1]
        cols, cosines = decode_keys(keys)
        return np.ascontiguousarray(cols), np.ascontiguousarray(cosines)


def knn_from_dense(similarity: np.ndarray, k: int, *, block_rows: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """``(knn_indices, knn_cosines)`` of a dense cosine matrix ``[S, S]`` (the stored format:
    self excluded, most similar first, ties by lower position), via :class:`TopK` row block by
    row block."""
    C = np.asarray(similarity)
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"similarity matrix must be square [S, S], got shape {C.shape}")
    top = TopK(C.shape[0], k)
    cols = np.arange(C.shape[0])
    for start in range(0, C.shape[0], block_rows):
        rows = cols[start:start + block_rows]
        top.add(C[rows], rows, cols)
    return top.result()


def check_knn(knn_indices: np.ndarray, knn_cosines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate the stored kNN format (shapes, dtypes, ranges, no self, no repeats, finite
    cosines); returns the arrays as int64 / float32. Raises ``ValueError`` naming the fault."""
    idx, cos = np.asarray(knn_indices), np.asarray(knn_cosines)
    if idx.ndim != 2 or idx.shape != cos.shape:
        raise ValueError(f"knn_indices {idx.shape} and knn_cosines {cos.shape} must both be [S, k]")
    S, k = idx.shape
    if idx.dtype.kind not in "iu":
        raise ValueError(f"knn_indices must be integers, got {idx.dtype}")
    if S < 2 or not 1 <= k < S:
        raise ValueError(f"need S ≥ 2 tokens and 1 ≤ k < S neighbours, got S = {S}, k = {k}")
    if idx.min() < 0 or idx.max() >= S:
        raise ValueError(f"knn_indices must be positions in 0…{S - 1}, got {idx.min()}…{idx.max()}")
    own = np.flatnonzero((idx == np.arange(S)[:, None]).any(axis=1))
    if own.size:
        raise ValueError(f"knn_indices must exclude each token itself; row {own[0]} contains {own[0]}")
    ordered = np.sort(idx, axis=1)
    repeated = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
    if repeated.size:
        raise ValueError(f"knn_indices must list each neighbour once per row; row {repeated[0]} repeats one")
    if not np.isfinite(cos).all():
        raise ValueError(f"knn_cosines has non-finite values, first in row {np.argwhere(~np.isfinite(cos))[0][0]}")
    return idx.astype(np.int64, copy=False), cos.astype(np.float32, copy=False)


class KnnSink:
    """A Gram block sink (``quanta_core.similarity.BlockSink``) that keeps each row's ``k`` most
    similar other tokens instead of the ``[S, S]`` matrix: ``add(rows, cols, block)`` takes a
    diagonal block (``rows`` equal to ``cols``) once and an off-diagonal one for both halves;
    ``finish()`` returns ``(knn_indices int64 [S, k], knn_cosines float32 [S, k])``."""

    def __init__(self, num_tokens: int, k: int):
        self.top = TopK(num_tokens, k)

    def add(self, rows: np.ndarray, cols: np.ndarray, block: Any) -> None:
        self.top.add_pair(block, rows, cols)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        return self.top.result()

    @staticmethod
    def bytes_needed(num_tokens: int, k: int) -> int:
        """Bytes the sink holds: the running keys and counts, and the result (8 + 8 + 12 bytes per entry)."""
        return int(num_tokens) * (int(k) * 20 + 8)
