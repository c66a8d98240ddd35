"""Clusterings of one checkpoint under several studies (settings), compared on the tokens they share."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import numpy as np
import pandas as pd

from quanta_core.clustering.spectral import compare_labelings, envelope_slope, rank_frequency_envelope

PAIR_COLUMNS = ["study_a", "study_b", "shared_tokens", "adjusted_rand", "nmi"]
STUDY_COLUMNS = ["study", "tokens", "clusters", "size_slope"]


def size_slope(labels: np.ndarray) -> float:
    """Least-squares slope of log(cluster size) against log(rank) over every non-empty rank of one
    labeling (the paper fits ranks 100–1000 of a sweep's envelope; one labeling of k clusters has
    only k ranks). NaN with fewer than two clusters."""
    sizes = rank_frequency_envelope([np.asarray(labels)])
    return envelope_slope(sizes, ranks=(1, len(sizes))) if len(sizes) >= 2 else float("nan")


def compare_studies(tokens: Mapping[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(pairs, studies)`` for the clusters tables (``index``, ``cluster``) of each study name.

    ``pairs``: one row per pair of studies: the tokens (canonical indices) both selected and the
    ARI / NMI of their clusters on those tokens (``sklearn.metrics``; NaN when fewer than two shared).
    ``studies``: per study its token count, cluster count and :func:`size_slope`."""
    labels = {name: pd.Series(t["cluster"].to_numpy(np.int64), index=t["index"].to_numpy(np.int64))
              for name, t in tokens.items()}
    rows = []
    for a, b in combinations(sorted(labels), 2):
        shared = labels[a].index.intersection(labels[b].index)
        agreement = ({"adjusted_rand": float("nan"), "nmi": float("nan")} if len(shared) < 2 else
                     compare_labelings(labels[a].loc[shared].to_numpy(), labels[b].loc[shared].to_numpy()))
        rows.append({"study_a": a, "study_b": b, "shared_tokens": int(len(shared)), **agreement})
    studies = [{"study": name, "tokens": int(len(s)), "clusters": int(s.nunique()), "size_slope": size_slope(s)}
               for name, s in sorted(labels.items())]
    return pd.DataFrame(rows, columns=PAIR_COLUMNS), pd.DataFrame(studies, columns=STUDY_COLUMNS)
