"""A bounded fault-injection soak (a few minutes): GPU runs through the daemon's queue while runs are
killed and terminated; at the end every partition is materialized exactly once with the content of
a clean run, no process of the deployment is left, no temporary file, the gpu pool was never
exceeded and the queue is empty. Prints the figures.

Faults, one per run as each reaches its stage: ``kill -9`` of the run worker; Terminate (GraphQL, as
the UI); ``kill -9`` of the run worker and its step process together. Recovery is what an operator
(or a campaign tick) does: submit the partitions without a success again.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import dagster as dg
import pytest
from test_pools import max_overlap

from support.cluster_location import partition_dir
from support.dagster_deployment import FINISHED, REPO, Deployment

PARTITIONS = [f"s{i}" for i in range(6)]
FAULTS = ("kill worker", "terminate", "kill worker and step")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass
    return found


def _processes_of(home: Path) -> list[int]:
    """Live processes whose environment names this DAGSTER_HOME."""
    needle = f"DAGSTER_HOME={home}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0") and _alive(int(environ.parent.name)):
                found.append(int(environ.parent.name))
        except OSError:
            pass
    return found


def _leftovers(home: Path, grace_s: float = 30) -> list[str]:
    """The deployment's processes still alive ``grace_s`` after it was stopped (their command lines)."""
    deadline = time.monotonic() + grace_s
    while _processes_of(home) and time.monotonic() < deadline:
        time.sleep(0.5)
    lines = []
    for pid in _processes_of(home):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            lines.append(f"{pid}: {command[:200]}")
        except OSError:
            pass
    return lines


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    for entry in instance.all_logs(run_id):
        found = re.search(r"pid: (\d+)", entry.message or "")
        if found:
            return int(found.group(1))
    return None


def _in_stage(instance: dg.DagsterInstance, run_id: str) -> bool:
    return any("sleeping 1/" in (e.message or "") for e in instance.all_logs(run_id))


def _inject(deployment: Deployment, run_id: str, fault: str) -> None:
    if fault == "terminate":
        deployment.terminate(run_id)
        return
    worker = _worker_pid(deployment.instance, run_id)
    assert worker is not None, f"no run worker pid logged for {run_id}"
    victims = [worker, *(_children(worker) if fault == "kill worker and step" else [])]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)


def _run_with_faults(deployment: Deployment, run_ids: list[str], timeout: float = 600) -> int:
    """Wait for ``run_ids`` to finish, injecting the next fault into each run that reaches its stage."""
    faults, injected, deadline = list(FAULTS), 0, time.monotonic() + timeout
    touched = set()
    while time.monotonic() < deadline:
        runs = [deployment.instance.get_run_by_id(r) for r in run_ids]
        if all(r.status in FINISHED for r in runs):
            return injected
        for run in runs:
            if faults and run.run_id not in touched and run.status == dg.DagsterRunStatus.STARTED \
                    and _in_stage(deployment.instance, run.run_id):
                _inject(deployment, run.run_id, faults.pop(0))
                touched.add(run.run_id)
                injected += 1
        time.sleep(0.5)
    raise TimeoutError(f"runs not finished after {timeout} s")


@pytest.mark.slow
def test_soak_faults_leave_exactly_one_right_materialization_per_partition(tmp_path, local_results):
    deployment = Deployment(tmp_path / "deploy", {}, dagster_yaml=(REPO / "dagster.yaml").read_text())
    started = time.monotonic()
    try:
        deployment.start()
        first = [deployment.submit(p, config={"sleep_s": 3}) for p in PARTITIONS]
        injected = _run_with_faults(deployment, first)
        requested, retried = list(first), []
        for _ in range(3):  # recovery: submit again what has no success yet
            ok = {r.tags["dagster/partition"] for r in deployment.instance.get_runs(
                dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))}
            again = [deployment.submit(p) for p in PARTITIONS if p not in ok]
            if not again:
                break
            retried += again
            requested += again
            _run_with_faults(deployment, again)
        instance = deployment.instance
        records = instance.get_run_records(dg.RunsFilter(run_ids=requested))
        queued = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
        materialized = [r.partition_key for r in instance.fetch_materializations(
            dg.AssetKey("tiny_losses"), limit=1000).records]
    finally:
        deployment.stop()
    statuses = [r.dagster_run.status for r in records]
    peak = max_overlap([r for r in records if r.start_time and r.end_time])
    temporaries = [p for p in deployment.cache.rglob("*") if ".tmp" in p.name]
    lost = [p for p in PARTITIONS if not (partition_dir(p, str(deployment.cache)) / "losses.npy").is_file()]
    print(f"\nsoak: {len(requested)} runs requested, {statuses.count(dg.DagsterRunStatus.SUCCESS)} succeeded, "
          f"{len(requested) - statuses.count(dg.DagsterRunStatus.SUCCESS)} failed or canceled, {len(retried)} "
          f"retried; {injected} faults injected; max GPU runs at once {peak}; files lost {len(lost)}; "
          f"{time.monotonic() - started:.0f} s")
    assert injected == len(FAULTS) and not lost and not queued and peak == 1
    assert sorted(materialized) == PARTITIONS  # exactly once each: no orphan wrote a second one
    assert not temporaries
    assert not _leftovers(deployment.home)  # no orphan (the deployment's own processes exit on stop)
    for partition in PARTITIONS:
        expected, _ = local_results(partition)
        assert (partition_dir(partition, str(deployment.cache)) / "losses.npy").read_bytes() == expected, partition
