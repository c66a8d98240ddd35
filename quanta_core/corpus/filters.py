"""Induction filters: flags for predictable tokens that plain copying from earlier in the document
could predict (docs/design.md, from the original's ``evaluate_pile_present_*_filter.py``).

* **present trigram** (the paper's filter): the token at position i ≥ 2 of a document is flagged
  when the trigram ``(t[i−2], t[i−1], t[i])`` already occurred earlier in the same document
  (ending at some position j < i; occurrences may overlap, e.g. ``a a a a`` flags position 3).
  Position 1 (the first predictable token) has no trigram and is never flagged.
* **present bigram**: the token at position i ≥ 1 is flagged when ``(t[i−1], t[i])`` already
  occurred earlier in the same document. Position 1 holds the document's first bigram, so nothing
  can precede it: the "first predictable token is never flagged" rule holds without a special case
  (the original's bigram script starts at i = 1 with an empty table, giving the same result).

Both return bool ``[G]`` aligned to the canonical index (entry g is the flag of the target token
of g). Vectorized: each (document, n-gram) is packed into one uint64 key (document index local to a
chunk of < 65,536 documents in 16 bits, each token id in 16 bits); a stable argsort puts equal
keys next to each other in position order, and every occurrence after the first is flagged.
Documents are processed in chunks (``chunk_tokens``) to bound memory on the ~100M-token Pile run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from quanta_core.corpus.canonical import CanonicalCorpus

MAX_CHUNK_DOCUMENTS = 1 << 16
"""Documents per chunk: the chunk-local document index takes the top 16 bits of a key."""

DEFAULT_CHUNK_TOKENS = 1 << 24


def _chunks(offsets: np.ndarray, chunk_tokens: int) -> list[tuple[int, int]]:
    """Document ranges ``[d0, d1)`` of at most ``MAX_CHUNK_DOCUMENTS`` documents and about
    ``chunk_tokens`` tokens (at least one document each)."""
    bounds, d0, num_docs = [], 0, len(offsets) - 1
    while d0 < num_docs:
        d1 = int(np.searchsorted(offsets, offsets[d0] + chunk_tokens, side="right")) - 1
        d1 = min(max(d1, d0 + 1), d0 + MAX_CHUNK_DOCUMENTS, num_docs)
        bounds.append((d0, d1))
        d0 = d1
    return bounds


def _chunk_flags(ids: np.ndarray, offsets: np.ndarray, n: int) -> np.ndarray:
    """Present-n-gram flags for every token of a chunk (bool ``[T]``, token positions < n−1 of a
    document are False). ``offsets`` are chunk-local, ``[d + 1]``, with d < 2^16."""
    lengths = np.diff(offsets)
    doc = np.repeat(np.arange(len(lengths), dtype=np.uint64), lengths)
    pos = np.arange(len(ids), dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    at = np.flatnonzero(pos >= n - 1)  # tokens that end an n-gram inside their document
    tokens = ids.astype(np.uint64)
    key = doc[at] << np.uint64(16 * n)
    for k in range(n):  # t[i − n + 1 + k] in bits 16·(n − 1 − k) …
        key |= tokens[at - (n - 1) + k] << np.uint64(16 * (n - 1 - k))
    order = np.argsort(key, kind="stable")  # equal keys stay in position order
    sorted_keys = key[order]
    repeat = np.zeros(len(at), dtype=bool)
    repeat[order[1:][sorted_keys[1:] == sorted_keys[:-1]]] = True
    flags = np.zeros(len(ids), dtype=bool)
    flags[at] = repeat
    return flags


def present_ngram_flags(
    corpus: CanonicalCorpus,
    n: int,
    *,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Flag predictable tokens whose n-gram ending at them occurred earlier in their document.

    ``n``: 2 (bigram) or 3 (trigram). Returns bool ``[G]`` over the canonical index of ``corpus``.
    ``progress(tokens_done)`` is called after each chunk.
    """
    if n not in (2, 3):
        raise ValueError(f"n-gram length must be 2 or 3, got {n}")
    if len(corpus.ids) and int(corpus.ids.max()) >= 1 << 16:
        raise ValueError("token ids must fit in 16 bits")
    offsets = np.asarray(corpus.offsets, dtype=np.int64)
    parts = []
    for d0, d1 in _chunks(offsets, chunk_tokens):
        local = offsets[d0 : d1 + 1] - offsets[d0]
        ids = np.asarray(corpus.ids[offsets[d0] : offsets[d1]])
        flags = _chunk_flags(ids, local, n)
        keep = np.ones(len(ids), dtype=bool)
        keep[local[:-1][np.diff(local) > 0]] = False  # first token of each document: not predictable
        parts.append(flags[keep])
        if progress is not None:
            progress(int(offsets[d1]))
    out = np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
    assert len(out) == corpus.num_predictable
    return out


def present_trigram_flags(corpus: CanonicalCorpus, **kwargs) -> np.ndarray:
    """The paper's induction filter: bool ``[G]``, see :func:`present_ngram_flags` with n = 3."""
    return present_ngram_flags(corpus, 3, **kwargs)


def present_bigram_flags(corpus: CanonicalCorpus, **kwargs) -> np.ndarray:
    """The looser filter: bool ``[G]``, see :func:`present_ngram_flags` with n = 2."""
    return present_ngram_flags(corpus, 2, **kwargs)


def induction_filters(corpus: CanonicalCorpus, progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Both flags over the whole corpus: ``{"present_trigram": bool [G], "present_bigram": bool [G]}``."""
    return {
        "present_trigram": present_trigram_flags(corpus, progress=progress),
        "present_bigram": present_bigram_flags(corpus, progress=progress),
    }
