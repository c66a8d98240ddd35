"""Resources: the cache directory and the model loader (the corpus source is a setting, in settings.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Optional

import dagster as dg

from quanta_assets.settings import SettingsResource
from quanta_core.models.checkpoints import LoadedCheckpoint, hub_cache_for, resolve_checkpoint
from quanta_core.paths import default_cache_dir


class QuantaCache(dg.ConfigurableResource):
    """The cache directory: ``root``, default ``$QUANTA_CACHE_DIR`` or ``~/.cache/quanta``. Its
    layout is :mod:`quanta_core.paths`; the IO manager stores under it too."""

    root: Optional[str] = None

    @property
    def path(self) -> Path:
        return Path(self.root or default_cache_dir())


class ModelLoader(SettingsResource):
    """Where checkpoints come from and how they are loaded.

    ``device``: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:1``…
    ``dtype``: ``float32`` (default, the original's precision) or ``bfloat16`` (GPU).
    ``hub_cache_dir``: the Hugging Face hub cache for Pythia (default ``$HF_HUB_CACHE`` /
    ``$HF_HOME/hub`` / ``~/.cache/huggingface/hub``; the demo model always lives in
    ``<QUANTA_CACHE_DIR>/hub``). ``offline``: never touch the network (default ``$HF_HUB_OFFLINE``).
    """

    execution_fields: ClassVar[frozenset[str]] = frozenset({"device", "hub_cache_dir", "offline"})
    device: str = "auto"
    dtype: str = "float32"
    hub_cache_dir: Optional[str] = None
    offline: Optional[bool] = None

    def hub_dir(self, model_name: str, cache_dir: str | os.PathLike) -> Path:
        """The hub cache holding ``model_name`` (``cache_dir`` is the platform's cache)."""
        return hub_cache_for(model_name, cache_dir, self.hub_cache_dir)

    def resolve(self, model_name: str, step: str, cache_dir: str | os.PathLike) -> tuple[str, str, Path]:
        """``(repo_id, commit, snapshot_dir)``, downloading the revision if needed and allowed."""
        return resolve_checkpoint(model_name, step, cache_dir=self.hub_dir(model_name, cache_dir), offline=self.offline)

    def load(self, model_name: str, step: str, cache_dir: str | os.PathLike, log=None) -> LoadedCheckpoint:
        """Load ``model_name`` at ``step`` (eval mode, configured device and dtype), as the stages
        do; ``log``: a logger (e.g. ``context.log``) or a ``str → None`` callable."""
        from quanta_assets.stages.loading import load_model, loader_params

        say = getattr(log, "info", log) or (lambda message: None)
        params = {"model": model_name, "step": step, "cache_dir": str(cache_dir), "loader": loader_params(self)}
        return load_model(params, say).checkpoint
