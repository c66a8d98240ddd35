"""The Dagster code location: assets, checks, resources, campaign schedules and the automation
sensor. Load with ``dagster dev -w workspace.yaml``.

Each asset says on itself what it is (partitions, pool, automation condition, written code
version); here every asset's code version is extended with a hash of the settings it uses
(:mod:`quanta_assets.code_versions`), so changing a setting marks exactly its partitions stale.
"""

import dagster as dg

from quanta_assets.assets import checkpoints, clusters, corpus, dynamics, learning, losses, report, similarity
from quanta_assets.checks import CHECKS
from quanta_assets.code_versions import with_settings_code_version
from quanta_assets.compute import ComputeResource
from quanta_assets.compute.executors import executor_for_backend
from quanta_assets.io_manager import QuantaIOManager
from quanta_assets.resources import ModelLoader, QuantaCache
from quanta_assets.schedules import SCHEDULES, SENSORS
from quanta_assets.settings import (
    ClusterSettings,
    LearningTimeSettings,
    LossSettings,
    PileSource,
    ReportSettings,
    ScaleCurveSettings,
    SimilaritySettings,
    TrainingDynamicsSettings,
)

ASSETS = [
    corpus.pile_canonical,
    corpus.induction_filters,
    checkpoints.quanta_demo_suite,
    checkpoints.model_checkpoint,
    losses.pile_losses,
    similarity.quanta_similarity,
    clusters.quanta_clusters,
    learning.token_learning_times,
    learning.token_scale_curves,
    dynamics.quanta_training_dynamics,
    report.quanta_report,
]


def default_resources() -> dict:
    """Every resource with its defaults (environment variables read now)."""
    cache = QuantaCache()
    return {
        "cache": cache,
        "io_manager": QuantaIOManager(cache=cache),
        "pile": PileSource(),
        "models": ModelLoader(),
        "compute": ComputeResource(),
        "loss_settings": LossSettings(),
        "similarity_settings": SimilaritySettings(),
        "cluster_settings": ClusterSettings(),
        "report_settings": ReportSettings(),
        "dynamics_settings": TrainingDynamicsSettings(),
        "learning_settings": LearningTimeSettings(),
        "scale_settings": ScaleCurveSettings(),
    }


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    """The code location with ``resources`` (default :func:`default_resources`)."""
    resources = resources or default_resources()
    return dg.Definitions(
        assets=[with_settings_code_version(a, resources) for a in ASSETS],
        asset_checks=CHECKS,
        schedules=SCHEDULES,
        sensors=SENSORS,
        resources=resources,
        executor=executor_for_backend(),
    )


defs = build_definitions()
