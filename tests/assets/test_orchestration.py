"""Orchestration: campaigns, the backfill schedule, pools, automation conditions, settings-aware
staleness and the demo's planner — on small throwaway assets with the real partitions, so the
tests do not depend on the analysis stages (tests/assets/test_definitions.py checks the real graph)."""

import json
import shutil
import warnings

import dagster as dg
import pytest
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContext
from dagster._core.test_utils import create_run_for_test

from quanta_assets.campaigns import Campaign, campaign_from_dict, load_campaigns
from quanta_assets.code_versions import base_code_version, settings_digest
from quanta_assets.compute.executors import GPU_POOL
from quanta_assets.demo import SKIPPED_PARTITIONS, plan_runs, skipped_assets
from quanta_assets.partitions import checkpoint_key, family_step_partitions, model_partitions
from quanta_assets.schedules import CAMPAIGN_TAG, POOL_TAG, campaign_progress, campaign_schedule
from quanta_assets.settings import SettingsResource
from quanta_assets.staleness import stale_reason
from quanta_core.steps import PYTHIA_STEPS

from support.helpers import REPO
from support.toy_location import make_defs  # the throwaway graph

warnings.filterwarnings("ignore", category=dg.BetaWarning)


class _Loading(LoadingContext):
    """The minimal loading context Dagster's own stale-status resolver (the oracle here) needs."""

    def __init__(self, instance: dg.DagsterInstance):
        self._instance = instance
        self._loaders = {}

    @property
    def instance(self) -> dg.DagsterInstance:
        return self._instance

    @property
    def loaders(self) -> dict:
        return self._loaders


def materialize(defs, selection, partition=None, instance=None, tags=None, expect_success=True):
    result = dg.materialize([*defs.assets, *defs.asset_checks], selection=selection, partition_key=partition,
                            instance=instance, resources=defs.resources, tags=tags, raise_on_error=False)
    assert result.success == expect_success


def pk(model, step) -> str:
    return str(checkpoint_key(model, step))


@pytest.fixture
def instance():
    inst = dg.DagsterInstance.ephemeral()  # in memory: fast, isolated per test
    yield inst
    inst.dispose()


@pytest.fixture
def stored_instance():
    """A SQLite instance in a temp dir: schedule contexts need an instance reference."""
    with dg.instance_for_test() as inst:
        yield inst


# --- campaigns ------------------------------------------------------------------------------------
def test_builtin_campaigns():
    by_name = {c.name: c for c in load_campaigns()}
    assert len(by_name["pythia-70m-all"].partition_keys()) == 154
    scaling = by_name["pythia-scaling-10k"]
    assert scaling.steps == tuple(f"step{n}" for n in range(0, 140001, 10000))  # independent: 0, 10k, … 140k
    assert len(scaling.partition_keys()) == 3 * 15
    # model order: all steps of the first model first
    assert scaling.partition_keys()[:2] == [pk("pythia-160m", "step0"), pk("pythia-160m", "step10000")]


def test_campaign_file_from_env(tmp_path, monkeypatch):
    path = tmp_path / "campaigns.yaml"
    path.write_text(json.dumps({"campaigns": [
        {"name": "mine", "models": ["pythia-70m-deduped"], "steps": {"every": 1000, "from": 100000, "to": 103000},
         "batch_size": 3, "order": "step"}]}))
    monkeypatch.setenv("QUANTA_CAMPAIGNS", str(path))
    (campaign,) = load_campaigns()
    assert campaign.steps == ("step100000", "step101000", "step102000", "step103000")
    assert campaign.batch_size == 3 and campaign.source == str(path)
    assert campaign.schedule_name == "campaign_mine"


@pytest.mark.parametrize("entry, message", [
    ({"name": "x", "models": ["pythia-7m"], "steps": "all"}, "unknown models"),
    ({"name": "x", "models": ["pythia-70m"], "steps": ["step3"]}, "not Pythia step names"),
    ({"name": "x", "models": ["pythia-70m"], "steps": {"every": 7, "from": 1, "to": 1}}, "no Pythia step"),
    ({"name": "x y", "models": ["pythia-70m"], "steps": "all"}, "campaign name"),
    ({"name": "x", "models": ["pythia-70m"], "steps": "all", "batch_size": 0}, "batch_size"),
    ({"name": "x", "models": ["pythia-70m"], "steps": "all", "colour": 1}, "unknown keys"),
])
def test_campaign_errors_name_the_problem(entry, message):
    with pytest.raises(ValueError, match=message) as info:
        campaign_from_dict(entry, "my.yaml")
    assert "my.yaml" in str(info.value)


def test_missing_campaign_file_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_campaigns(tmp_path / "nope.yaml")


# --- the backfill schedule ------------------------------------------------------------------------
def _tick(schedule, instance) -> list[dg.RunRequest] | dg.SkipReason:
    """One evaluation of ``schedule`` in a code location with the throwaway graph."""
    defs = make_defs()
    defs = dg.Definitions(assets=defs.assets, resources=defs.resources, schedules=[schedule])
    context = dg.build_schedule_context(instance=instance, repository_def=defs.get_repository_def())
    data = defs.get_repository_def().get_schedule_def(schedule.name).evaluate_tick(context)
    return data.run_requests or dg.SkipReason(data.skip_message)


def test_schedule_requests_exactly_the_missing_partitions_and_never_duplicates(stored_instance):
    instance = stored_instance
    defs = make_defs()
    campaign = Campaign(name="t", models=("pythia-70m", "pythia-160m"), steps=("step1000", "step2000", "step3000"),
                        batch_size=3)
    keys = campaign.partition_keys()
    assert len(keys) == 6
    materialize(defs, ["pile_canonical"], None, instance)  # the corpus the campaign's runs need
    for key in (keys[0], keys[2]):  # already materialized before the campaign starts
        materialize(defs, ["model_checkpoint", "pile_losses"], key, instance)
    # a partition with only the checkpoint is not done
    materialize(defs, ["model_checkpoint"], keys[3], instance)
    schedule = campaign_schedule(campaign)
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED

    first = _tick(schedule, instance)
    naive_missing = [k for k in keys if k not in (keys[0], keys[2])]  # computed by hand
    assert [r.partition_key for r in first] == naive_missing[:3]
    assert len({r.run_key for r in first}) == 3
    assert all(r.tags[CAMPAIGN_TAG] == "t" and r.tags[POOL_TAG] == GPU_POOL for r in first)

    # the daemon launches them: three runs in progress
    started = dg.DagsterRunStatus.STARTED
    runs = {r.partition_key: create_run_for_test(instance, job_name="campaign_t_job", status=started,
                                                 tags={**r.tags, "dagster/partition": r.partition_key})
            for r in first}
    second = _tick(schedule, instance)
    assert isinstance(second, dg.SkipReason) and "3 runs in flight" in second.skip_message

    # one succeeds (its assets materialized), one fails, one is still running
    p_ok, p_failed, p_running = (r.partition_key for r in first)
    materialize(defs, ["model_checkpoint", "pile_losses"], p_ok, instance)
    _set_status(instance, runs[p_ok], dg.DagsterRunStatus.SUCCESS)
    _set_status(instance, runs[p_failed], dg.DagsterRunStatus.FAILURE)
    third = _tick(schedule, instance)
    assert [r.partition_key for r in third] == [p_failed, naive_missing[3]]  # retry, then the next one
    assert third[0].run_key == f"t:{p_failed}:try2"
    assert not {r.run_key for r in third} & {r.run_key for r in first}

    progress = campaign_progress(instance, campaign)
    assert progress.done == [keys[0], p_ok, keys[2]]
    assert progress.in_flight == [p_running]


def test_schedule_gives_up_after_max_attempts_and_reports_completion(stored_instance):
    instance = stored_instance
    campaign = Campaign(name="u", models=("pythia-70m",), steps=("step1000",), max_attempts=1)
    schedule = campaign_schedule(campaign)
    materialize(make_defs(), ["pile_canonical"], None, instance)
    run = create_run_for_test(instance, job_name="campaign_u_job", status=dg.DagsterRunStatus.FAILURE,
                              tags={CAMPAIGN_TAG: "u", "dagster/partition": pk("pythia-70m", "step1000")})
    assert run is not None
    skip = _tick(schedule, instance)
    assert isinstance(skip, dg.SkipReason) and "1 given up" in skip.skip_message


def test_schedule_leaves_partitions_alone_while_another_run_works_on_them(stored_instance):
    campaign = Campaign(name="v", models=("pythia-70m",), steps=("step1000", "step2000"), batch_size=2)
    busy = pk("pythia-70m", "step1000")
    materialize(make_defs(), ["pile_canonical"], None, stored_instance)
    create_run_for_test(stored_instance, job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED,
                        tags={"dagster/partition": busy, "dagster/backfill": "abc"})  # e.g. a UI backfill
    requests = _tick(campaign_schedule(campaign), stored_instance)
    assert [r.partition_key for r in requests] == [pk("pythia-70m", "step2000")]


def _set_status(instance, run, status):
    """What the run worker would record at the end of the run (tags kept)."""
    instance.delete_run(run.run_id)
    instance.add_run(run.with_status(status))


# --- pools, automation, code versions --------------------------------------------------------------
def test_gpu_pool_and_automation_are_on_the_assets():
    defs = make_defs()
    graph = defs.resolve_asset_graph()
    pools = {k.to_user_string(): defs.resolve_assets_def(k).op.pool for k in graph.get_all_asset_keys()}
    assert pools["pile_losses"] == GPU_POOL and pools["quanta_similarity"] == GPU_POOL
    assert pools["model_checkpoint"] is None and pools["quanta_clusters"] is None
    conditions = {k.to_user_string(): graph.get(k).automation_condition for k in graph.get_all_asset_keys()}
    labels = {name: c.get_label() if c else None for name, c in conditions.items()}
    assert labels == {"pile_canonical": None, "model_checkpoint": None, "pile_losses": None,
                      "quanta_similarity": "follow upstream data", "quanta_clusters": "follow upstream data",
                      "quanta_training_dynamics": "follow upstream data (aggregate)"}


def test_code_version_carries_a_hash_of_the_settings():
    a, b, c = make_defs(num_documents=10), make_defs(num_documents=11), make_defs(num_documents=10, device="cuda")
    graphs = [d.resolve_asset_graph() for d in (a, b, c)]
    versions = [{k.to_user_string(): g.get(k).code_version for k in g.get_all_asset_keys()} for g in graphs]
    assert versions[0]["pile_losses"].startswith("1+s") and versions[0]["pile_canonical"] == "1"
    assert base_code_version(versions[0]["pile_losses"]) == "1"
    changed = {k for k in versions[0] if versions[0][k] != versions[1][k]}
    assert changed == {"pile_losses"}
    assert versions[0] == versions[2]  # the device is not a setting of *what* is computed
    assert settings_digest(["cache", "io_manager"], {}) is None


def test_env_var_settings_enter_the_hash(monkeypatch):
    class WithEnv(SettingsResource):
        threshold: str = dg.EnvVar("QUANTA_TEST_THRESHOLD")

    monkeypatch.setenv("QUANTA_TEST_THRESHOLD", "0.1")
    first = settings_digest(["s"], {"s": WithEnv()})
    monkeypatch.setenv("QUANTA_TEST_THRESHOLD", "0.2")
    assert settings_digest(["s"], {"s": WithEnv()}) != first


def test_changing_a_setting_marks_exactly_the_affected_partitions_stale(instance):
    defs = make_defs()
    materialize(defs, ["pile_canonical"], None, instance)
    parts = [pk("pythia-70m", "step1000"), pk("pythia-70m", "step2000")]
    for p in parts:
        materialize(defs, ["model_checkpoint", "pile_losses", "quanta_similarity", "quanta_clusters"], p, instance)
    materialize(defs, ["quanta_training_dynamics"], "pythia-70m", instance)

    def statuses(d):
        """Dagster's own stale status of every partition, checked against quanta_assets.staleness."""
        graph = d.resolve_asset_graph()
        resolver = CachingStaleStatusResolver(instance, graph, _Loading(instance))
        out = {}
        for node in graph.asset_nodes:
            for p in ([None] if node.partitions_def is None else
                      ["pythia-70m"] if node.partitions_def == model_partitions else parts):
                out[(node.key.to_user_string(), p)] = status = resolver.get_status(node.key, p)
                ours = stale_reason(instance, graph, node.key, p)
                assert (ours is None) == (status == StaleStatus.FRESH), (node.key, p, ours, status)
        return out

    before = statuses(defs)
    assert set(before.values()) == {StaleStatus.FRESH}
    after = statuses(make_defs(num_clusters=7))
    stale = {k for k, v in after.items() if v != StaleStatus.FRESH}
    assert stale == {("quanta_clusters", p) for p in parts}
    assert all(after[k] == StaleStatus.STALE for k in stale)
    # an execution-only field changes nothing
    assert set(statuses(make_defs(device="cuda")).values()) == {StaleStatus.FRESH}


def test_automation_follows_new_data_only(instance):
    defs = make_defs()
    key = pk("pythia-70m", "step1000")
    sim = dg.AssetKey("quanta_similarity")
    materialize(defs, ["pile_canonical"], None, instance)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert result.total_requested == 0
    materialize(defs, ["model_checkpoint", "pile_losses"], key, instance)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_requested_partitions(sim) == {key}
    materialize(defs, ["quanta_similarity"], key, instance)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_requested_partitions(dg.AssetKey("quanta_clusters")) == {key}
    assert not result.get_requested_partitions(sim)
    materialize(defs, ["quanta_clusters"], key, instance)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_requested_partitions(dg.AssetKey("quanta_training_dynamics")) == {"pythia-70m"}
    materialize(defs, ["quanta_training_dynamics"], "pythia-70m", instance)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.total_requested == 0
    # re-running pile_losses with the same code, settings and inputs: same data version, nothing follows
    materialize(defs, ["pile_losses"], key, instance)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.total_requested == 0
    # a new setting: pile_losses gets a new data version when re-materialized, similarity follows
    changed = make_defs(num_documents=20)
    materialize(changed, ["pile_losses"], key, instance)
    result = dg.evaluate_automation_conditions(defs=changed, instance=instance, cursor=result.cursor)
    assert result.get_requested_partitions(sim) == {key}
    # a failed blocking check on pile_losses: the wrong result does not propagate
    other = pk("pythia-70m", "step2000")
    broken = make_defs(num_documents=0)
    materialize(broken, ["model_checkpoint", "pile_losses"], other, instance, expect_success=False)
    result = dg.evaluate_automation_conditions(defs=broken, instance=instance, cursor=result.cursor)
    assert other not in result.get_requested_partitions(sim)


# --- dagster.yaml --------------------------------------------------------------------------------
def test_dagster_yaml_limits_the_gpu_pool_to_one_run(tmp_path):
    from dagster._core.instance.config import PoolGranularity

    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    config = instance.get_concurrency_config()
    assert config.pool_config.default_pool_limit == 1
    assert config.pool_config.pool_granularity == PoolGranularity.RUN
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    instance.dispose()


# --- the demo's planner ---------------------------------------------------------------------------
def test_demo_plan_runs_in_topological_order_and_skips_what_is_up_to_date(instance, monkeypatch):
    steps = ["step1000", "step2000"]
    defs = make_defs()
    graph = defs.resolve_asset_graph()
    monkeypatch.setattr("quanta_assets.demo.DEMO_MODEL", "pythia-70m")
    runs, fresh = plan_runs(instance, graph, steps)
    labels = [(r.partition, [k.to_user_string() for k in r.keys]) for r in runs]
    assert labels == [
        (None, ["pile_canonical"]),
        (pk("pythia-70m", "step1000"), ["model_checkpoint", "pile_losses"]),
        (pk("pythia-70m", "step2000"), ["model_checkpoint", "pile_losses", "quanta_similarity", "quanta_clusters"]),
        ("pythia-70m", ["quanta_training_dynamics"]),
    ]
    assert not fresh
    for run in runs:
        materialize(defs, [k.to_user_string() for k in run.keys], run.partition, instance)
    runs, fresh = plan_runs(instance, graph, steps)
    assert runs == []
    assert sorted(fresh) == ["model_checkpoint", "pile_canonical", "pile_losses", "quanta_clusters",
                             "quanta_similarity", "quanta_training_dynamics"]
    # a new clusters setting: clusters and what reads it (dynamics) rerun, nothing else
    changed = make_defs(num_clusters=3)
    runs, _ = plan_runs(instance, changed.resolve_asset_graph(), steps)
    assert [(r.partition, [k.to_user_string() for k in r.keys]) for r in runs] == [
        (pk("pythia-70m", "step2000"), ["quanta_clusters"]), ("pythia-70m", ["quanta_training_dynamics"])]


def test_demo_plan_with_learning_times_skips_the_family_assets(instance, monkeypatch):
    steps = ["step1000", "step2000"]
    defs = make_defs(learning_times=True)
    graph = defs.resolve_asset_graph()
    monkeypatch.setattr("quanta_assets.demo.DEMO_MODEL", "pythia-70m")
    runs, _ = plan_runs(instance, graph, steps)
    labels = [(r.partition, [k.to_user_string() for k in r.keys]) for r in runs]
    assert labels[-1] == ("pythia-70m", ["token_learning_times", "quanta_training_dynamics"])  # one run, in order
    assert all("token_scale_curves" not in keys for _, keys in labels)
    assert skipped_assets(graph) == {"token_scale_curves": SKIPPED_PARTITIONS[family_step_partitions]}
    for run in runs:
        materialize(defs, [k.to_user_string() for k in run.keys], run.partition, instance)
    assert plan_runs(instance, graph, steps)[0] == []
    # a newer loss table: the learning times and the dynamics that read them follow, in one run
    materialize(defs, ["model_checkpoint", "pile_losses"], pk("pythia-70m", "step1000"), instance)
    runs, _ = plan_runs(instance, graph, steps)
    assert [(r.partition, [k.to_user_string() for k in r.keys]) for r in runs] == [
        ("pythia-70m", ["token_learning_times", "quanta_training_dynamics"])]


def test_all_pythia_steps_are_partitions():
    assert set(load_campaigns()[1].steps) == set(PYTHIA_STEPS)
