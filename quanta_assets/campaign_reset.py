"""Give a campaign's spent attempts back: ``python -m quanta_assets.campaign_reset <campaign> [partition …]``.

Tags the campaign's failed and canceled runs (of the given partitions; all when none is given)
with ``quanta/attempt_reset`` (the UI shows the tag on each run); the schedule no longer counts
them against ``max_attempts``, so its next tick requests the partitions again (with new run
keys). Use it once the cause of the failures is fixed. Runs against ``$DAGSTER_HOME``.
"""

from __future__ import annotations

import argparse
import sys
import time

import dagster as dg

from quanta_assets.campaign_needs import RESET_TAG
from quanta_assets.schedules import CAMPAIGN_TAG, FAILED_STATUSES, PARTITION_TAG


def reset_attempts(instance: dg.DagsterInstance, campaign: str, partitions: list[str] | None = None) -> list[str]:
    """Tag the campaign's failed runs (of ``partitions``) as reset; returns their run ids."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={CAMPAIGN_TAG: campaign}, statuses=list(FAILED_STATUSES)))
    chosen = [r for r in runs
              if not r.tags.get(RESET_TAG) and (not partitions or r.tags.get(PARTITION_TAG) in partitions)]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for run in chosen:
        instance.add_run_tags(run.run_id, {RESET_TAG: stamp})
    return [r.run_id for r in chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quanta_assets.campaign_reset", description=__doc__.split("\n")[0])
    parser.add_argument("campaign", help="the campaign's name (campaigns.yaml), e.g. pythia-70m-all")
    parser.add_argument("partitions", nargs="*", help='partition keys, e.g. "pythia-70m|step1000" (default: all)')
    args = parser.parse_args(argv)
    with dg.DagsterInstance.get() as instance:
        reset = reset_attempts(instance, args.campaign, args.partitions)
    print(f"campaign {args.campaign}: {len(reset)} failed runs no longer count as attempts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
