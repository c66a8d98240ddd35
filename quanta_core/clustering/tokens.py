"""The clustered tokens as a table: one row per selected token with its cluster, where it is in
the corpus, its target token and its loss — what ``quanta_clusters`` stores as ``tokens.parquet``."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from quanta_core.corpus.canonical import CanonicalCorpus, index_to_doc_pos


def clusters_table(
    indices: np.ndarray, labels: np.ndarray, corpus: CanonicalCorpus, losses: np.ndarray
) -> pd.DataFrame:
    """One row per selected token, in selection order: ``cluster`` (rank), ``index`` (canonical),
    ``document``, ``position`` (of the target in its document), ``token_id`` (target), ``loss`` (nats)."""
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and indices.max() >= len(losses):
        raise ValueError(f"selected canonical index {indices.max()} is beyond the loss table ({len(losses)} tokens)")
    doc, pos = index_to_doc_pos(indices, corpus.starts)
    return pd.DataFrame(
        {
            "cluster": np.asarray(labels, dtype=np.int64),
            "index": indices,
            "document": doc.astype(np.int64),
            "position": pos.astype(np.int64),
            "token_id": corpus.ids[corpus.offsets[doc] + pos].astype(np.int64),
            "loss": np.asarray(losses[indices], dtype=np.float32),
        }
    )


def cluster_assignment(clusters: dict, where: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(canonical indices int64 [S], cluster ranks int64 [S], tokens table) of a stored
    ``quanta_clusters`` value (``tokens`` with columns ``index`` and ``cluster``, checked against
    ``labels``); ``where`` names the partition in errors."""
    tokens = clusters.get("tokens")
    if tokens is None or not {"index", "cluster"} <= set(tokens.columns):
        raise ValueError(f"quanta_clusters of {where} has no tokens table with columns index and cluster")
    indices = tokens["index"].to_numpy(dtype=np.int64)
    labels = tokens["cluster"].to_numpy(dtype=np.int64)
    if "labels" in clusters and not np.array_equal(np.sort(np.asarray(clusters["labels"])), np.sort(labels)):
        raise ValueError(f"quanta_clusters of {where}: tokens.parquet and labels.npy disagree on the clusters")
    return indices, labels, tokens


def clusters_digest(indices: np.ndarray, labels: np.ndarray) -> str:
    """16 hex digits identifying a clustering: which tokens (canonical indices) got which cluster.
    Views derived from clusters record it, so a page can tell whether they follow the same ones."""
    blob = np.asarray(indices, dtype=np.int64).tobytes() + np.asarray(labels, dtype=np.int64).tobytes()
    return hashlib.sha256(blob).hexdigest()[:16]
