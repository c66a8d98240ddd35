"""The ``compute`` resource: where a GPU-heavy stage runs (``local`` | ``slurm`` | ``celery``).

Every field defaults from the environment when left unset (``None``), so one code location serves
a laptop and a cluster: ``backend`` ← ``$QUANTA_COMPUTE`` (else ``local``); the Slurm fields ←
``$QUANTA_SLURM_<FIELD>`` (``PARTITION``, ``ACCOUNT``, ``GPUS``, ``CPUS``, ``MEMORY``, ``TIME``,
``EXTRA_ARGS``, ``MODEL_OVERRIDES`` as JSON, ``PYTHON``, ``LAUNCHER``). Where a stage runs never changes what it
computes, so none of these fields belongs in a code version.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path

import dagster as dg

from quanta_assets.compute.lifeline import die_with_run_worker
from quanta_assets.compute.metadata import to_dagster_metadata
from quanta_assets.compute.slurm import SlurmJobSpec, run_as_slurm_job
from quanta_assets.compute.stage_ref import run_stage
from quanta_core.environment import env_value
from quanta_core.paths import default_cache_dir

BACKENDS = ("local", "slurm", "celery")
BACKEND_ENV = "QUANTA_COMPUTE"
OVERRIDE_KEYS = ("partition", "account", "gpus", "cpus", "memory", "time_limit", "extra_args")


def resolve_backend(backend: str | None = None) -> str:
    """``backend``, else ``$QUANTA_COMPUTE``, else ``local``; a clear error for anything else."""
    value = backend or env_value(BACKEND_ENV) or "local"
    if value not in BACKENDS:
        raise ValueError(f"compute backend {value!r} (from {'the resource' if backend else '$' + BACKEND_ENV}) "
                         f"is not one of {', '.join(BACKENDS)}")
    return value


def _env(name: str) -> str | None:
    return env_value(f"QUANTA_SLURM_{name}")


class ComputeResource(dg.ConfigurableResource):
    """Where GPU-heavy stages run. ``slurm_*``: what each Slurm job asks for (unset: the cluster's
    default; ``slurm_gpus`` default 1); ``slurm_time_limit`` in Slurm's format (``"4:00:00"``);
    ``slurm_memory`` as ``--mem`` (``"32G"``); ``slurm_extra_args`` a shell-quoted string of
    further ``sbatch`` options; ``slurm_model_overrides`` a JSON object mapping a model name or
    glob (``"pythia-12b*"``) to any of partition, account, gpus, cpus, memory, time_limit,
    extra_args; ``slurm_python`` the interpreter on the nodes (default this one);
    ``slurm_launcher`` ``sbatch`` (default: ``sbatch --wait``) or ``srun`` (see ``SlurmJobSpec``);
    ``shared_dir`` a directory every node sees, for the Pipes files and the job logs (default the
    cache, ``$QUANTA_CACHE_DIR``)."""

    backend: str | None = None
    slurm_partition: str | None = None
    slurm_account: str | None = None
    slurm_gpus: int | None = None
    slurm_cpus: int | None = None
    slurm_memory: str | None = None
    slurm_time_limit: str | None = None
    slurm_extra_args: str | None = None
    slurm_model_overrides: str | None = None
    slurm_python: str | None = None
    slurm_launcher: str | None = None
    shared_dir: str | None = None

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """In a step's own process: die with the run worker (no orphan; see ``lifeline``)."""
        die_with_run_worker()

    @property
    def resolved_backend(self) -> str:
        return resolve_backend(self.backend)

    def _overrides(self, model: str | None) -> dict:
        text = self.slurm_model_overrides or _env("MODEL_OVERRIDES")
        if not text or model is None:
            return {}
        try:
            table = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"slurm_model_overrides / $QUANTA_SLURM_MODEL_OVERRIDES is not JSON: {e}") from e
        for pattern, values in table.items():
            unknown = set(values) - set(OVERRIDE_KEYS)
            if unknown:
                raise ValueError(f"slurm_model_overrides[{pattern!r}]: unknown keys {sorted(unknown)} "
                                 f"(allowed: {', '.join(OVERRIDE_KEYS)})")
            if fnmatch.fnmatchcase(model, pattern):
                return values
        return {}

    def job_spec(self, model: str | None = None) -> SlurmJobSpec:
        """The Slurm request for a stage of ``model``: fields, then environment, then the model's overrides."""
        base = {"partition": self.slurm_partition or _env("PARTITION"),
                "account": self.slurm_account or _env("ACCOUNT"),
                "gpus": self.slurm_gpus if self.slurm_gpus is not None else int(_env("GPUS") or 1),
                "cpus": self.slurm_cpus or (int(_env("CPUS")) if _env("CPUS") else None),
                "memory": self.slurm_memory or _env("MEMORY"),
                "time_limit": self.slurm_time_limit or _env("TIME"),
                "extra_args": self.slurm_extra_args or _env("EXTRA_ARGS") or ""}
        merged = {**base, **self._overrides(model)}
        merged["extra_args"] = tuple(shlex.split(str(merged["extra_args"])))
        merged["gpus"] = int(merged["gpus"])
        merged["cpus"] = int(merged["cpus"]) if merged["cpus"] is not None else None
        return SlurmJobSpec(python=self.slurm_python or _env("PYTHON") or sys.executable,
                            launcher=self.slurm_launcher or _env("LAUNCHER") or "sbatch", **merged)

    def run(self, context: dg.AssetExecutionContext, stage: str, params: dict,
            model: str | None = None) -> dg.MaterializeResult:
        """Run ``stage`` (see ``stage_ref``) with JSON-able ``params`` on this backend; returns the
        materialization with the stage's metadata (plus where it ran)."""
        json.dumps(params)  # fail here, not on a node, if params are not JSON-able
        backend = self.resolved_backend
        if backend == "slurm":
            shared = Path(self.shared_dir or default_cache_dir())
            return run_as_slurm_job(context, self.job_spec(model), stage, params, shared)
        return _run_in_process(context, stage, params, backend)


def _run_in_process(context, stage: str, params: dict, backend: str) -> dg.MaterializeResult:
    where = {"compute_backend": backend, "compute_host": socket.gethostname(), "compute_pid": os.getpid()}
    if backend == "celery":
        where["celery_worker"] = _celery_worker()
    started = time.monotonic()
    metadata = to_dagster_metadata(run_stage(stage, params, context.log.info))
    where["stage_seconds"] = dg.MetadataValue.float(time.monotonic() - started)
    return dg.MaterializeResult(metadata={**metadata, **where})


def _celery_worker() -> str:
    from celery import current_task

    if not current_task or not current_task.request.hostname:
        raise RuntimeError("compute backend 'celery' but this step is not running in a Celery worker: the code "
                           "location's executor must be quanta_assets.compute.executors.executor_for_backend()")
    return current_task.request.hostname
