"""The complete samples table of a report: every sample of every cluster with its context as text.

The page (:mod:`quanta_core.report.page`) may hold only some samples of the largest clusters, to stay
under its size budget; this table, written next to it as Parquet, holds them all.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

import numpy as np
import pandas as pd

from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.presets import CONTEXT_AFTER as AFTER
from quanta_core.presets import CONTEXT_BEFORE as BEFORE
from quanta_core.report.samples import SAMPLE_COLUMNS, check_samples

TEXT_COLUMNS = ("text_before", "text_target", "text_after")
TABLE_COLUMNS = (*SAMPLE_COLUMNS, "in_page", *TEXT_COLUMNS)


def window_texts(window: Sequence[int], target: int, token_bytes: Sequence[bytes]) -> tuple[str, str, str]:
    """The text of a window of token ids before, at and after position ``target``: its bytes
    decoded as one UTF-8 stream, so a character split across tokens comes out whole, in the part
    where its last byte is; bytes of a character cut by the window's edges are ``\\xNN`` escapes."""
    decoder = codecs.getincrementaldecoder("utf-8")("backslashreplace")
    parts = (window[:target], window[target : target + 1], window[target + 1 :])
    texts = [decoder.decode(b"".join(map(token_bytes.__getitem__, part))) for part in parts]
    last = max(k for k, part in enumerate(parts) if len(part)) if len(window) else 2
    texts[last] += decoder.decode(b"", final=True)  # bytes cut by the window's end: where they are
    return texts[0], texts[1], texts[2]


def samples_table(
    samples: pd.DataFrame,
    corpus: CanonicalCorpus,
    token_bytes: Sequence[bytes],
    *,
    before: int = BEFORE,
    after: int = AFTER,
    in_page: np.ndarray | None = None,
) -> pd.DataFrame:
    """Every sample (one row each, sorted by cluster; within a cluster in the given order) with
    columns :data:`TABLE_COLUMNS`: :data:`~quanta_core.report.samples.SAMPLE_COLUMNS` (loss in nats),
    ``in_page`` (bool: the page holds it; ``in_page`` per row of ``samples``, default all) and the
    text of its context (:func:`window_texts`): up to ``before`` tokens before the target, the
    target, up to ``after`` tokens after it."""
    s = check_samples(samples, corpus)
    shown = np.ones(len(s), dtype=bool) if in_page is None else np.asarray(in_page, dtype=bool)
    if shown.shape != (len(s),):
        raise ValueError(f"in_page has shape {shown.shape}, the samples table {len(s)} rows")
    order = np.argsort(s["cluster"].to_numpy(), kind="stable")
    s = s.iloc[order].reset_index(drop=True)
    s["in_page"] = shown[order]
    ids, offsets, lengths = corpus.ids, corpus.offsets, corpus.num_tokens
    texts = []
    for d, p in zip(s["document"].tolist(), s["position"].tolist()):
        lo, hi = max(p - before, 0), min(p + after + 1, int(lengths[d]))
        texts.append(window_texts(ids[offsets[d] + lo : offsets[d] + hi].tolist(), p - lo, token_bytes))
    return pd.concat([s, pd.DataFrame(texts, columns=list(TEXT_COLUMNS))], axis=1)[list(TABLE_COLUMNS)]
