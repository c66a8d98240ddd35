"""A throwaway code location for the orchestration tests: the real asset names, partitions, pools
and automation conditions, trivial bodies (no data), two settings resources, one campaign schedule.

Loaded by tests/assets/test_orchestration.py (imported) and tests/e2e/test_postgres.py (as a code location).
"""

import warnings

import dagster as dg

from quanta_assets.automation import follow_upstream, follow_upstream_aggregate
from quanta_assets.campaigns import Campaign
from quanta_assets.code_versions import with_settings_code_version
from quanta_assets.compute.executors import GPU_POOL
from quanta_assets.partitions import FAMILY_MODELS, checkpoint_partitions, family_step_partitions, model_partitions
from quanta_assets.schedules import campaign_schedule
from quanta_assets.settings import SettingsResource

warnings.filterwarnings("ignore", category=dg.BetaWarning)
_BY_MODEL = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="model")


class LossSettings(SettingsResource):
    execution_fields = frozenset({"device"})  # not part of the settings hash
    num_documents: int = 10
    device: str = "cpu"


class ClusterSettings(SettingsResource):
    num_clusters: int | None = None


@dg.asset(code_version="1", description="corpus")
def pile_canonical():
    return dg.MaterializeResult()


@dg.asset(code_version="1", description="checkpoint", partitions_def=checkpoint_partitions)
def model_checkpoint(context):
    step = context.partition_key.keys_by_dimension["step"]
    return dg.MaterializeResult(data_version=dg.DataVersion("commit-" + step))


@dg.asset(code_version="1", description="losses", partitions_def=checkpoint_partitions,
          deps=[pile_canonical, model_checkpoint], pool=GPU_POOL)
def pile_losses(context, losses: LossSettings):
    return dg.MaterializeResult(metadata={"num_documents": losses.num_documents})


@dg.asset_check(asset=pile_losses, blocking=True, description="fails for num_documents = 0")
def pile_losses_nonempty(losses: LossSettings):
    return dg.AssetCheckResult(passed=losses.num_documents > 0)


@dg.asset(code_version="1", description="similarity", partitions_def=checkpoint_partitions, deps=[pile_losses],
          pool=GPU_POOL, automation_condition=follow_upstream())
def quanta_similarity():
    return dg.MaterializeResult()


@dg.asset(code_version="1", description="clusters", partitions_def=checkpoint_partitions, deps=[quanta_similarity],
          automation_condition=follow_upstream())
def quanta_clusters(cluster_settings: ClusterSettings):
    return dg.MaterializeResult()


@dg.asset(code_version="1", description="dynamics", partitions_def=model_partitions,
          deps=[dg.AssetDep(quanta_clusters, partition_mapping=_BY_MODEL)],
          automation_condition=follow_upstream_aggregate())
def quanta_training_dynamics():
    return dg.MaterializeResult()


ALL = [pile_canonical, model_checkpoint, pile_losses, quanta_similarity, quanta_clusters, quanta_training_dynamics]


@dg.asset(code_version="1", description="learning times", partitions_def=model_partitions,
          deps=[dg.AssetDep(pile_losses, partition_mapping=_BY_MODEL)],
          automation_condition=follow_upstream_aggregate())
def token_learning_times():
    return dg.MaterializeResult()


@dg.asset(code_version="1", description="scale curves", partitions_def=family_step_partitions,
          deps=[dg.AssetDep(pile_losses, partition_mapping=FAMILY_MODELS)],
          automation_condition=follow_upstream_aggregate())
def token_scale_curves():
    return dg.MaterializeResult()


@dg.asset(name="quanta_training_dynamics", code_version="1", description="dynamics", partitions_def=model_partitions,
          deps=[dg.AssetDep(quanta_clusters, partition_mapping=_BY_MODEL), token_learning_times],
          automation_condition=follow_upstream_aggregate())
def dynamics_with_learning_times():
    return dg.MaterializeResult()


WITH_LEARNING = [*ALL[:-1], token_learning_times, token_scale_curves, dynamics_with_learning_times]


def make_defs(num_documents=10, num_clusters=None, device="cpu", learning_times=False) -> dg.Definitions:
    """The toy graph; ``learning_times``: with the learning-time assets (token_learning_times read by
    the dynamics, token_scale_curves per family × step)."""
    resources = {"losses": LossSettings(num_documents=num_documents, device=device),
                 "cluster_settings": ClusterSettings(num_clusters=num_clusters)}
    assets = WITH_LEARNING if learning_times else ALL
    return dg.Definitions(assets=[with_settings_code_version(a, resources) for a in assets],
                          asset_checks=[pile_losses_nonempty], resources=resources)



TOY_CAMPAIGN = Campaign(name="toy", models=("pythia-70m",), steps=("step1000", "step2000", "step3000"), batch_size=4,
                        cron="* * * * *")


def make_location_defs() -> dg.Definitions:
    base = make_defs()
    return dg.Definitions(assets=base.assets, asset_checks=base.asset_checks, resources=base.resources,
                          schedules=[campaign_schedule(TOY_CAMPAIGN)])


defs = make_location_defs()
