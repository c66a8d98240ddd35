"""Loading the checkpoint a stage works on, from its ``params`` (no Dagster)."""

from __future__ import annotations

import gc
from dataclasses import dataclass

import torch

from quanta_core.models.checkpoints import LoadedCheckpoint, hub_cache_for, load_checkpoint


@dataclass
class StageModel:
    """The loaded checkpoint and what metadata says about it."""

    checkpoint: LoadedCheckpoint

    @property
    def model(self) -> torch.nn.Module:
        return self.checkpoint.model

    @property
    def device(self) -> torch.device:
        return self.checkpoint.device

    @property
    def dtype(self) -> torch.dtype:
        return self.checkpoint.dtype

    def metadata(self) -> dict:
        config = getattr(self.model, "config", None)
        return {
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "vocab_size": int(getattr(config, "vocab_size", 0)) or None,
            "repo_id": self.checkpoint.repo_id,
            "revision": self.checkpoint.revision,
            "commit": self.checkpoint.commit,
        }

    def release(self) -> None:
        """Drop the model and return accelerator memory."""
        self.checkpoint = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def loader_params(models) -> dict:
    """The ``loader`` part of a stage's params from the ``models`` resource (a ``ModelLoader``)."""
    return {"device": models.device, "dtype": models.dtype, "hub_cache_dir": models.hub_cache_dir,
            "offline": models.offline}


def load_model(params: dict, log) -> StageModel:
    """Load ``params["model"]`` at ``params["step"]`` as ``params["loader"]`` says."""
    loader = params["loader"]
    hub = hub_cache_for(params["model"], params["cache_dir"], loader.get("hub_cache_dir"))
    log(f"loading {params['model']}@{params['step']} from {hub} (device={loader['device']}, dtype={loader['dtype']})")
    checkpoint = load_checkpoint(params["model"], params["step"], hub_cache_dir=hub, device=loader["device"],
                                 dtype=loader["dtype"], offline=loader.get("offline"))
    log(f"loaded {checkpoint.repo_id}@{checkpoint.revision} commit {checkpoint.commit} on {checkpoint.device} "
        f"as {checkpoint.dtype}")
    return StageModel(checkpoint)
