"""Benchmark: a campaign of N partitions through the ``slurm`` compute backend on the private
two-node test cluster (``scripts/local_cluster.py``: 2 nodes × 1 fake GPU) vs ``local``.

Each partition is one step whose stage sleeps ``--seconds`` (no GPU work, so what is left is the
Slurm path's overhead). All N steps are in flight at once (Dagster's multiprocess executor); Slurm
runs two at a time (one per GPU). Per partition, from the materialization's metadata and the
stage's own clock (one host, one clock):

* submit → stage starts: ``sbatch``, Slurm's queue wait and scheduling, job launch, Python and
  payload start-up (``slurm_queue_wait_s`` is the part spent waiting for a free GPU);
* stage ends → results visible to Dagster: job end, ``sbatch --wait`` noticing it (it polls the
  controller every 2 s, ×4 up to 32 s while under ``MinJobAge``/2; ``srun`` is told at once),
  Slurm's record, Pipes' last messages;
* overhead = ``slurm_wall_s`` − stage seconds − GPU wait.

Configurations ``LAUNCHER:MINJOBAGE``: ``sbatch:300`` is ``sbatch --wait`` on a cluster with
Slurm's default ``MinJobAge``; ``sbatch:4`` the tests' cluster; ``srun:300`` the ``srun`` launcher.

    python benchmarks/bench_slurm.py                       # N=8, 5 s stages, the three configurations
    python benchmarks/bench_slurm.py --partitions 16 --seconds 20 --configs sbatch:300

Needs root and the packages of ``scripts/install-cluster-deps.sh``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
N = int(os.environ.get("BENCH_SLURM_PARTITIONS", "8"))
SECONDS = float(os.environ.get("BENCH_SLURM_SECONDS", "5"))


def _campaign(backend: str, root: Path, slurm_conf: str | None, launcher: str = "sbatch") -> dict:
    """Materialize every ``part_*`` with ``backend``; the per-partition figures (s)."""
    import dagster as dg

    home, cache = root / f"home-{backend}", root / f"cache-{backend}"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "QUANTA_CACHE_DIR": str(cache), "QUANTA_COMPUTE": backend,
           "BENCH_SLURM_PARTITIONS": str(N), "BENCH_SLURM_SECONDS": str(SECONDS),
           "QUANTA_SLURM_LAUNCHER": launcher, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])}
    if slurm_conf:
        env["SLURM_CONF"] = slurm_conf
    bin_dir = Path(sys.executable).parent
    subprocess.run([bin_dir / "dagster", "instance", "migrate"], env=env, check=True, capture_output=True)
    started = time.time()
    proc = subprocess.run([bin_dir / "dagster", "asset", "materialize", "-m", "bench_slurm_location", "--select", "*"],
                          env=env, capture_output=True, text=True, cwd=root, check=False)
    wall = time.time() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-4000:])
    instance = dg.DagsterInstance.from_config(str(home))
    rows = []
    for i in range(N):
        record = instance.fetch_materializations(dg.AssetKey(f"part_{i:02d}"), limit=1).records[0]
        meta = {k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()}
        visible = record.timestamp
        row = {"stage_s": meta["ended_at"] - meta["started_at"]}
        if backend == "slurm":
            submitted = visible - meta["slurm_wall_s"]
            row.update(submit_to_start_s=meta["started_at"] - submitted, end_to_visible_s=visible - meta["ended_at"],
                       gpu_wait_s=meta["slurm_queue_wait_s"], wall_s=meta["slurm_wall_s"], node=meta["slurm_node"])
            row["overhead_s"] = row["wall_s"] - row["stage_s"] - row["gpu_wait_s"]
        rows.append(row)
    return {"campaign_wall_s": wall, "rows": rows}


def _summary(label: str, result: dict) -> None:
    rows = result["rows"]
    print(f"\n{label}: campaign of {N} partitions × {SECONDS:g} s stages, wall {result['campaign_wall_s']:.1f} s "
          f"(dagster asset materialize, process start-up included)")
    for key in ("stage_s", "submit_to_start_s", "gpu_wait_s", "end_to_visible_s", "overhead_s"):
        if key in rows[0]:
            values = [r[key] for r in rows]
            low, mid, high = min(values), statistics.median(values), max(values)
            print(f"  {key:<18} median {mid:6.2f}  min {low:6.2f}  max {high:6.2f}")
    if "node" in rows[0]:
        print(f"  nodes: {sorted({r['node'] for r in rows})}")


def main() -> None:
    global N, SECONDS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=N)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--configs", nargs="+", default=["sbatch:300", "sbatch:4", "srun:300"])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    N, SECONDS = args.partitions, args.seconds
    spec = importlib.util.spec_from_file_location("local_cluster", REPO / "scripts" / "local_cluster.py")
    local_cluster = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(local_cluster)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
        root = Path(tmp)
        (root / "local").mkdir()
        results["local"] = _campaign("local", root / "local", None)
        _summary("local", results["local"])
        for config in args.configs:
            launcher, age = config.split(":")
            cluster = local_cluster.LocalCluster(root / f"cluster-{config}", min_job_age=int(age)).start()
            try:
                (root / f"slurm-{config}").mkdir()
                results[config] = _campaign("slurm", root / f"slurm-{config}", str(cluster.slurm_conf), launcher)
            finally:
                cluster.stop()
            _summary(f"slurm, {launcher}, MinJobAge={age}", results[config])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
