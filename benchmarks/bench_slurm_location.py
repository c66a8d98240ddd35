"""The benchmark's code location (``benchmarks/bench_slurm.py`` runs it): N independent assets
``part_00`` … , one per partition of the campaign, all in flight at once, each one stage
(``bench_slurm_stage.sleep_stage``) run by the ``compute`` resource."""

import os

import dagster as dg

from quanta_assets.compute import ComputeResource

N = int(os.environ.get("BENCH_SLURM_PARTITIONS", "8"))
SECONDS = float(os.environ.get("BENCH_SLURM_SECONDS", "5"))


def make(i: int) -> dg.AssetsDefinition:
    @dg.asset(name=f"part_{i:02d}", pool="gpu")
    def part(context: dg.AssetExecutionContext, compute: ComputeResource) -> dg.MaterializeResult:
        return compute.run(context, "bench_slurm_stage:sleep_stage", {"seconds": SECONDS}, model="bench")

    return part


defs = dg.Definitions(assets=[make(i) for i in range(N)], resources={"compute": ComputeResource()},
                      executor=dg.multiprocess_executor.configured({"max_concurrent": N}))
