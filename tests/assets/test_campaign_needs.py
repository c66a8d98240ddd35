"""Campaign ticks and their upstream: a missing unpartitioned upstream is named and spends no attempt;
attempts spent on a cause that has gone are given back (automatically, or by the reset command)."""

import time
import warnings

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from quanta_assets.campaign_reset import main as reset_main
from quanta_assets.campaigns import Campaign
from quanta_assets.partitions import checkpoint_key, checkpoint_partitions
from quanta_assets.schedules import CAMPAIGN_TAG, campaign_schedule

from support.toy_location import make_defs

warnings.filterwarnings("ignore", category=dg.BetaWarning)
STEPS = ("step1000", "step2000")


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@dg.asset
def quanta_demo_suite():
    return dg.MaterializeResult()


@dg.asset(partitions_def=checkpoint_partitions, deps=[quanta_demo_suite])
def model_checkpoint():
    return dg.MaterializeResult()


def _defs(with_demo_suite: bool = False) -> dg.Definitions:
    toy = make_defs()
    assets = [a for a in toy.assets if not (with_demo_suite and a.key == dg.AssetKey("model_checkpoint"))]
    return dg.Definitions(assets=[*assets, *([quanta_demo_suite, model_checkpoint] if with_demo_suite else [])],
                          resources=toy.resources)


def _tick(campaign: Campaign, instance, defs: dg.Definitions):
    schedule = campaign_schedule(campaign)
    repo = dg.Definitions(assets=defs.assets, resources=defs.resources, schedules=[schedule]).get_repository_def()
    data = repo.get_schedule_def(schedule.name).evaluate_tick(dg.build_schedule_context(instance=instance,
                                                                                       repository_def=repo))
    return data.run_requests or dg.SkipReason(data.skip_message)


def _materialize(defs, selection, instance, partition=None):
    assert dg.materialize(defs.assets, selection=selection, partition_key=partition, instance=instance,
                          resources=defs.resources).success


def _failed_run(instance, campaign: Campaign, partition: str):
    create_run_for_test(instance, job_name=f"{campaign.schedule_name}_job", status=dg.DagsterRunStatus.FAILURE,
                        tags={CAMPAIGN_TAG: campaign.name, "dagster/partition": partition})
    time.sleep(0.01)


def test_missing_unpartitioned_upstream_is_named_and_nothing_is_requested(instance):
    defs, campaign = _defs(), Campaign(name="c", models=("pythia-70m",), steps=STEPS)
    skip = _tick(campaign, instance, defs)
    assert isinstance(skip, dg.SkipReason), "requested runs that can only fail (pile_canonical never materialized)"
    assert "2 waiting for pile_canonical (unpartitioned, never materialized" in skip.skip_message
    assert not instance.get_runs()  # no attempt spent
    _materialize(defs, ["pile_canonical"], instance)
    requests = _tick(campaign, instance, defs)
    assert [r.partition_key for r in requests] == [str(checkpoint_key("pythia-70m", s)) for s in STEPS]


def test_the_demo_suite_is_needed_by_the_demo_model_only(instance):
    defs = _defs(with_demo_suite=True)
    _materialize(defs, ["pile_canonical"], instance)
    pythia = _tick(Campaign(name="p", models=("pythia-70m",), steps=STEPS), instance, defs)
    assert len(pythia) == 2
    demo = _tick(Campaign(name="d", models=("quanta-demo",), steps=("step0", "step8")), instance, defs)
    assert isinstance(demo, dg.SkipReason) and "waiting for quanta_demo_suite" in demo.skip_message


def test_attempts_spent_before_the_upstream_existed_are_given_back(instance):
    defs, campaign = _defs(), Campaign(name="g", models=("pythia-70m",), steps=STEPS[:1], max_attempts=1)
    key = str(checkpoint_key("pythia-70m", STEPS[0]))
    _failed_run(instance, campaign, key)  # e.g. launched by an older version, failed on the missing corpus
    _materialize(defs, ["pile_canonical"], instance)
    (request,) = _tick(campaign, instance, defs)
    assert request.partition_key == key and request.run_key == f"g:{key}:try2"  # a new run key
    _failed_run(instance, campaign, key)  # a failure with the upstream in place counts
    skip = _tick(campaign, instance, defs)
    assert isinstance(skip, dg.SkipReason) and "1 given up" in skip.skip_message


def test_reset_command_gives_spent_attempts_back(instance, monkeypatch, capsys):
    defs, campaign = _defs(), Campaign(name="r", models=("pythia-70m",), steps=STEPS, max_attempts=1)
    _materialize(defs, ["pile_canonical"], instance)
    keys = [str(checkpoint_key("pythia-70m", s)) for s in STEPS]
    for key in keys:
        _failed_run(instance, campaign, key)
    assert "2 given up" in _tick(campaign, instance, defs).skip_message
    monkeypatch.setenv("DAGSTER_HOME", instance.root_directory)
    assert reset_main(["r", keys[0]]) == 0
    assert "1 failed runs no longer count" in capsys.readouterr().out
    (request,) = _tick(campaign, instance, defs)
    assert request.partition_key == keys[0] and request.run_key == f"r:{keys[0]}:try2"
