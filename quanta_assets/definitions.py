"""The Dagster code location: assets, checks, resources, campaign schedules and the automation
sensor. Load with ``dagster dev -w workspace.yaml``.

Each asset says on itself what it is (partitions, pool, automation condition, written code
version); here every asset's code version is extended with a hash of the settings it uses
(:mod:`quanta_assets.code_versions`), so changing a setting marks exactly its partitions stale.
The analysis assets are built once per study (:mod:`quanta_assets.studies`): the default study
under today's keys, each study file under its own key prefix with its own settings resources.
"""

import dagster as dg

from quanta_assets.assets import (
    checkpoints,
    clusters,
    corpus,
    dynamics,
    learning,
    losses,
    report,
    similarity,
    stability,
)
from quanta_assets.assets.comparison import comparison_asset
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
    StabilitySettings,
    TrainingDynamicsSettings,
)
from quanta_assets.studies import DEFAULT_STUDY, Study, load_studies

SHARED_ASSETS = [
    corpus.pile_canonical,
    corpus.induction_filters,
    checkpoints.quanta_demo_suite,
    checkpoints.model_checkpoint,
    losses.pile_losses,
    learning.token_learning_times,
    learning.token_scale_curves,
]
"""Assets every study shares (an explicit list: what the location holds is read here)."""
STUDY_ASSETS = [similarity.similarity_asset, clusters.clusters_asset, stability.stability_asset,
                stability.sweep_asset, dynamics.dynamics_asset, report.report_asset]
"""Factories of the assets each study has: ``factory(study)`` → its asset under its key prefix."""


def study_assets(study: Study) -> list[dg.AssetsDefinition]:
    """The analysis assets of one study (the module-level ones for the default study)."""
    if study is DEFAULT_STUDY:
        return [similarity.quanta_similarity, clusters.quanta_clusters, stability.quanta_cluster_stability,
                stability.quanta_cluster_sweep, dynamics.quanta_training_dynamics, report.quanta_report]
    return [factory(study) for factory in STUDY_ASSETS
            if study.own_similarity or factory is not similarity.similarity_asset]


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
        "stability_settings": StabilitySettings(),
        "learning_settings": LearningTimeSettings(),
        "scale_settings": ScaleCurveSettings(),
    }


def build_definitions(resources: dict | None = None, studies: list[Study] | None = None) -> dg.Definitions:
    """The code location with ``resources`` (default :func:`default_resources`) and ``studies``
    besides the default one (default: every valid file of :func:`quanta_assets.studies.load_studies`;
    a broken file is left out with a warning and named on the comparison page)."""
    resources = dict(resources or default_resources())
    problems: list[str] = []
    if studies is None:
        studies, problems = load_studies()
    for study in studies:
        resources.update(study.resources())
    everything = [DEFAULT_STUDY, *studies]
    assets = [*SHARED_ASSETS, *(a for study in everything for a in study_assets(study))]
    if studies:
        assets.append(comparison_asset(everything, problems))
    return dg.Definitions(
        assets=[with_settings_code_version(a, resources) for a in assets],
        asset_checks=CHECKS,
        schedules=SCHEDULES,
        sensors=SENSORS,
        resources=resources,
        executor=executor_for_backend(),
    )


defs = build_definitions()
