"""Where the GPU-heavy assets run: their Dagster pool ``GPU_POOL``, and the Celery engine
(``dagster-celery``'s executor on a Redis broker) with its queue tags.

Steps of the GPU-heavy assets carry ``GPU_OP_TAGS`` (queue ``gpu``); every other step goes to the
queue ``cpu``. Workers: ``dagster-celery worker start -A dagster_celery.app -y scripts/celery-worker.yaml
-q gpu`` (one per GPU) and ``… -q cpu`` (see ``docs/cluster.md``).
"""

from __future__ import annotations

import dagster as dg

from quanta_core.environment import env_value

GPU_POOL = "gpu"
"""The Dagster pool of the GPU-heavy assets (``quanta_demo_suite``, ``pile_losses``,
``quanta_similarity``): on one machine, GPU-heavy runs at once (``dagster.yaml``: 1); on a
cluster, jobs in flight (docs/cluster.md)."""
CELERY_QUEUE_TAG = "dagster-celery/queue"  # dagster_celery.tags.DAGSTER_CELERY_QUEUE_TAG
GPU_QUEUE, CPU_QUEUE = "gpu", "cpu"
GPU_OP_TAGS = {CELERY_QUEUE_TAG: GPU_QUEUE}  # op_tags of quanta_demo_suite, pile_losses, quanta_similarity
BROKER_ENV, RESULT_BACKEND_ENV = "QUANTA_CELERY_BROKER", "QUANTA_CELERY_BACKEND"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"


def celery_executor_config() -> dict:
    """Broker ``$QUANTA_CELERY_BROKER`` (default a local Redis), results in ``$QUANTA_CELERY_BACKEND``
    (default the broker), untagged steps to the ``cpu`` queue."""
    broker = env_value(BROKER_ENV) or DEFAULT_BROKER
    return {"broker": broker, "backend": env_value(RESULT_BACKEND_ENV) or broker,
            "config_source": {"task_default_queue": CPU_QUEUE}}


def executor_for_backend(backend: str | None = None) -> dg.ExecutorDefinition | None:
    """``celery_executor`` configured as above when the backend (default ``$QUANTA_COMPUTE``) is
    ``celery``; ``None`` (Dagster's default executor) for ``local`` and ``slurm``."""
    from quanta_assets.compute.resource import resolve_backend

    if resolve_backend(backend) != "celery":
        return None
    from dagster_celery import celery_executor

    return celery_executor.configured(celery_executor_config(), name="quanta_celery")
