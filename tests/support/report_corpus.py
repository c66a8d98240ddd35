"""The small test corpus of the report tests (core, assets, browser): texts chosen to break an
unsafe page — markup and script tags, multi-byte characters split over tokens, control characters,
whitespace runs, empty and one-token documents — and every predictable token of it as a sample."""

import numpy as np
import pandas as pd

from quanta_core.clustering.spectral import rank_clusters
from quanta_core.corpus.canonical import build_canonical
from quanta_core.corpus.pile import PileDocument

DANGEROUS = ("Hello “world” — 日本語 😀 naïve. <script>alert(1)</script> then </script> and "
             "<!-- comment --> & <img src=x onerror=alert(2)> done.")
TEXTS = [
    "def f(x):\n\treturn x + 1  # two spaces\n\n\nprint(f(2))\n",
    DANGEROUS,
    "The quick brown fox jumps over the lazy dog. " * 12,
    "bell \x07 nul \x00 line\u2028sep, <!-- not a comment --> ]]> \\u003c/script>",
    "",  # empty documents are allowed
    "x",  # no predictable token
]


def build_corpus(tokenizer):
    """The canonical corpus of :data:`TEXTS` (document i has Pile id i + 1)."""
    return build_canonical([PileDocument(t, "Test", i + 1) for i, t in enumerate(TEXTS)], tokenizer)


def all_samples(corpus, num_clusters=6, seed=0):
    """Every predictable token of the corpus as a sample, in random clusters (ranked)."""
    doc = np.repeat(np.arange(corpus.num_documents), np.maximum(corpus.num_tokens - 1, 0))
    pos = np.concatenate([np.arange(1, n) for n in corpus.num_tokens if n > 1])
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "cluster": rank_clusters(rng.integers(0, num_clusters, len(doc))),
        "index": corpus.starts[doc] + pos - 1,
        "document": doc,
        "position": pos,
        "token_id": corpus.ids[corpus.offsets[doc] + pos].astype(np.int64),
        "loss": rng.random(len(doc)) * 0.1,
    })
