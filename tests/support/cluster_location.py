"""Code location of the cluster tests: ``tiny_tokens`` (CPU, in the run or a ``cpu`` worker) →
``tiny_losses`` (GPU-heavy: pool ``gpu``, Celery queue ``gpu``, run by the ``compute`` resource).

The executor follows ``$QUANTA_COMPUTE`` as the product's definitions do (Celery for ``celery``).
"""

import os
import socket
from pathlib import Path

import dagster as dg
import numpy as np

from quanta_assets.compute.executors import GPU_OP_TAGS, executor_for_backend
from quanta_assets.compute.resource import ComputeResource
from quanta_core.atomic import save_npy
from quanta_core.paths import default_cache_dir

PARTITIONS = dg.StaticPartitionsDefinition([f"s{i}" for i in range(8)])
STAGE = "support.cluster_stages:tiny_losses"


def partition_dir(partition: str, cache: str | None = None) -> Path:
    return Path(cache or default_cache_dir()) / "tiny" / partition


def _where() -> dict:
    where = {"compute_host": socket.gethostname(), "compute_pid": os.getpid()}
    try:
        from celery import current_task

        if current_task and current_task.request.hostname:
            where["celery_worker"] = current_task.request.hostname
    except ImportError:
        pass
    return where


@dg.asset(partitions_def=PARTITIONS)
def tiny_tokens(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Random token ids int64 [2, 33], seeded by the partition."""
    seed = int(context.partition_key[1:])
    ids = np.random.default_rng(seed).integers(0, 512, size=(2, 33)).astype(np.int64)
    path = save_npy(partition_dir(context.partition_key) / "tokens.npy", ids)
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(path)), **_where()})


class TinyConfig(dg.Config):
    sleep_s: float = 0.0
    hold_while: str = ""
    fail: bool = False


@dg.asset(partitions_def=PARTITIONS, deps=[tiny_tokens], pool="gpu", op_tags=GPU_OP_TAGS)
def tiny_losses(context: dg.AssetExecutionContext, config: TinyConfig,
                compute: ComputeResource) -> dg.MaterializeResult:
    """Per-token losses of a tiny GPT-NeoX, computed by the ``compute`` backend."""
    folder = partition_dir(context.partition_key)
    params = {"tokens": str(folder / "tokens.npy"), "out": str(folder / "losses.npy"),
              "seed": int(context.partition_key[1:]), "sleep_s": config.sleep_s, "hold_while": config.hold_while,
              "fail": config.fail}
    return compute.run(context, STAGE, params, model="tiny")


tiny_job = dg.define_asset_job("tiny_job", selection=[tiny_tokens, tiny_losses])

defs = dg.Definitions(assets=[tiny_tokens, tiny_losses], jobs=[tiny_job], resources={"compute": ComputeResource()},
                      executor=executor_for_backend())
