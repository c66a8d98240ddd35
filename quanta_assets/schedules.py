"""Backfill schedules (one per campaign) and the declarative-automation sensor.

Each campaign (``quanta_assets.campaigns``) gets a schedule ``campaign_<name>``, STOPPED until a
person switches it on in the UI (Automation → Schedules). At every tick it looks at the instance:

* a partition is *done* when every campaign asset has a materialization for it;
* a partition is *in flight* when a run for it is queued or running (a campaign run, or another
  one: a UI backfill, an automation run);
* a partition has *failed* ``n`` times when ``n`` campaign runs for it failed or were canceled
  (less those given back, :func:`quanta_assets.campaign_needs.counts_as_attempt`);
* a partition is *waiting* when an unpartitioned upstream asset its runs need was never
  materialized (e.g. ``pile_canonical``): no run is requested, the skip reason names the asset;

and requests runs for the next partitions (in campaign order) that are neither done, in flight,
waiting nor given up (``n >= max_attempts``), so that at most ``batch_size`` runs of the campaign are
queued or running at once. Each request carries ``run_key = "<campaign>:<partition>:try<n+1>"`` — the
daemon never launches the same run key twice for a schedule, so a tick can never duplicate a run —
and the tags ``quanta/campaign`` and ``quanta/pool = gpu``.

The sensor ``quanta_automation`` evaluates the assets' automation conditions (analysis assets
follow new upstream data by themselves); it is STOPPED by default as well.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import dagster as dg

from quanta_assets.campaign_needs import counts_as_attempt, last_materialized, missing_upstream, unpartitioned_upstream
from quanta_assets.campaigns import Campaign, load_campaigns
from quanta_assets.compute.executors import GPU_POOL

CAMPAIGN_TAG = "quanta/campaign"
POOL_TAG = "quanta/pool"
PARTITION_TAG = "dagster/partition"

_IN_FLIGHT = {
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING,
}
FAILED_STATUSES = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@dataclass
class CampaignProgress:
    """Where a campaign stands on an instance. Lists hold partition keys in campaign order."""

    done: list[str]
    in_flight: list[str]
    given_up: list[str]
    todo: list[str]  # neither done, in flight, waiting nor given up
    attempts: dict[str, int]  # failed/canceled campaign runs per partition that still count
    waiting: dict[str, list[str]] = field(default_factory=dict)  # partition → missing upstream assets
    tries: dict[str, int] = field(default_factory=dict)  # every failed/canceled campaign run (run keys stay new)

    def summary(self, total: int) -> str:
        waiting = ""
        if self.waiting:
            names = sorted({name for missing in self.waiting.values() for name in missing})
            waiting = (f"{len(self.waiting)} waiting for {', '.join(names)} (unpartitioned, never materialized: "
                       "materialize it first), ")
        return (f"{len(self.done)}/{total} done, {len(self.in_flight)} in flight, {waiting}"
                f"{len(self.given_up)} given up after failures, {len(self.todo)} to do")


def _model(partition: str | None) -> str:
    return (partition or "").split("|")[0]


def campaign_progress(instance: dg.DagsterInstance, campaign: Campaign, asset_graph=None) -> CampaignProgress:
    """Read the instance: materializations of the campaign assets and the campaign's runs;
    with ``asset_graph`` (the code location's), also the unpartitioned upstream assets."""
    keys = campaign.partition_keys()
    materialized = None
    for asset in campaign.assets:
        have = set(instance.get_materialized_partitions(dg.AssetKey.from_user_string(asset)))
        materialized = have if materialized is None else materialized & have
    upstream = last_materialized(instance, unpartitioned_upstream(asset_graph, campaign.assets)) if asset_graph else {}
    records = instance.get_run_records(filters=dg.RunsFilter(tags={CAMPAIGN_TAG: campaign.name}))
    runs = [r.dagster_run for r in records]
    failed = [r for r in records if r.dagster_run.status in FAILED_STATUSES]
    attempts = Counter(r.dagster_run.tags.get(PARTITION_TAG) for r in failed
                       if counts_as_attempt(r, upstream, _model(r.dagster_run.tags.get(PARTITION_TAG))))
    # in flight: this campaign's runs, and any other run of the partition (a UI backfill, automation)
    others = instance.get_runs(filters=dg.RunsFilter(statuses=list(_IN_FLIGHT)))
    in_flight = {r.tags.get(PARTITION_TAG) for r in [*runs, *others] if r.status in _IN_FLIGHT}
    tries = Counter(r.dagster_run.tags.get(PARTITION_TAG) for r in failed)
    progress = CampaignProgress([], [], [], [], dict(attempts), tries=dict(tries))
    for key in keys:
        missing = missing_upstream(upstream, _model(key))
        if key in materialized:
            progress.done.append(key)
        elif key in in_flight:
            progress.in_flight.append(key)
        elif missing:
            progress.waiting[key] = missing
        elif attempts[key] >= campaign.max_attempts:
            progress.given_up.append(key)
        else:
            progress.todo.append(key)
    return progress


def campaign_runs_in_flight(instance: dg.DagsterInstance, campaign: Campaign) -> list:
    return instance.get_runs(filters=dg.RunsFilter(tags={CAMPAIGN_TAG: campaign.name}, statuses=list(_IN_FLIGHT)))


def campaign_run_requests(instance: dg.DagsterInstance, campaign: Campaign,
                          asset_graph=None) -> list[dg.RunRequest] | dg.SkipReason:
    """The runs one tick should request: the next missing partitions, up to ``batch_size`` in flight."""
    progress = campaign_progress(instance, campaign, asset_graph)
    total = len(campaign.partition_keys())
    ours = len(campaign_runs_in_flight(instance, campaign))
    free = campaign.batch_size - ours
    if not progress.todo:
        return dg.SkipReason(f"campaign {campaign.name}: nothing left to request ({progress.summary(total)})")
    if free <= 0:
        return dg.SkipReason(f"campaign {campaign.name}: {ours} runs in flight "
                             f"(batch_size {campaign.batch_size}); {progress.summary(total)}")
    return [
        dg.RunRequest(
            run_key=f"{campaign.name}:{key}:try{progress.tries.get(key, 0) + 1}",
            partition_key=key,
            tags={CAMPAIGN_TAG: campaign.name, POOL_TAG: GPU_POOL},
        )
        for key in progress.todo[:free]
    ]


def campaign_job(campaign: Campaign) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        f"{campaign.schedule_name}_job",
        selection=dg.AssetSelection.assets(*[dg.AssetKey.from_user_string(a) for a in campaign.assets]),
        description=f"Materializes {', '.join(campaign.assets)} for one partition of campaign {campaign.name}.",
    )


def campaign_schedule(campaign: Campaign) -> dg.ScheduleDefinition:
    """The STOPPED-by-default schedule that works through ``campaign``."""
    total = len(campaign.partition_keys())

    @dg.schedule(
        name=campaign.schedule_name,
        cron_schedule=campaign.cron,
        job=campaign_job(campaign),
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Campaign {campaign.name} ({campaign.source}): {', '.join(campaign.models)} × {len(campaign.steps)} "
            f"steps = {total} partitions. Each tick requests the next missing partitions, keeping at most "
            f"{campaign.batch_size} runs in flight. {campaign.description}"
        ),
        tags={CAMPAIGN_TAG: campaign.name},
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        requests = campaign_run_requests(context.instance, campaign, context.repository_def.asset_graph)
        if not isinstance(requests, dg.SkipReason):
            context.log.info(f"campaign {campaign.name}: requesting {[r.partition_key for r in requests]}")
        return requests

    return _schedule


automation_sensor = dg.AutomationConditionSensorDefinition(
    "quanta_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=30,
    description=(
        "Evaluates the assets' automation conditions: when new upstream data lands (e.g. pile_losses "
        "for a checkpoint), the analysis assets downstream (similarity → clusters → report, training "
        "dynamics) are requested for the affected partitions. Switch on in Automation → Sensors."
    ),
)

CAMPAIGNS = load_campaigns()
SCHEDULES = [campaign_schedule(c) for c in CAMPAIGNS]
SENSORS = [automation_sensor]
