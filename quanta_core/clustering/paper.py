"""The paper's published clusters (package data) and comparing a labelling with them.

Michaud et al. (2023) published QDG cluster labels for 10,000 tokens of pythia-70m-v0 at step
143000, for 27 cluster counts, plus for each k a second labelling of an absolute-value matrix
(``C_abs = |G||G|ᵀ``); provenance and format: ``quanta_core/data/README.md``. They ship inside the
package, so nothing outside the repository is read.

The labels carry no token indices: a comparison is *positional* — position p must be the p-th
token of the paper's selection (pythia-70m-v0, step143000, loss < 0.1 nats, present-trigram filter,
every 50th, 10,000 tokens: the original README's run). From a notebook::

    from quanta_core.clustering import paper
    paper.compare_with_paper(labels)          # {"k": 400, "adjusted_rand": …, "nmi": …}
    paper.load_paper_labels()[400]            # int64 [10000]
"""

from __future__ import annotations

import gzip
import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from quanta_core.clustering.spectral import compare_labelings

PAPER_MODEL = "pythia-70m-v0"
PAPER_STEP = "step143000"
PAPER_NUM_TOKENS = 10_000
PAPER_KS = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 125, 150, 175, 200, 225, 250, 275, 300, 350, 400,
            500, 600, 700, 800, 900, 1000, 1100)
PAPER_LABELS_FILE = "paper-qdg-clusters-pythia-70m-v0.json.gz"


def _parse(text: str, where: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    raw = json.loads(text)
    out = {}
    for key, value in raw.items():
        if not (isinstance(value, list) and len(value) == 2 and len(value[0]) == len(value[1])):
            raise ValueError(f"{where}: entry {key!r} must be [labels, labels_abs] of equal length")
        pair = tuple(np.asarray(v, dtype=np.int64) for v in value)
        for a in pair:
            a.setflags(write=False)
        out[int(key)] = pair
    return out


@lru_cache(maxsize=4)
def _load(path: str | None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    if path is None:
        data = resources.files("quanta_core").joinpath("data", PAPER_LABELS_FILE).read_bytes()
        return _parse(gzip.decompress(data).decode(), f"packaged {PAPER_LABELS_FILE}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"paper labels not found: {p}")
    data = p.read_bytes()
    return _parse((gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode(), str(p))


def load_paper_labels(path: str | os.PathLike | None = None, *, absolute: bool = False) -> dict[int, np.ndarray]:
    """The paper's labels, ``{k: int64 [10000]}`` (read-only arrays, cluster numbers as published,
    not ranked). ``absolute=True``: the second labelling (of ``C_abs``). ``path``: a JSON file in
    the published layout (plain or gzip); ``None`` = the packaged copy."""
    labels = _load(None if path is None else str(Path(path).resolve()))
    return {k: pair[1 if absolute else 0] for k, pair in labels.items()}


def compare_with_paper(labels: np.ndarray, k: int | None = None, *, absolute: bool = False) -> dict[str, float]:
    """Agreement of ``labels`` (int ``[10000]``, position p = the p-th token of the paper's
    selection) with the paper's clustering into ``k`` clusters (default: the number of distinct
    labels): ``{"k", "adjusted_rand", "nmi"}`` (``sklearn.metrics``; 1 = identical partitions,
    ARI ≈ 0 for unrelated ones). Raises ``ValueError`` for another length or a k the paper lacks."""
    labels = np.asarray(labels).reshape(-1)
    if labels.size != PAPER_NUM_TOKENS:
        raise ValueError(
            f"the paper's labels are for its {PAPER_NUM_TOKENS:,} selected tokens of {PAPER_MODEL} at "
            f"{PAPER_STEP}, compared position by position; got {labels.size:,} labels (compare only a run "
            f"with the paper's selection: 10,000 tokens, 0.1 nats, present-trigram filter, skip 50)"
        )
    k = int(np.unique(labels).size) if k is None else int(k)
    paper_labels = load_paper_labels(absolute=absolute)
    if k not in paper_labels:
        raise ValueError(f"the paper has no clustering into k = {k}; it has k in {list(paper_labels)}")
    return {"k": k, **compare_labelings(labels, paper_labels[k])}


def paper_comparable(model: str, step: str, num_tokens: int, num_clusters: int) -> bool:
    """Whether a run can be compared with the paper: pythia-70m-v0 at step143000, 10,000 tokens,
    and a k the paper used (the token selection itself is the caller's to match)."""
    return (model == PAPER_MODEL and step == PAPER_STEP and num_tokens == PAPER_NUM_TOKENS
            and num_clusters in PAPER_KS)
