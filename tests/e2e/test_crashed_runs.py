"""A crashed run releases the gpu pool within the bound run_monitoring sets (dagster.yaml).

A real ``dagster dev`` over the repository's ``dagster.yaml`` (its run_monitoring timeouts scaled
down so the test takes about a minute: max_runtime_seconds 20, poll_interval_seconds 2). A GPU run is
started, then every process of the deployment is killed with SIGKILL (a host crash, an OOM kill of
the whole tree: code server, run worker, step); a new ``dagster dev`` on the same instance comes up
and a second GPU run is queued. The dead run must be marked failed by the run monitor and the
second run must start within max_runtime_seconds + poll_interval_seconds of the crash, never
alongside it. ``QUANTA_TEST_NO_RUN_MONITORING=1`` drops the run_monitoring section (what the
repository had before): the second run then stays queued.
"""

from __future__ import annotations

import os
import signal
import time

import dagster as dg
import pytest

from support.dagster_deployment import REPO, Deployment

MAX_RUNTIME_S, POLL_S = 20, 2


def scaled_dagster_yaml() -> str:
    text = (REPO / "dagster.yaml").read_text()
    if os.environ.get("QUANTA_TEST_NO_RUN_MONITORING") == "1":
        return text.split("\nrun_monitoring:")[0]
    assert "max_runtime_seconds: 7200" in text and "poll_interval_seconds: 30" in text
    return text.replace("max_runtime_seconds: 7200", f"max_runtime_seconds: {MAX_RUNTIME_S}").replace(
        "poll_interval_seconds: 30", f"poll_interval_seconds: {POLL_S}")


def _wait_status(deployment: Deployment, run_id: str, statuses: set, timeout: float) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = deployment.instance.get_run_by_id(run_id)
        if run is not None and run.status in statuses:
            return run
        time.sleep(0.5)
    raise TimeoutError(f"run {run_id} not in {statuses} after {timeout} s (now {run.status if run else None})")


@pytest.mark.slow
def test_a_crashed_run_releases_the_pool_within_the_bound(tmp_path):
    deployment = Deployment(tmp_path, {}, dagster_yaml=scaled_dagster_yaml())
    try:
        deployment.start()
        crashed = deployment.submit("s0", config={"sleep_s": 600})
        _wait_status(deployment, crashed, {dg.DagsterRunStatus.STARTED}, 300)
        time.sleep(3)  # the step is running its stage
        os.killpg(deployment.proc.pid, signal.SIGKILL)  # every process of the deployment at once
        deployment.proc.wait()
        crashed_at = time.time()
        deployment.start()
        waiting = deployment.submit("s1")
        finished = deployment.wait(waiting, timeout=MAX_RUNTIME_S + POLL_S + 300)
        records = {r.dagster_run.run_id: r for r in deployment.instance.get_run_records(
            dg.RunsFilter(run_ids=[crashed, waiting]))}
        dead, later = records[crashed], records[waiting]
        blocked = later.start_time - crashed_at
        print(f"the crashed run blocked the gpu pool {blocked:.1f} s after the crash "
              f"(bound {MAX_RUNTIME_S + POLL_S} s + start-up)")
        assert finished.status == dg.DagsterRunStatus.SUCCESS
        assert dead.dagster_run.status == dg.DagsterRunStatus.FAILURE
        assert later.start_time >= dead.end_time  # never both at once
        assert later.start_time - dead.start_time <= MAX_RUNTIME_S + 2 * POLL_S + 30  # the daemon's loop, a launch
    finally:
        deployment.stop()
