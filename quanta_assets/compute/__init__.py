"""Where the GPU-heavy stages run (resource ``compute``): ``local`` (in the step's process, the
default), ``slurm`` (a Slurm job per step through Dagster Pipes) or ``celery`` (in a
``dagster-celery`` worker of the ``gpu`` queue). See ``docs/cluster.md``.

Modules: ``resource`` (``ComputeResource``, what the assets call), ``slurm`` (``sbatch --wait``
and Slurm's records), ``payload`` (the program a Slurm job runs), ``stage_ref`` (stage name →
function), ``metadata`` (Pipes-format metadata → Dagster's), ``executors`` (the GPU pool,
the Celery executor and the queue tags).

A Slurm job runs ``python -m quanta_assets.compute.payload``, which must not import Dagster (only
``dagster-pipes``); so this ``__init__`` imports nothing itself and loads ``ComputeResource`` on
first access (PEP 562): ``from quanta_assets.compute import ComputeResource`` works as usual.
"""


def __getattr__(name: str):
    if name != "ComputeResource":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from quanta_assets.compute.resource import ComputeResource

    return ComputeResource
