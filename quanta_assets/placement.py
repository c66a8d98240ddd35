"""Where assets run: the ``gpu`` pool and the Celery queue tags, written on the assets."""

GPU_POOL = "gpu"
"""The Dagster pool of the GPU-heavy assets (``quanta_demo_suite``, ``pile_losses``,
``quanta_similarity``): on one machine, GPU-heavy runs at once (``dagster.yaml``: 1); on a
cluster, jobs in flight (docs/cluster.md)."""
