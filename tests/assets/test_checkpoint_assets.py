"""The checkpoint assets through Dagster: model_checkpoint records the commit as its data
version; quanta_demo_suite trains once and feeds model_checkpoint."""

import json

import pytest

from quanta_core.models.checkpoints import CheckpointNotFound

from support.helpers import cache_resources, make_tiny_gptneox

REPO = "EleutherAI/pythia-70m"


def _resources(cache_dir, **loader):
    from quanta_assets.compute import ComputeResource
    from quanta_assets.resources import ModelLoader
    from quanta_assets.settings import PileSource

    return {**cache_resources(cache_dir), "pile": PileSource(minipile_documents=24), "models": ModelLoader(**loader),
            "compute": ComputeResource()}


def _materialization(result, key):
    return next(e.materialization for e in result.get_asset_materialization_events()
                if e.materialization.asset_key.to_user_string() == key)


def test_model_checkpoint_asset_records_the_commit_as_data_version(hub, cache_dir):
    import dagster as dg

    from quanta_assets.assets.checkpoints import model_checkpoint, quanta_demo_suite
    from quanta_assets.assets.corpus import pile_canonical
    from quanta_assets.partitions import checkpoint_key

    _, _, commits = hub
    result = dg.materialize([pile_canonical, quanta_demo_suite, model_checkpoint], selection=[model_checkpoint],
                            partition_key=checkpoint_key("pythia-70m", "step142000"), resources=_resources(cache_dir))
    event = _materialization(result, "model_checkpoint")
    assert event.tags["dagster/data_version"] == commits["step142000"]
    assert event.metadata["commit"].value == commits["step142000"]
    assert event.metadata["parameters"].value == sum(p.numel() for p in make_tiny_gptneox().parameters())
    stored = json.loads((cache_dir / "pythia-70m" / "step142000" / "model_checkpoint" / "checkpoint.json").read_text())
    assert stored["commit"] == commits["step142000"] and stored["repo_id"] == REPO
    assert stored["revision"] == "step142000" and stored["snapshot_dir"].endswith(commits["step142000"])

    with pytest.raises(CheckpointNotFound, match="step1000"):
        dg.materialize([pile_canonical, quanta_demo_suite, model_checkpoint], selection=[model_checkpoint],
                       partition_key=checkpoint_key("pythia-70m", "step1000"), resources=_resources(cache_dir))


def test_demo_suite_asset_trains_once_and_feeds_model_checkpoint(cache_dir, monkeypatch):
    import dagster as dg

    from quanta_assets.assets.checkpoints import model_checkpoint, quanta_demo_suite
    from quanta_assets.assets.corpus import pile_canonical
    from quanta_assets.partitions import checkpoint_key
    from quanta_assets.resources import ModelLoader
    from quanta_core.presets import DEMO_MODEL

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tiny = {"ops": {"quanta_demo_suite": {"config": {"hidden_size": 16, "num_layers": 1, "num_heads": 2,
                                                      "steps": ["step0", "step1", "step2"], "batch_tokens": 512}}}}
    assets = [pile_canonical, quanta_demo_suite, model_checkpoint]
    first = dg.materialize(assets, selection=[pile_canonical, quanta_demo_suite], resources=_resources(cache_dir),
                           run_config=tiny)
    meta = _materialization(first, "quanta_demo_suite").metadata
    assert meta["reused_existing"].value is False and meta["steps"].value == ["step0", "step1", "step2"]
    summary = json.loads((cache_dir / "corpus" / "quanta_demo_suite" / "summary.json").read_text())
    assert meta["final_mean_loss_nats"].value == round(summary["final_mean_loss"], 4)

    again = dg.materialize(assets, selection=[quanta_demo_suite], resources=_resources(cache_dir), run_config=tiny)
    assert _materialization(again, "quanta_demo_suite").metadata["reused_existing"].value is True

    result = dg.materialize(assets, selection=[model_checkpoint], partition_key=checkpoint_key(DEMO_MODEL, "step2"),
                            resources=_resources(cache_dir))
    assert _materialization(result, "model_checkpoint").tags["dagster/data_version"] == summary["commits"]["step2"]

    logs = []

    class Log:
        info = logs.append

    loaded = ModelLoader(device="cpu").load(DEMO_MODEL, "step2", cache_dir, log=Log)
    assert loaded.commit == summary["commits"]["step2"] and not loaded.model.training
    assert any("commit " + loaded.commit in line and "cpu" in line for line in logs)


