"""The operator's release of a dead run: marked CANCELED (its pool slot free); finished runs left alone."""

import dagster as dg
from dagster._core.test_utils import create_run_for_test

from quanta_assets.run_release import main, release_run


def test_a_dead_started_run_is_released_and_a_finished_one_left_alone(monkeypatch, capsys):
    with dg.instance_for_test() as instance:
        dead = create_run_for_test(instance, job_name="campaign_job", status=dg.DagsterRunStatus.STARTED)
        done = create_run_for_test(instance, job_name="campaign_job", status=dg.DagsterRunStatus.SUCCESS)
        monkeypatch.setenv("DAGSTER_HOME", instance.root_directory)
        assert main([dead.run_id]) == 0
        assert "STARTED → CANCELED" in capsys.readouterr().out
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.CANCELED
        assert "nothing to release" in release_run(instance, done.run_id)
        assert instance.get_run_by_id(done.run_id).status == dg.DagsterRunStatus.SUCCESS
        assert "no such run" in release_run(instance, "nope")
