"""The ``slurm`` compute backend on a real (private, two-node) Slurm cluster, driven through a real
Dagster deployment (daemon, run queue, pools) as a user's campaign is.

Partitions s0–s3: the campaign; s4: a Python error; s5: the time limit; s6: termination; s7: a node
failure. Each test reads Slurm's own records (``sacct``, ``squeue``) as the independent witness.
"""

from __future__ import annotations

import itertools
import time

import dagster as dg
import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def sacct(cluster, job_ids: list[str], columns: str = "JobID,State,AllocTRES,NodeList,Start,End") -> dict:
    """Slurm's accounting rows (allocation only) by job id, waiting (≤ 30 s) until each is final."""
    deadline = time.monotonic() + 30
    while True:
        out = cluster.client(["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", columns]).stdout
        rows = {line.split("|")[0]: dict(zip(columns.split(","), line.split("|"))) for line in out.splitlines()}
        final = all(j in rows and rows[j]["State"] not in ("PENDING", "RUNNING", "COMPLETING") for j in job_ids)
        if final or time.monotonic() > deadline:
            return rows
        time.sleep(1)


def wait_for_running_job(cluster, timeout: float = 180) -> tuple[str, str]:
    """(job id, node) of the one job RUNNING in the stage (its log says it is sleeping)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = cluster.client(["squeue", "-h", "-t", "RUNNING", "-o", "%A %N"]).stdout.split()
        if len(out) == 2:
            return out[0], out[1]
        time.sleep(0.5)
    raise TimeoutError("no running Slurm job")


def squeue_empty(cluster, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not cluster.client(["squeue", "-h"]).stdout.strip():
            return True
        time.sleep(0.5)
    return False


def leftovers(deployment, partition: str, failed: bool = True) -> list[str]:
    """Files a later run could mistake for output: temporaries, Pipes files, and (``failed``) the output."""
    folder = deployment.cache / "tiny" / partition
    names = [p.name for p in folder.iterdir() if p.name.startswith(".") or (failed and p.name == "losses.npy")]
    pipes = deployment.cache / ".pipes"
    return names + ([str(p) for p in pipes.rglob("*")] if pipes.exists() else [])


def test_campaign_partitions_run_as_slurm_jobs_bit_identical_to_local(slurm_cluster, slurm_deployment, local_results):
    partitions = ["s0", "s1", "s2", "s3"]
    slurm_deployment.set_pool_limit("gpu", 4)
    runs = slurm_deployment.backfill_runs(slurm_deployment.backfill(partitions), 4, timeout=900)
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}, slurm_deployment.log.read_text()[-3000:]

    job_of = {}
    for run in runs:
        partition = run.tags["dagster/partition"]
        metadata = slurm_deployment.materialization(run.run_id, "tiny_losses")
        assert metadata["compute_backend"] == "slurm" and metadata["slurm_state"] == "COMPLETED"
        assert metadata["slurm_queue_wait_s"] >= 0 and metadata["slurm_run_time_s"] >= 0
        job_of[partition] = metadata["slurm_job_id"]
        data, local_metadata = local_results(partition)
        assert (slurm_deployment.cache / "tiny" / partition / "losses.npy").read_bytes() == data, partition
        for key in ("sha256", "mean_loss_nats", "shape"):
            assert metadata[key] == local_metadata[key], (partition, key)

    rows = sacct(slurm_cluster, list(job_of.values()))
    assert [rows[j]["State"] for j in job_of.values()] == ["COMPLETED"] * 4, rows
    assert all("gres/gpu=1" in rows[j]["AllocTRES"] for j in job_of.values()), rows
    assert {rows[j]["NodeList"] for j in job_of.values()} == {"n1", "n2"}, rows
    assert [leftovers(slurm_deployment, p, failed=False) for p in partitions] == [[]] * 4


@pytest.mark.parametrize("launcher", ["sbatch", "srun"])
def test_python_error_fails_the_step_with_slurm_state(slurm_cluster, slurm_deployment, launcher):
    run_id = slurm_deployment.submit("s4", {"fail": True}, compute={"slurm_launcher": launcher})
    run = slurm_deployment.wait(run_id, timeout=300)
    assert run.status == dg.DagsterRunStatus.FAILURE
    text = slurm_deployment.failure_text(run.run_id)
    assert "ValueError: tiny_losses was asked to fail (seed 4)" in text, text
    assert "ended FAILED (exit code 1:0)" in text, text
    assert "Traceback" in text  # the tail of the job's stderr
    assert leftovers(slurm_deployment, "s4") == []


def test_time_limit_reports_timeout(slurm_cluster, slurm_deployment):
    run_id = slurm_deployment.submit("s5", {"sleep_s": 600}, compute={"slurm_time_limit": "1"})
    run = slurm_deployment.wait(run_id, timeout=400)
    assert run.status == dg.DagsterRunStatus.FAILURE
    text = slurm_deployment.failure_text(run.run_id)
    assert "ended TIMEOUT" in text, text
    assert leftovers(slurm_deployment, "s5") == []


@pytest.mark.parametrize("launcher", ["sbatch", "srun"])
def test_terminating_the_run_cancels_the_job(slurm_cluster, slurm_deployment, tmp_path, launcher):
    hold = tmp_path / "hold"
    hold.touch()
    run_id = slurm_deployment.submit("s6", {"sleep_s": 600, "hold_while": str(hold)},
                                     compute={"slurm_launcher": launcher})
    job_id, _node = wait_for_running_job(slurm_cluster)
    slurm_deployment.terminate(run_id)
    run = slurm_deployment.wait(run_id, timeout=180)
    assert run.status == dg.DagsterRunStatus.CANCELED
    assert squeue_empty(slurm_cluster), slurm_cluster.client(["squeue"]).stdout
    assert sacct(slurm_cluster, [job_id])[job_id]["State"].startswith("CANCELLED")
    assert leftovers(slurm_deployment, "s6") == []


def test_node_failure_fails_the_step_and_reexecution_succeeds(slurm_cluster, slurm_deployment, tmp_path,
                                                               local_results):
    hold = tmp_path / "hold"
    hold.touch()
    run_id = slurm_deployment.submit("s7", {"sleep_s": 600, "hold_while": str(hold)})
    job_id, node = wait_for_running_job(slurm_cluster)
    time.sleep(2)  # the payload is inside the stage
    slurm_cluster.kill_node(node)
    run = slurm_deployment.wait(run_id, timeout=300)
    assert run.status == dg.DagsterRunStatus.FAILURE
    text = slurm_deployment.failure_text(run.run_id)
    assert f"Slurm job {job_id} ended NODE_FAIL" in text, text
    assert leftovers(slurm_deployment, "s7") == []

    slurm_cluster.start_node(node)
    hold.unlink()
    retry = slurm_deployment.wait(slurm_deployment.reexecute_from_failure(run_id), timeout=400)
    assert retry.status == dg.DagsterRunStatus.SUCCESS, slurm_deployment.failure_text(retry.run_id)
    assert (slurm_deployment.cache / "tiny" / "s7" / "losses.npy").read_bytes() == local_results("s7")[0]


def test_gpu_pool_limit_holds_backfill_runs_in_the_queue(slurm_cluster, slurm_deployment):
    """Pool ``gpu`` limited to 1: a backfill of 3 partitions runs one at a time although the cluster
    has two free GPUs and the run queue allows 8 runs: no two Slurm jobs overlap."""
    slurm_deployment.set_pool_limit("gpu", 1)
    try:
        runs = slurm_deployment.backfill_runs(slurm_deployment.backfill(["s0", "s1", "s2"]), 3, timeout=900)
    finally:
        slurm_deployment.set_pool_limit("gpu", 4)
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    jobs = [slurm_deployment.materialization(r.run_id, "tiny_losses")["slurm_job_id"] for r in runs]
    rows = sacct(slurm_cluster, jobs)
    spans = sorted((rows[j]["Start"], rows[j]["End"]) for j in jobs)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans)), spans
    records = slurm_deployment.instance.get_run_records(filters=dg.RunsFilter(run_ids=[r.run_id for r in runs]))
    times = sorted((r.start_time, r.end_time) for r in records)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(times)), times

