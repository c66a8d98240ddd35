"""Release the pool slot of a dead run now: ``python -m quanta_assets.run_release <run id> …``.

For a run that shows STARTING, STARTED or CANCELING although its processes are gone (a host crash,
an OOM kill of the whole tree; see docs/operations.md, "What happens when…"): marks it CANCELED,
as the UI's Terminate → "Force termination immediately" does, so queued GPU runs can start.
Check first that nothing of the run still runs (``ps``, ``squeue``): a released run that is in fact
alive would run alongside the next one. Runs against ``$DAGSTER_HOME``.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg

RELEASABLE = {dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING,
              dg.DagsterRunStatus.NOT_STARTED}


def release_run(instance: dg.DagsterInstance, run_id: str) -> str:
    """Mark run ``run_id`` CANCELED if it is still in progress; returns what was done (one line)."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return f"{run_id}: no such run"
    if run.status not in RELEASABLE:
        return f"{run_id}: {run.status.value}, nothing to release"
    instance.report_run_canceled(run, message=f"Released by an operator (python -m quanta_assets.run_release): "
                                              f"was {run.status.value} with its processes gone.")
    return f"{run_id}: {run.status.value} → CANCELED, its pool slot is free"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quanta_assets.run_release", description=__doc__.split("\n")[0])
    parser.add_argument("run_ids", nargs="+", help="the runs to release (Runs → the run's id)")
    args = parser.parse_args(argv)
    with dg.DagsterInstance.get() as instance:
        for run_id in args.run_ids:
            print(release_run(instance, run_id))
    return 0


if __name__ == "__main__":
    sys.exit(main())
