"""The real code location: it loads and validates, every asset is readable lineage (description
and code version), the central wiring (pool, automation, settings in code versions) is applied,
and a settings change touches exactly the assets that use that setting."""

import importlib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import dagster as dg
import pytest

from quanta_assets.code_versions import SETTINGS_SEPARATOR, missing_lineage
from quanta_assets.compute.executors import GPU_POOL
from quanta_assets.settings import SettingsResource

warnings.filterwarnings("ignore", category=dg.BetaWarning)
REPO = Path(__file__).resolve().parents[2]
GPU_ASSETS = {"quanta_demo_suite", "pile_losses", "quanta_similarity"}
FOLLOWERS = {"induction_filters", "quanta_similarity", "quanta_clusters", "quanta_report", "quanta_report_samples",
             "quanta_training_dynamics", "quanta_cluster_stability", "quanta_cluster_sweep",
             "token_learning_times", "token_scale_curves"}
EXPECTED = {"pile_canonical", "induction_filters", "model_checkpoint", "pile_losses", "quanta_similarity",
            "quanta_clusters", "quanta_report"}  # docs/design.md's contract keys (+ the checkpoint asset)


@pytest.fixture(scope="module")
def defs():
    from quanta_assets.definitions import defs

    return defs


def test_contract_assets_are_present(defs):
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys >= EXPECTED, f"missing assets: {sorted(EXPECTED - keys)}"


def test_every_asset_has_description_and_code_version(defs):
    assert missing_lineage(defs) == []


def test_pools_and_automation_are_on_the_assets(defs):
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        name, node = key.path[-1], graph.get(key)  # an asset of a study has its name after the prefix
        if not node.is_materializable:
            continue
        pool = defs.resolve_assets_def(key).op.pool
        assert (pool == GPU_POOL) == (name in GPU_ASSETS), f"{name}: pool {pool}"
        assert (node.automation_condition is not None) == (name in FOLLOWERS), name


def test_settings_change_touches_only_the_assets_that_use_it(defs, monkeypatch):
    """Change one settings resource at a time (its settings dict gets an extra entry, as if a field
    changed): exactly the assets that require that resource get a new code version (each study has
    its own resource of the same class: all of them change with the class)."""
    from quanta_assets import definitions

    graph = defs.resolve_asset_graph()
    before = {k: graph.get(k).code_version for k in graph.get_all_asset_keys()}
    resources = definitions.default_resources()
    settings_keys = sorted(k for k, r in resources.items() if isinstance(r, SettingsResource))
    assert {"pile", "models", "loss_settings", "similarity_settings"} <= set(settings_keys)
    for res_key in settings_keys:
        target = type(resources[res_key])
        original = target.fingerprint
        monkeypatch.setattr(target, "fingerprint", lambda self, o=original: {**o(self), "changed": True})
        after_graph = definitions.build_definitions(resources).resolve_asset_graph()
        after = {k: after_graph.get(k).code_version for k in after_graph.get_all_asset_keys()}
        same_class = {k for k, r in defs.resources.items() if type(r) is target}
        users = {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable
                 and same_class & defs.resolve_assets_def(k).required_resource_keys}
        assert users, f"no asset uses resource {res_key}"
        differ = {k for k in before if before[k] != after[k]}
        assert differ == users, f"{res_key}: changed {sorted(map(str, differ))}, expected {sorted(map(str, users))}"
        for k in users:
            assert before[k].split(SETTINGS_SEPARATOR)[0] == after[k].split(SETTINGS_SEPARATOR)[0]
        monkeypatch.undo()


def test_dagster_definitions_validate(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "QUANTA_CACHE_DIR": str(tmp_path / "cache")}
    dagster = str(Path(sys.executable).with_name("dagster"))
    done = subprocess.run([dagster, "definitions", "validate", "-w", "workspace.yaml"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_campaign_schedules_are_off_by_default_and_target_real_assets(defs):
    schedules = importlib.import_module("quanta_assets.schedules")
    repo = defs.get_repository_def()
    for schedule in schedules.SCHEDULES:
        loaded = repo.get_schedule_def(schedule.name)
        assert loaded.default_status == dg.DefaultScheduleStatus.STOPPED
        job = repo.get_job(loaded.job_name)
        assert job.partitions_def is not None
    sensor = repo.get_sensor_def("quanta_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert sys.modules["quanta_assets.schedules"] is schedules
