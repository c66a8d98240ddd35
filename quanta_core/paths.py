"""Where things live: the cache directory (``QUANTA_CACHE_DIR``) and its layout — the one place
that knows it (the IO manager, the stages run on a cluster and the library all ask here).

``<cache>/corpus/<asset>…``            unpartitioned assets (corpus, filters, demo-suite summary)
``<cache>/<model>/<step>/<asset>…``    assets partitioned by model × step
``<cache>/<model>/<asset>…``           assets partitioned by model
``<cache>/families/<family>/<step>/<asset>…``  assets partitioned by model family × step
``<cache>/hub``                        the demo suite's Hugging Face hub-layout repository

``<asset>…`` is the asset name plus the suffix of its stored format (:mod:`quanta_core.store`):
``pile_losses.npy``, ``quanta_report.html``, or a directory ``quanta_similarity/``.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "QUANTA_CACHE_DIR"
PILE_ENV = "QUANTA_PILE"
CORPUS_DIR = "corpus"
FAMILIES_DIR = "families"


def default_cache_dir() -> str:
    """``$QUANTA_CACHE_DIR``, else ``~/.cache/quanta``."""
    return os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "quanta")


def corpus_dir(cache_dir: str | os.PathLike) -> Path:
    """``<cache>/corpus``: unpartitioned assets and the embedded mini-Pile file."""
    return Path(cache_dir) / CORPUS_DIR


def hub_dir(cache_dir: str | os.PathLike) -> Path:
    """``<cache>/hub``: the demo suite's repository in the Hugging Face hub's layout."""
    return Path(cache_dir) / "hub"


def asset_path(cache_dir, asset: str, model: str | None = None, step: str | None = None,
               family: str | None = None) -> Path:
    """The stored path of ``asset`` *without* its format suffix: ``<cache>/corpus/<asset>`` when
    unpartitioned, ``<cache>/<model>/<asset>`` (model only), ``<cache>/<model>/<step>/<asset>``, or
    ``<cache>/families/<family>/<step>/<asset>`` (a family of model sizes at one step)."""
    if family is not None:
        if model is not None or step is None:
            raise ValueError(f"{asset}: a family partition needs a step and no model")
        return Path(cache_dir) / FAMILIES_DIR / family / step / asset
    if step is not None and model is None:
        raise ValueError(f"{asset}: a step partition needs a model")
    if model is None:
        return corpus_dir(cache_dir) / asset
    parts = [model] if step is None else [model, step]
    return Path(cache_dir).joinpath(*parts, asset)
