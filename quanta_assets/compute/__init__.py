"""Where the GPU-heavy stages run (resource ``compute``): ``local`` (in the step's process, the
default), ``slurm`` (a Slurm job per step through Dagster Pipes) or ``celery`` (in a
``dagster-celery`` worker of the ``gpu`` queue). See ``docs/cluster.md``.

Modules: ``resource`` (``ComputeResource``, what the assets call), ``slurm`` (``sbatch --wait``
and Slurm's records), ``payload`` (the program a Slurm job runs), ``stage_ref`` (stage name →
function), ``metadata`` (Pipes-format metadata → Dagster's), ``executors`` (the Celery executor
and the queue tags).

A Slurm job runs ``python -m quanta_assets.compute.payload``, which must not import Dagster (only
``dagster-pipes``); so this ``__init__`` imports nothing itself and loads ``ComputeResource`` and
``dagster_metadata`` on first access (PEP 562).
"""

_LAZY = {"ComputeResource": "quanta_assets.compute.resource", "dagster_metadata": "quanta_assets.compute.metadata"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_LAZY[name])
    return getattr(module, "to_dagster_metadata" if name == "dagster_metadata" else name)
