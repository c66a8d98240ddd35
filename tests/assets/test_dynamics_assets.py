"""The ``quanta_training_dynamics`` asset through Dagster: materialization, settings, errors,
lineage, the code location; and the report's extras from the dynamics the IO manager loads."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from quanta_core.learning.dynamics import TrainingDynamics
from quanta_core.report import dynamics_page

from support.helpers import cache_resources

# -- the Dagster asset ----------------------------------------------------------------------


def _write_upstream(cache, model="quanta-demo"):
    """pile_losses for three steps and quanta_clusters for step2, in the IO manager's layout."""
    rng = np.random.default_rng(3)
    num_entries, indices = 500, np.arange(0, 120, 2, dtype=np.int64)
    labels = np.repeat(np.arange(3, dtype=np.int64), 20)  # cluster 0 learned at step1, 1 at step2, 2 never
    means = {"step0": [9.0, 9.0, 9.0], "step1": [0.5, 3.0, 4.0], "step2": [0.4, 0.6, 2.0]}
    for step, m in means.items():
        table = rng.uniform(2, 10, num_entries).astype(np.float32)
        table[indices] = np.asarray(m, dtype=np.float32)[labels]
        (cache / model / step).mkdir(parents=True)
        np.save(cache / model / step / "pile_losses.npy", table)
    clusters = cache / model / "step2" / "quanta_clusters"
    clusters.mkdir()
    np.save(clusters / "labels.npy", labels)
    pd.DataFrame({"cluster": labels, "index": indices, "document": 0, "position": indices + 1,
                  "token_id": np.where(labels == 0, 29, 50).astype(np.int64), "loss": 0.1}).to_parquet(
        clusters / "tokens.parquet")


def _upstream_specs():
    """quanta_clusters and pile_losses as model × step assets stored outside the run (written above),
    and token_learning_times (per model, not materialized: the dynamics do without)."""
    import dagster as dg

    from quanta_assets.partitions import checkpoint_partitions, model_partitions

    return [*(dg.AssetSpec(k, partitions_def=checkpoint_partitions) for k in ("quanta_clusters", "pile_losses")),
            dg.AssetSpec("token_learning_times", partitions_def=model_partitions)]


def _materialize(cache, **settings):
    """Materialize quanta_training_dynamics of quanta-demo (upstream stored under ``cache``)."""
    import dagster as dg

    from quanta_assets.assets.dynamics import quanta_training_dynamics

    return dg.materialize([*_upstream_specs(), quanta_training_dynamics], partition_key="quanta-demo",
                          resources=_resources(cache, **settings))


def _resources(cache, **settings):
    from quanta_assets.settings import PileSource, TrainingDynamicsSettings

    return {**cache_resources(cache), "pile": PileSource(), "dynamics_settings": TrainingDynamicsSettings(**settings)}


def test_asset_materializes_through_dagster(cache_dir):
    import dagster as dg

    from quanta_assets.assets.dynamics import quanta_training_dynamics

    _write_upstream(cache_dir)
    result = _materialize(cache_dir)
    assert result.success
    out = cache_dir / "quanta-demo" / "quanta_training_dynamics"
    assert sorted(p.name for p in out.iterdir()) == [
        "curves.parquet", "learned_at.parquet", "page.html", "summary.json"]
    learned = pd.read_parquet(out / "learned_at.parquet")
    assert learned["learned_at"].fillna("never").tolist() == ["step1", "step2", "never"]
    assert learned["learned_at_step"].tolist() == [1, 2, pd.NA]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference_step"] == "step2" and summary["steps"] == ["step0", "step1", "step2"]
    assert summary["settings"]["threshold_nats"] == 1.0  # the demo default
    page = (out / "page.html").read_text()
    assert "<code class=\"tok\">&lt;</code>" in page  # token 29 is "<", escaped
    (event,) = result.asset_materializations_for_node("quanta_training_dynamics")
    meta = event.metadata
    assert meta["reference_step"].value == "step2" and meta["steps_used"].value == 3
    assert meta["clusters_learned"].value == 2 and meta["setting_threshold_nats"].value == 1.0
    assert re.search(r"\| step1 +\| +1 \|", meta["learned_at_histogram"].value)
    # the per-checkpoint report takes these only for the reference step, as the IO manager loads them
    defs = dg.Definitions(assets=[*_upstream_specs(), quanta_training_dynamics], resources=_resources(cache_dir))
    loaded = defs.load_asset_value("quanta_training_dynamics", partition_key="quanta-demo",
                                  instance=dg.DagsterInstance.ephemeral())
    stored = TrainingDynamics.from_stored(loaded)
    extras, sections = dynamics_page.report_extras(stored, "step2")
    assert [extras[k]["learned_at_step"] for k in range(3)] == [1, 2, None] and "<svg" in sections[0]
    assert dynamics_page.report_extras(stored, "step1") == ({}, [])

    # settings: an explicit threshold and reference step
    result = _materialize(cache_dir, threshold_nats=0.55, reference_step="step2")
    learned = pd.read_parquet(out / "learned_at.parquet")
    assert learned["learned_at"].fillna("never").tolist() == ["step1", "never", "never"]


def test_asset_fails_clearly_without_clusters(cache_dir):
    (cache_dir / "quanta-demo" / "step0").mkdir(parents=True)
    np.save(cache_dir / "quanta-demo" / "step0" / "pile_losses.npy", np.ones(10, dtype=np.float32))
    with pytest.raises(FileNotFoundError, match="no quanta_clusters for model quanta-demo"):
        _materialize(cache_dir)
    with pytest.raises(FileNotFoundError, match="no quanta_clusters of quanta-demo at the reference step step0"):
        _materialize(cache_dir, reference_step="step0")
    with pytest.raises(ValueError, match="step name"):
        _materialize(cache_dir, reference_step="final")
    assert not (cache_dir / "quanta-demo" / "quanta_training_dynamics").exists()


def test_lineage_maps_every_step_of_the_model(cache_dir):
    import dagster as dg

    from quanta_assets.assets.dynamics import quanta_training_dynamics
    from quanta_assets.partitions import PYTHIA_STEPS, checkpoint_partitions, model_partitions

    key = dg.AssetKey("quanta_training_dynamics")
    parents = {dg.AssetKey("quanta_clusters"), dg.AssetKey("pile_losses")}
    # with the upstream stages as model × step assets, one model maps to all of its 154 steps
    upstream = [dg.AssetSpec(k, partitions_def=checkpoint_partitions) for k in parents]
    learning = dg.AssetSpec("token_learning_times", partitions_def=model_partitions)
    graph = dg.Definitions(assets=[*upstream, learning, quanta_training_dynamics],
                           resources=_resources(cache_dir)).resolve_asset_graph()
    for parent in parents:
        mapped = graph.get_partition_mapping(key, parent).get_upstream_mapped_partitions_result_for_partitions(
            model_partitions.subset_with_partition_keys(["quanta-demo"]), model_partitions, checkpoint_partitions
        ).partitions_subset.get_partition_keys()
        assert {k.keys_by_dimension["model"] for k in mapped} == {"quanta-demo"}
        assert sorted(k.keys_by_dimension["step"] for k in mapped) == sorted(PYTHIA_STEPS)


def test_code_location_has_the_asset_and_its_settings():
    import dagster as dg

    from quanta_assets.definitions import defs
    from quanta_assets.partitions import model_partitions
    from quanta_assets.settings import TrainingDynamicsSettings

    node = defs.resolve_asset_graph().get(dg.AssetKey("quanta_training_dynamics"))
    assert node.partitions_def == model_partitions
    assert {dg.AssetKey("quanta_clusters"), dg.AssetKey("pile_losses")} <= set(node.parent_keys)
    assert isinstance(defs.resources["dynamics_settings"], TrainingDynamicsSettings)
