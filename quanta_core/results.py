"""Results for notebooks: a partition's clusters as one pandas DataFrame, read from the cache.

    >>> from quanta_core.results import load_clusters
    >>> clusters = load_clusters("quanta-demo", "step512")          # after `make demo`
    >>> clusters.groupby("cluster")["loss"].mean()

No Dagster: it reads the files the assets stored (:mod:`quanta_core.paths`). The cache is
``cache_dir``, else ``$QUANTA_CACHE_DIR`` or the clone's ``.env`` (:mod:`quanta_core.environment`).
A study other than ``default`` lives under ``<cache>/<model>/<step>/<study key>/`` (its name with
``-`` → ``_``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from quanta_core.clustering.tokens import cluster_assignment
from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.corpus.tokenizer import load_tokenizer
from quanta_core.paths import asset_path, default_cache_dir, describe_cache, study_key
from quanta_core.presets import CONTEXT_AFTER, CONTEXT_BEFORE
from quanta_core.report.table import samples_table
from quanta_core.report.token_text import token_bytes_table

COLUMNS = ("cluster", "index", "document", "position", "token_id", "token", "loss", "text_before", "text_after")
STABILITY = ("quanta_cluster_stability", "clusters.parquet")  # per-cluster table, once that asset exists


def study_asset_path(cache_dir, asset: str, model: str, step: str, study: str | None = None) -> Path:
    """The suffix-less stored path of a model × step ``asset`` of ``study`` (:func:`asset_path`)."""
    key = study_key(study)
    return asset_path(cache_dir, f"{key}/{asset}" if key else asset, model, step)


def load_clusters(model: str, step: str, study: str | None = None, cache_dir: str | os.PathLike | None = None,
                  *, before: int | None = None, after: int | None = None) -> pd.DataFrame:
    """The clustered tokens of ``model`` at ``step``, one row each, sorted by cluster (within one, in
    selection order), with columns :data:`COLUMNS`: ``cluster`` (rank, 0 = largest), ``index``
    (canonical), ``document``, ``position``, ``token_id`` and ``token`` (its text), ``loss`` (nats),
    ``text_before`` / ``text_after`` (up to ``before`` / ``after`` tokens of context, default the
    report's); plus the per-cluster columns of ``quanta_cluster_stability`` (e.g. ``stability``)
    when it is stored. Raises ``FileNotFoundError`` naming the path and cache when nothing is stored.
    """
    cache = Path(cache_dir or default_cache_dir()).expanduser()
    where = f"{model}|{step}" + (f", study {study}" if study_key(study) else "")
    folder = study_asset_path(cache, "quanta_clusters", model, step, study)
    if not (folder / "tokens.parquet").is_file():
        raise FileNotFoundError(
            f"no clusters of {where}: nothing stored at {folder}; looked in {describe_cache(cache_dir)}. "
            f"Materialize quanta_clusters for partition {model}|{step} there first (`make demo` does for "
            "quanta-demo|step512), or pass cache_dir=")
    labels = folder / "labels.npy"
    stored = {"tokens": pd.read_parquet(folder / "tokens.parquet")}
    if labels.is_file():
        stored["labels"] = np.load(labels, allow_pickle=False)
    _, _, tokens = cluster_assignment(stored, where)
    table = None
    if before is None and after is None:
        table = _report_texts(tokens, study_asset_path(cache, "quanta_report_samples", model, step, study))
    if table is None:
        table = _corpus_texts(tokens, cache, where, CONTEXT_BEFORE if before is None else before,
                              CONTEXT_AFTER if after is None else after)
    return _with_stability(table, study_asset_path(cache, STABILITY[0], model, step, study) / STABILITY[1])


def _sorted(tokens: pd.DataFrame) -> pd.DataFrame:
    order = np.argsort(tokens["cluster"].to_numpy(), kind="stable")
    return tokens.iloc[order].reset_index(drop=True)


def _finish(table: pd.DataFrame) -> pd.DataFrame:
    return table.rename(columns={"text_target": "token"})[list(COLUMNS)]


def _report_texts(tokens: pd.DataFrame, path: Path) -> pd.DataFrame | None:
    """The report's samples table when it is stored and holds exactly these tokens, else ``None``."""
    file = path.with_name(path.name + ".parquet")
    if not file.is_file():
        return None
    table = pd.read_parquet(file)
    ours = _sorted(tokens)
    same = len(table) == len(ours) and all(
        np.array_equal(table[c].to_numpy(), ours[c].to_numpy()) for c in ("cluster", "index"))
    return _finish(table) if same else None


def _corpus_texts(tokens: pd.DataFrame, cache: Path, where: str, before: int, after: int) -> pd.DataFrame:
    """The tokens' texts decoded from ``pile_canonical`` with the offline Pythia tokenizer."""
    path = asset_path(cache, "pile_canonical")
    if not path.is_dir():
        raise FileNotFoundError(f"clusters of {where} are stored but not the corpus they index: nothing at {path} "
                                "(materialize pile_canonical)")
    corpus = CanonicalCorpus.load(path)
    token_bytes = token_bytes_table(load_tokenizer())
    return _finish(samples_table(tokens, corpus, token_bytes, before=before, after=after))


def _with_stability(table: pd.DataFrame, file: Path) -> pd.DataFrame:
    """``table`` with the per-cluster columns of ``file`` joined on ``cluster``, when it exists."""
    if not file.is_file():
        return table
    stability = pd.read_parquet(file)
    extra = [c for c in stability.columns if c != "cluster" and c not in table.columns]
    return table.merge(stability[["cluster", *extra]], on="cluster", how="left", validate="many_to_one")
