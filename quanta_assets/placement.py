"""Where assets run: the ``gpu`` pool and the Celery queue tags, written on the assets."""

GPU_POOL = "gpu"
"""The Dagster pool of the GPU-heavy assets (``quanta_demo_suite``, ``pile_losses``,
``quanta_similarity``): on one machine, GPU-heavy runs at once (``dagster.yaml``: 1); on a
cluster, jobs in flight (docs/cluster.md)."""

from quanta_assets.compute.executors import GPU_OP_TAGS  # noqa: E402  (queue `gpu` for the Celery executor)

__all__ = ["GPU_OP_TAGS", "GPU_POOL"]
