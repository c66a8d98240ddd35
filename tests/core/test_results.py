"""``quanta_core.results.load_clusters``: a partition's clusters as a DataFrame from the cache, the
study layout, the stability join, a clear error — and from a fresh copy of the tree, a plain
``python -c`` with no exported variables finds the clone's own ``./.quanta_cache``."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quanta_core import store
from quanta_core.clustering.tokens import clusters_table
from quanta_core.paths import asset_path
from quanta_core.results import COLUMNS, load_clusters, study_asset_path

from support.helpers import corpus_of_documents

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["The cat sat on the mat.\nThen it slept.", "One two three four five six seven eight."]
MODEL, STEP = "quanta-demo", "step512"


def write_cache(cache: Path, tokenizer, study: str | None = None) -> pd.DataFrame:
    """A small real ``pile_canonical`` and ``quanta_clusters`` (every predictable token, 2 clusters)."""
    corpus = corpus_of_documents([tokenizer.encode(t).ids for t in TEXTS])
    store.write_value(asset_path(cache, "pile_canonical"), corpus.to_arrays())
    indices = np.arange(corpus.num_predictable)
    labels = indices % 2
    losses = np.linspace(0.5, 3.0, corpus.num_predictable).astype(np.float32)
    tokens = clusters_table(indices, labels, corpus, losses)
    store.write_value(study_asset_path(cache, "quanta_clusters", MODEL, STEP, study),
                      {"tokens": tokens, "labels": labels})
    return tokens


def test_clusters_with_their_text_and_context(tmp_path, tokenizer):
    cache = tmp_path / "cache"
    tokens = write_cache(cache, tokenizer)
    df = load_clusters(MODEL, STEP, cache_dir=cache)
    assert tuple(df.columns) == COLUMNS and len(df) == len(tokens)
    assert df["cluster"].is_monotonic_increasing
    row = df[df["token"] == " slept"].iloc[0]
    assert row["text_before"] == "The cat sat on the mat.\nThen it" and row["text_after"] == ""  # the report's context
    near = load_clusters(MODEL, STEP, cache_dir=cache, before=2, after=1).set_index("index").loc[row["index"]]
    assert (near["text_before"], near["token"], near["text_after"]) == ("Then it", " slept", ".")
    assert row["loss"] == pytest.approx(float(tokens.set_index("index").loc[row["index"], "loss"]))
    back = tokenizer.decode([int(i) for i in df["token_id"]])
    assert sorted(back) == sorted("".join(df["token"]))


def test_stability_joined_on_cluster_and_studies_apart(tmp_path, tokenizer):
    cache = tmp_path / "cache"
    write_cache(cache, tokenizer, study="paper-abs")
    assert (cache / MODEL / STEP / "paper_abs" / "quanta_clusters" / "tokens.parquet").is_file()
    with pytest.raises(FileNotFoundError, match=str(cache / MODEL / STEP / "quanta_clusters")):
        load_clusters(MODEL, STEP, cache_dir=cache)  # the default study was never made
    stability = study_asset_path(cache, "quanta_cluster_stability", MODEL, STEP, "paper-abs")
    store.write_value(stability, {"clusters": pd.DataFrame({"cluster": [0, 1], "stability": [0.9, 0.4]})})
    df = load_clusters(MODEL, STEP, study="paper-abs", cache_dir=cache)
    assert df.groupby("cluster")["stability"].first().tolist() == [0.9, 0.4]


def test_the_report_samples_table_supplies_the_texts_when_it_matches(tmp_path, tokenizer):
    cache = tmp_path / "cache"
    write_cache(cache, tokenizer)
    df = load_clusters(MODEL, STEP, cache_dir=cache)
    stored = df.rename(columns={"token": "text_target"}).assign(text_before="stored")
    store.write_value(asset_path(cache, "quanta_report_samples", MODEL, STEP), stored)
    assert set(load_clusters(MODEL, STEP, cache_dir=cache)["text_before"]) == {"stored"}
    assert "stored" not in set(load_clusters(MODEL, STEP, cache_dir=cache, before=3)["text_before"])


def _fresh_clone(tmp_path: Path, cache: Path) -> Path:
    """A copy of the library and pyproject.toml whose ``./.quanta_cache`` is ``cache``."""
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "quanta_core", clone / "quanta_core", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", clone / "pyproject.toml")
    (clone / ".quanta_cache").symlink_to(cache, target_is_directory=True)
    return clone


def test_a_plain_python_in_a_fresh_clone_loads_clusters_without_exports(tmp_path, tokenizer):
    cache = tmp_path / "cache"
    write_cache(cache, tokenizer)
    clone = _fresh_clone(tmp_path, cache)
    env = {k: v for k, v in os.environ.items() if k not in ("QUANTA_CACHE_DIR", "DAGSTER_HOME", "PYTHONPATH")}
    code = ("import quanta_core; from quanta_core.results import load_clusters; "
            "df = load_clusters('quanta-demo', 'step512'); print(quanta_core.__file__, len(df), df['cluster'].max())")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, "PYTHONPATH": str(clone)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    where, rows, top = done.stdout.split()
    assert Path(where).is_relative_to(clone) and int(rows) == len(load_clusters(MODEL, STEP, cache_dir=cache))
    assert int(top) == 1
