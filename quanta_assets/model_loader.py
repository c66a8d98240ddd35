"""The ``models`` resource: resolves and loads checkpoints (see :mod:`quanta_core.checkpoints`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import dagster as dg

from quanta_core.checkpoints import LoadedCheckpoint, hub_cache_for, load_checkpoint, pick_device, resolve_checkpoint


class ModelLoader(dg.ConfigurableResource):
    """Where checkpoints come from and how they are loaded.

    ``device``: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``…
    ``dtype``: ``"float32"`` (default, the original's precision) or ``"bfloat16"`` (GPU).
    ``hub_cache_dir``: the Hugging Face hub cache for Pythia; default ``$HF_HUB_CACHE`` /
    ``$HF_HOME/hub`` / ``~/.cache/huggingface/hub``. The demo model always lives in
    ``<QUANTA_CACHE_DIR>/hub``.
    ``offline``: never touch the network; default from ``$HF_HUB_OFFLINE``.
    """

    device: str = "auto"
    dtype: str = "float32"
    hub_cache_dir: Optional[str] = None
    offline: Optional[bool] = None

    def hub_dir(self, model_name: str, cache_dir: str | os.PathLike) -> Path:
        """The hub cache holding ``model_name`` (``cache_dir`` is the Quanta cache)."""
        return hub_cache_for(model_name, cache_dir, self.hub_cache_dir)

    def resolve(self, model_name: str, step: str, cache_dir: str | os.PathLike) -> tuple[str, str, Path]:
        """``(repo_id, commit, snapshot_dir)``, downloading the revision if needed and allowed."""
        return resolve_checkpoint(model_name, step, cache_dir=self.hub_dir(model_name, cache_dir), offline=self.offline)

    def load(self, model_name: str, step: str, cache_dir: str | os.PathLike, log=None) -> LoadedCheckpoint:
        """Load ``model_name`` at ``step`` (eval mode, on the configured device and dtype).

        ``cache_dir``: the Quanta cache (``cache.path``); ``log``: e.g. ``context.log``.
        """
        hub_dir = self.hub_dir(model_name, cache_dir)
        if log is not None:
            log.info(f"loading {model_name}@{step} from {hub_dir} (device={self.device} → "
                     f"{pick_device(self.device)}, dtype={self.dtype})")
        loaded = load_checkpoint(
            model_name, step, hub_cache_dir=hub_dir, device=self.device, dtype=self.dtype, offline=self.offline
        )
        if log is not None:
            log.info(f"loaded {loaded.repo_id}@{loaded.revision} commit {loaded.commit} on {loaded.device} "
                     f"as {loaded.dtype}")
        return loaded
