"""The ``celery`` engine: ``dagster-celery``'s executor on a real Redis, two real workers (queues
``gpu`` and ``cpu``); the GPU-heavy step must run in the ``gpu`` worker, the other in the ``cpu``
worker, and give the same bytes as a local run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest

from support.dagster_deployment import BIN, REPO, base_env, new_instance_home

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def ancestors(pid: int) -> list[int]:
    """``pid``'s parent, grandparent … (from /proc)."""
    chain = []
    while pid > 1:
        status = Path(f"/proc/{pid}/status").read_text()
        pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        chain.append(pid)
    return chain


@pytest.fixture
def celery_workers(redis_broker, tmp_path):
    """A ``DAGSTER_HOME`` and two workers (``gpu@…``, ``cpu@…``, one process slot each)."""
    home, cache = tmp_path / "dagster_home", tmp_path / "cache"
    new_instance_home(home)
    env = base_env(home, cache, {"QUANTA_COMPUTE": "celery", "QUANTA_CELERY_BROKER": redis_broker,
                                 "QUANTA_CELERY_BACKEND": redis_broker})
    workers = {}
    for queue in ("gpu", "cpu"):
        log = tmp_path / f"worker-{queue}.log"
        with open(log, "wb") as out:
            workers[queue] = (subprocess.Popen(
                [BIN / "dagster-celery", "worker", "start", "-A", "dagster_celery.app", "-y",
                 str(REPO / "scripts" / "celery-worker.yaml"), "-q", queue, "-n", queue, "--", "-c", "1"],
                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True), log)
    try:
        deadline = time.monotonic() + 180
        while not all(f"{q}@" in log.read_text() and " ready." in log.read_text() for q, (_, log) in workers.items()):
            assert time.monotonic() < deadline, [log.read_text()[-2000:] for _, log in workers.values()]
            time.sleep(0.5)
        yield env, {queue: proc.pid for queue, (proc, _) in workers.items()}
    finally:
        for proc, _ in workers.values():
            os.killpg(proc.pid, signal.SIGTERM)  # the worker's own process group (celery and its pool)
            proc.wait(60)


def test_gpu_step_runs_in_the_gpu_worker_with_local_results(celery_workers, local_results):
    env, worker_pids = celery_workers
    proc = subprocess.run([BIN / "dagster", "asset", "materialize", "-m", "support.cluster_location", "--select", "*",
                           "--partition", "s1"], check=False, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert 'Submitting celery task for step "tiny_losses" to queue "gpu"' in proc.stderr
    assert 'Submitting celery task for step "tiny_tokens" to queue "cpu"' in proc.stderr

    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    metadata = {}
    for asset in ("tiny_tokens", "tiny_losses"):
        record = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records[0]
        metadata[asset] = {k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()}
    gpu, cpu = metadata["tiny_losses"], metadata["tiny_tokens"]
    assert gpu["compute_backend"] == "celery" and gpu["celery_worker"].startswith("gpu@"), gpu
    assert cpu["celery_worker"].startswith("cpu@"), cpu
    assert worker_pids["gpu"] in ancestors(gpu["compute_pid"])  # a process of the gpu worker
    assert worker_pids["cpu"] in ancestors(cpu["compute_pid"])

    data, local_metadata = local_results("s1")
    assert (Path(env["QUANTA_CACHE_DIR"]) / "tiny" / "s1" / "losses.npy").read_bytes() == data
    assert gpu["sha256"] == local_metadata["sha256"]
