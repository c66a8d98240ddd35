"""The samples a cluster report shows: the table's columns, its check against the corpus, and
their context windows merged into ranges of the corpus (what the page and the samples table share)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from quanta_core.corpus.canonical import CanonicalCorpus

SAMPLE_COLUMNS = ("cluster", "index", "document", "position", "token_id", "loss")


def check_samples(samples: pd.DataFrame, corpus: CanonicalCorpus) -> pd.DataFrame:
    """``samples``' columns :data:`SAMPLE_COLUMNS` (index reset), checked against ``corpus``: a
    ``ValueError`` naming the first bad sample when ranks, positions or token ids do not fit."""
    missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        raise ValueError(f"samples table lacks columns {missing}; needs {list(SAMPLE_COLUMNS)}")
    if len(samples) == 0:
        raise ValueError("no samples to report")
    s = samples[list(SAMPLE_COLUMNS)].reset_index(drop=True)
    ranks = np.unique(s["cluster"].to_numpy())
    if ranks[0] != 0 or ranks[-1] != len(ranks) - 1:
        raise ValueError(f"cluster ranks must be 0…K−1 with every rank used, got {len(ranks)} ranks "
                         f"from {ranks[0]} to {ranks[-1]}")
    doc, pos = s["document"].to_numpy(np.int64), s["position"].to_numpy(np.int64)
    if doc.min() < 0 or doc.max() >= corpus.num_documents:
        raise ValueError(f"sample documents outside the corpus (it has {corpus.num_documents} documents)")
    lengths = corpus.num_tokens[doc]
    if np.any(pos < 1) or np.any(pos >= lengths):
        bad = int(np.flatnonzero((pos < 1) | (pos >= lengths))[0])
        raise ValueError(f"sample {bad}: position {pos[bad]} is not a predictable token of document "
                         f"{doc[bad]} ({lengths[bad]} tokens)")
    actual = corpus.ids[corpus.offsets[doc] + pos]
    wrong = np.flatnonzero(actual != s["token_id"].to_numpy())
    if len(wrong):
        i = int(wrong[0])
        raise ValueError(f"sample {i}: token_id {s['token_id'][i]} but the corpus has {actual[i]} at document "
                         f"{doc[i]}, position {pos[i]}: clusters and corpus do not belong together")
    if not np.all(np.isfinite(s["loss"].to_numpy(np.float64))):
        raise ValueError("samples table has non-finite losses")
    return s


def context_windows(doc: np.ndarray, pos: np.ndarray, doc_lengths: np.ndarray, before: int, after: int):
    """Merge the context windows ``[pos − before, pos + after]`` (clipped to each document) of
    samples into non-overlapping ranges per document.

    Returns ``(ranges, start, end)``: ranges int64 ``[R, 3]`` (document, first token, end token
    exclusive) and, per sample, the window's ``start``/``end`` (exclusive) as offsets into the
    concatenation of the ranges (int64 ``[N]``); the target sits at ``start + (pos − lo)``.
    """
    doc, pos = np.asarray(doc, np.int64), np.asarray(pos, np.int64)
    lo = np.maximum(pos - before, 0)
    hi = np.minimum(pos + after + 1, np.asarray(doc_lengths, np.int64)[doc])
    order = np.lexsort((lo, doc))
    d, w, h = doc[order], lo[order], hi[order]  # sorted by (document, window start)
    big = int(h.max()) + 1
    reach = np.maximum.accumulate(d * big + h) - d * big  # furthest end so far within the document
    new = np.ones(len(d), dtype=bool)
    new[1:] = (d[1:] != d[:-1]) | (w[1:] > reach[:-1])
    range_id = np.cumsum(new) - 1
    r_doc, r_lo = d[new], w[new]
    r_hi = np.maximum.reduceat(h, np.flatnonzero(new))
    base = np.concatenate([[0], np.cumsum(r_hi - r_lo)])
    start, end = np.empty_like(lo), np.empty_like(hi)
    start[order] = base[range_id] + (w - r_lo[range_id])
    end[order] = base[range_id] + (h - r_lo[range_id])
    return np.stack([r_doc, r_lo, r_hi], axis=1), start, end


def window_ids(corpus: CanonicalCorpus, ranges: np.ndarray, chunk: int = 20_000) -> Iterator[np.ndarray]:
    """The token ids of ``ranges`` (int64 ``[R, 3]``: document, first, end), concatenated, in
    pieces of ``chunk`` ranges."""
    for k in range(0, len(ranges), chunk):
        piece = ranges[k : k + chunk]
        yield np.concatenate([corpus.ids[corpus.offsets[d] + a : corpus.offsets[d] + b] for d, a, b in piece])
