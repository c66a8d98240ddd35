"""Where things live: the cache directory (``QUANTA_CACHE_DIR``) and its layout — the one place
that knows it (the IO manager, the stages run on a cluster and the library all ask here).

``<cache>/corpus/<asset>…``            unpartitioned assets (corpus, filters, demo-suite summary)
``<cache>/<model>/<step>/<asset>…``    assets partitioned by model × step
``<cache>/<model>/<asset>…``           assets partitioned by model
``<cache>/families/<family>/<step>/<asset>…``  assets partitioned by model family × step
``<cache>/hub``                        the demo suite's Hugging Face hub-layout repository

A study other than the default one (its own settings, side by side) keeps its analysis assets one
level deeper, under its key: ``<cache>/<model>/<step>/<study key>/<asset>…`` and
``<cache>/<model>/<study key>/<asset>…`` (:func:`study_key`; the IO manager gets there from the
asset key ``<study key>/<asset>``).

``<asset>…`` is the asset name plus the suffix of its stored format (:mod:`quanta_core.store`):
``pile_losses.npy``, ``quanta_report.html``, or a directory ``quanta_similarity/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from quanta_core import environment
from quanta_core.environment import env_source, env_value

CACHE_ENV = "QUANTA_CACHE_DIR"
PILE_ENV = "QUANTA_PILE"
CORPUS_DIR = "corpus"
FAMILIES_DIR = "families"


PROJECT_CACHE = ".quanta_cache"
"""The cache of a clone, in its root (``make demo`` uses it too)."""


def default_cache_dir() -> str:
    """``$QUANTA_CACHE_DIR`` (or a ``.env`` in the clone), else the clone's ``./.quanta_cache`` when
    the library runs from a clone, else ``~/.cache/quanta``."""
    root = environment.project_root()
    return env_value(CACHE_ENV) or str(root / PROJECT_CACHE if root else Path.home() / ".cache" / "quanta")


DEFAULT_STUDY = "default"
"""The study of the definitions' own settings: today's asset keys and paths (no study directory)."""


def study_key(study: str | None) -> str:
    """A study's directory and asset-key prefix: ``""`` for the default study, else ``-`` → ``_``."""
    return "" if study in (None, "", DEFAULT_STUDY) else study.replace("-", "_")


def pile_file() -> str | None:
    """``$QUANTA_PILE`` (or the project's ``.env``): a Pile-format ``.jsonl.zst`` file, else ``None``."""
    return env_value(PILE_ENV)


def describe_cache(cache_dir: str | os.PathLike | None = None) -> str:
    """For errors: which cache, where that came from and how to point at another."""
    default = default_cache_dir()
    path = Path(cache_dir or default).expanduser()
    if cache_dir is not None and path != Path(default).expanduser():
        origin = "given explicitly"
    else:
        source = env_source(CACHE_ENV)
        origin = (f"from {source}" if source else "the clone's default" if environment.project_root()
                  else f"the default: ${CACHE_ENV} is not set")
    return f"the cache {path} ({origin}); to use another, set {CACHE_ENV}=<dir>"


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
