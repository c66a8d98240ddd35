"""A one-asset job for tests/assets/test_orphans.py: a GPU stage that says it started (its pid), sleeps
``$ORPHAN_SLEEP_S`` seconds, then writes ``$ORPHAN_OUTPUT``. Run as ``python orphan_location.py``:
the run worker (``execute_job`` with the multiprocess executor: the step in a child process)."""

import os
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np

from quanta_assets.compute import ComputeResource
from quanta_core import store


def slow_stage(params: dict, log) -> dict:
    Path(params["output"]).parent.mkdir(parents=True, exist_ok=True)
    Path(params["output"] + ".pid").write_text(str(os.getpid()))
    time.sleep(float(params["sleep_s"]))
    store.write_value(params["output"], np.ones(10, dtype=np.float32))
    return {"done": True}


@dg.asset(pool="gpu")
def slow_gpu(context: dg.AssetExecutionContext, compute: ComputeResource) -> dg.MaterializeResult:
    params = {"output": os.environ["ORPHAN_OUTPUT"], "sleep_s": os.environ.get("ORPHAN_SLEEP_S", "4")}
    return compute.run(context, "orphan_location:slow_stage", params)


def orphan_job() -> dg.JobDefinition:
    defs = dg.Definitions(assets=[slow_gpu], jobs=[dg.define_asset_job("orphan_job", [slow_gpu])],
                          resources={"compute": ComputeResource(backend="local")})
    return defs.resolve_job_def("orphan_job")


if __name__ == "__main__":
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(dg.reconstructable(orphan_job), instance=instance)
    sys.exit(0 if result.success else 1)
