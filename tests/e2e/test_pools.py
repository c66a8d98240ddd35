"""The GPU pool of the repository's dagster.yaml holds from the first run of a fresh instance.

A real ``dagster dev`` (daemon, run queue, code server) over a new SQLite ``DAGSTER_HOME`` with the
repository's own ``dagster.yaml``, prepared as ``make ui`` prepares it; a backfill of three
partitions of the GPU-heavy ``tiny_losses`` → never more than one of its runs at once.
"""

from __future__ import annotations

import os

import dagster as dg
import pytest

from support.dagster_deployment import REPO, Deployment

PARTITIONS = ["s0", "s1", "s2"]


def max_overlap(records) -> int:
    """Most runs between start and end at one instant (run records' start/end times, seconds)."""
    edges = sorted([(r.start_time, 1) for r in records] + [(r.end_time, -1) for r in records])
    running = peak = 0
    for _, delta in edges:
        running += delta
        peak = max(peak, running)
    return peak


@pytest.mark.slow
def test_gpu_pool_holds_from_the_first_run_of_a_fresh_instance(tmp_path):
    prepare = os.environ.get("QUANTA_TEST_SKIP_INSTANCE_SETUP") != "1"  # "1": show what Dagster does alone
    deployment = Deployment(tmp_path, {}, dagster_yaml=(REPO / "dagster.yaml").read_text(), prepare=prepare)
    try:
        deployment.start()
        backfill = deployment.backfill(PARTITIONS)
        runs = deployment.backfill_runs(backfill, len(PARTITIONS), timeout=600)
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        records = deployment.instance.get_run_records(dg.RunsFilter(run_ids=[r.run_id for r in runs]))
        overlap = max_overlap(records)
        print(f"max GPU runs at once: {overlap} (of {len(records)})")
        assert overlap == 1
    finally:
        deployment.stop()
