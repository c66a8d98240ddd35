"""The learning-time assets through Dagster: ``token_learning_times`` (per model), the learned-at-once
test inside ``quanta_training_dynamics`` (and what the report takes of it), ``token_scale_curves``
(per family × step) on a tiny trained family of six sizes, and the demo planner's handling of them."""

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from quanta_assets.partitions import checkpoint_partitions
from quanta_core.learning.clusters import TEST_NAME
from quanta_core.learning.dynamics import TrainingDynamics
from quanta_core.learning.times import fit_learning_times
from quanta_core.models.demo_training import DEMO_STEPS
from quanta_core.report import dynamics_page
from quanta_core.steps import step_number

from support.helpers import cache_resources, tiny_minipile_corpus, train_tiny_suite

MODEL, TOKENS, CLUSTER_SIZE = "quanta-demo", 3000, 30
X = np.log10(np.array([step_number(s) for s in DEMO_STEPS], dtype=np.float64) + 1.0)


def _sigmoid(x, final, drop, mid, width):
    return final + drop / (1.0 + np.exp(np.clip((x - mid) / width, -500, 500)))


def _write_upstream(cache, steps=DEMO_STEPS):
    """pile_losses at ``steps`` of sigmoid trajectories and quanta_clusters of the last step: cluster
    0 learned at log10(step + 1) = 1.2, cluster 1 at 2.0 (±0.01 decades), clusters 2 and 3 random
    tokens. Returns ``(indices [S], labels [S])``."""
    rng = np.random.default_rng(7)
    mid = rng.uniform(0.4, 2.4, TOKENS)
    width = np.exp(rng.uniform(np.log(0.05), np.log(0.3), TOKENS))
    drop, final = rng.uniform(3, 8, TOKENS), rng.uniform(0.2, 3, TOKENS)
    indices = rng.choice(TOKENS, 4 * CLUSTER_SIZE, replace=False).astype(np.int64)
    labels = np.repeat(np.arange(4, dtype=np.int64), CLUSTER_SIZE)
    mid[indices[:CLUSTER_SIZE]] = 1.2 + rng.uniform(-0.01, 0.01, CLUSTER_SIZE)
    mid[indices[CLUSTER_SIZE:2 * CLUSTER_SIZE]] = 2.0 + rng.uniform(-0.01, 0.01, CLUSTER_SIZE)
    y = _sigmoid(X[:, None], final, drop, mid, width) + rng.normal(0, 0.05, (len(X), TOKENS))
    for t, step in enumerate(DEMO_STEPS):
        if step in steps:
            (cache / MODEL / step).mkdir(parents=True)
            np.save(cache / MODEL / step / "pile_losses.npy", y[t].astype(np.float32))
    clusters = cache / MODEL / steps[-1] / "quanta_clusters"
    clusters.mkdir()
    np.save(clusters / "labels.npy", labels)
    pd.DataFrame({"cluster": labels, "index": indices, "document": 0, "position": indices + 1,
                  "token_id": 50, "loss": y[-1, indices]}).to_parquet(clusters / "tokens.parquet")
    return indices, labels


def _upstream(*names):
    return [dg.AssetSpec(k, partitions_def=checkpoint_partitions) for k in names]


def _resources(cache, learning=None, dynamics=None):
    from quanta_assets.settings import LearningTimeSettings, PileSource, TrainingDynamicsSettings

    return {**cache_resources(cache), "pile": PileSource(),
            "learning_settings": learning or LearningTimeSettings(workers=1, chunk_tokens=700),
            "dynamics_settings": dynamics or TrainingDynamicsSettings(top_tokens=0, permutations=499)}


def _assets():
    from quanta_assets.assets.dynamics import quanta_training_dynamics
    from quanta_assets.assets.learning import token_learning_times

    return [*_upstream("quanta_clusters", "pile_losses"), token_learning_times, quanta_training_dynamics]


def _meta(result, name):
    (event,) = result.asset_materializations_for_node(name)
    return {k: v.value for k, v in event.metadata.items()}


def test_learning_times_and_learned_together_through_dagster(cache_dir):
    indices, labels = _write_upstream(cache_dir)
    result = dg.materialize(_assets(), partition_key=MODEL, resources=_resources(cache_dir))
    assert result.success
    out = cache_dir / MODEL / "token_learning_times"
    assert sorted(p.name for p in out.iterdir()) == ["fits.parquet", "points.parquet", "spectrum.parquet",
                                                     "spectrum_summary.json", "summary.json"]
    fits = pd.read_parquet(out / "fits.parquet")
    # the asset fits exactly what the library fits on the same tables (read back from the cache)
    tables = {s: np.load(cache_dir / MODEL / s / "pile_losses.npy") for s in DEMO_STEPS}
    direct = fit_learning_times(tables, chunk_tokens=700)
    for column in ("midpoint_x", "width", "loss_final", "flags"):
        np.testing.assert_array_equal(fits[column].to_numpy(), direct[column])
    summary, spectrum = (json.loads((out / f).read_text()) for f in ("summary.json", "spectrum_summary.json"))
    assert summary["tokens"] == TOKENS and summary["steps"] == list(DEMO_STEPS) and summary["model"] == MODEL
    meta = _meta(result, "token_learning_times")
    assert meta["tokens"] == TOKENS and meta["steps_used"] == len(DEMO_STEPS) and meta["tokens_per_second"] > 0
    assert meta["working_memory_mib_bound"] == round(12 * 700 * len(DEMO_STEPS) * 8 / 2**20, 1)  # 1 worker
    assert meta["reconstruction_error"] == round(spectrum["reconstruction_error"], 4) < 0.5

    # learned at once: the planted clusters are tighter than random, the random ones are not
    dyn = cache_dir / MODEL / "quanta_training_dynamics"
    table = pd.read_parquet(dyn / "learned_together.parquet").set_index("cluster")
    assert table["tighter"].tolist() == [True, True, False, False]
    for cluster in range(4):  # the spread, recomputed from fits.parquet with numpy
        member = indices[labels == cluster]
        mids = fits["midpoint_x"].to_numpy()[member][fits["flags"].to_numpy()[member] == 0]
        assert table.loc[cluster, "n_fit"] == len(mids)
        assert table.loc[cluster, "iqr"] == pytest.approx(np.subtract(*np.percentile(mids, [75, 25])), abs=1e-6)
    assert table.loc[0, "median_step"] == pytest.approx(10**1.2 - 1, rel=0.05)
    meta = _meta(result, "quanta_training_dynamics")
    assert meta["learned_together_test"] == TEST_NAME and "same size" in meta["learned_together_baseline"]
    assert meta["learned_together_tighter"] == 2 and meta["learned_together_tested"] == 4
    assert meta["learned_together_permutations"] == 499

    page = (dyn / "page.html").read_text()
    assert "learning-time spectrum" in page and 'class="learning-spectrum"' in page
    assert f"Reconstruction error {spectrum['reconstruction_error']:.3f}" in page
    assert "2 of 4 tested clusters are learned more tightly together than random groups" in page
    assert 'class="learned-together"' in page and "499 permutations" in page

    # the report of the reference step gets each cluster's sentence from the dynamics as loaded
    defs = dg.Definitions(assets=_assets(), resources=_resources(cache_dir))
    stored = TrainingDynamics.from_stored(
        defs.load_asset_value("quanta_training_dynamics", partition_key=MODEL, instance=dg.DagsterInstance.ephemeral()))
    extras, sections = dynamics_page.report_extras(stored, DEMO_STEPS[-1])
    sentence = extras[0]["learned_together"]
    assert sentence.startswith("median around step ") and "permutation p" in sentence
    assert any("Are quanta learned at once?" in s for s in sections)


def test_min_step_and_what_enters_the_code_version(cache_dir):
    from quanta_assets.settings import LearningTimeSettings

    _write_upstream(cache_dir)
    settings = LearningTimeSettings(min_step=4, workers=2, chunk_tokens=1000)
    result = dg.materialize(_assets()[:3], partition_key=MODEL, resources=_resources(cache_dir, settings))
    summary = json.loads((cache_dir / MODEL / "token_learning_times" / "summary.json").read_text())
    assert summary["steps"] == [s for s in DEMO_STEPS if step_number(s) >= 4] and summary["min_step"] == 4
    assert _meta(result, "token_learning_times")["workers"] == 2
    base = LearningTimeSettings().fingerprint()
    assert LearningTimeSettings(workers=1, chunk_tokens=10).fingerprint() == base  # how fast, not what
    assert LearningTimeSettings(min_step=1000).fingerprint() != base
    assert LearningTimeSettings(min_r2=0.8).fingerprint() != base


def test_learning_times_fail_clearly_and_dynamics_work_without_them(cache_dir):
    _write_upstream(cache_dir, steps=("step512",))
    with pytest.raises(FileNotFoundError, match="needs pile_losses of ≥ 2 steps from step 0 on; materialized: step512"):
        dg.materialize(_assets()[:3], partition_key=MODEL, resources=_resources(cache_dir))
    assert not (cache_dir / MODEL / "token_learning_times").exists()
    # without token_learning_times the dynamics page simply has no learning-time sections
    from quanta_assets.assets.dynamics import quanta_training_dynamics

    specs = [*_upstream("quanta_clusters", "pile_losses"), dg.AssetSpec("token_learning_times",
                                                                       partitions_def=_assets()[2].partitions_def)]
    result = dg.materialize([*specs, quanta_training_dynamics], partition_key=MODEL, resources=_resources(cache_dir))
    assert _meta(result, "quanta_training_dynamics")["learned_together"] is False
    page = (cache_dir / MODEL / "quanta_training_dynamics" / "page.html").read_text()
    assert "learning-spectrum" not in page and "learned-together" not in page
    assert not (cache_dir / MODEL / "quanta_training_dynamics" / "learned_together.parquet").exists()


# -- across scale --------------------------------------------------------------------------------------

FAMILY, STEP = "pythia", "step32"
SIZES = {"pythia-14m": 8, "pythia-31m": 12, "pythia-70m": 16, "pythia-160m": 24, "pythia-410m": 32, "pythia-1b": 48}


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """Six tiny models of growing hidden size trained 32 steps on 24 mini-Pile documents:
    ``{model: (losses [G], parameters from torch, snapshot dir)}``."""
    root = tmp_path_factory.mktemp("family")
    corpus = tiny_minipile_corpus(root)
    return {model: train_tiny_suite(corpus, root / model, hidden, ("step0", STEP), evaluate=(STEP,))[STEP]
            for model, hidden in SIZES.items()}


def _write_family(cache, family, models):
    for model in models:
        losses, _, snapshot = family[model]
        where = cache / model / STEP
        (where / "model_checkpoint").mkdir(parents=True)
        np.save(where / "pile_losses.npy", losses)
        record = {"repo_id": f"EleutherAI/{model}", "revision": STEP, "commit": "0" * 40,
                  "snapshot_dir": str(snapshot), "model": model}
        (where / "model_checkpoint" / "checkpoint.json").write_text(json.dumps(record))


def _scale(cache):
    from quanta_assets.assets.learning import token_scale_curves
    from quanta_assets.settings import ScaleCurveSettings

    key = dg.MultiPartitionKey({"family": FAMILY, "step": STEP})
    return dg.materialize([*_upstream("pile_losses", "model_checkpoint"), token_scale_curves], partition_key=key,
                          resources={**cache_resources(cache), "scale_settings": ScaleCurveSettings(workers=1)})


def test_scale_curves_of_a_trained_family_through_dagster(cache_dir, family):
    from quanta_core.learning.scale import fit_scale_curves

    _write_family(cache_dir, family, SIZES)
    result = _scale(cache_dir)
    out = cache_dir / "families" / FAMILY / STEP / "token_scale_curves"
    assert sorted(p.name for p in out.iterdir()) == ["fits.parquet", "page.html", "points.parquet", "summary.json"]
    points = pd.read_parquet(out / "points.parquet")
    assert points["name"].tolist() == list(SIZES)  # in size order
    assert points["num_parameters"].tolist() == [family[m][1] for m in SIZES]  # config.json = torch's count
    fits = pd.read_parquet(out / "fits.parquet")
    direct = fit_scale_curves({m: family[m][0] for m in SIZES}, {m: family[m][1] for m in SIZES})
    for column in ("midpoint_parameters", "sharp", "flags"):
        np.testing.assert_array_equal(fits[column].to_numpy(), direct[column])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models_missing"] == ["pythia-1.4b", "pythia-2.8b", "pythia-6.9b", "pythia-12b"]
    meta = _meta(result, "token_scale_curves")
    assert meta["sharp"] + meta["gradual"] == summary["well_fit"] > 0 and meta["models_used"] == 6
    assert meta["sharp"] == int(fits["sharp"].sum()) and "pythia-14m" in meta["parameters"]
    assert "learned at" in (out / "page.html").read_text()


def test_scale_curves_need_each_models_checkpoint(cache_dir, family):
    _write_family(cache_dir, family, SIZES)
    (cache_dir / "pythia-70m" / STEP / "model_checkpoint" / "checkpoint.json").unlink()
    (cache_dir / "pythia-70m" / STEP / "model_checkpoint").rmdir()
    with pytest.raises(FileNotFoundError, match="no model_checkpoint of pythia-70m at step32"):
        _scale(cache_dir)


# -- the demo planner ----------------------------------------------------------------------------------

def test_demo_planner_chooses_partitions_for_every_real_asset():
    from quanta_assets.definitions import defs
    from quanta_assets.demo import demo_partitions, skipped_assets

    graph = defs.resolve_asset_graph()
    chosen = {k.to_user_string(): demo_partitions(graph, k, list(DEMO_STEPS))
              for k in graph.toposorted_asset_keys if graph.get(k).is_materializable}
    assert chosen["token_learning_times"] == [MODEL] and chosen["quanta_training_dynamics"] == [MODEL]
    assert chosen["token_scale_curves"] == []
    assert chosen["paper_abs/quanta_training_dynamics"] == [MODEL]  # a study of the demo (DEMO_STUDIES)
    skipped = skipped_assets(graph)
    assert "token_scale_curves" in skipped and "paper_abs/quanta_clusters" not in skipped
    assert {k for k in skipped if k != "token_scale_curves"} == {
        f"projected_8k/{name}" for name in ("quanta_similarity", "quanta_clusters", "quanta_cluster_stability",
                                            "quanta_cluster_sweep", "quanta_training_dynamics", "quanta_report",
                                            "quanta_report_samples")}
    assert all(chosen[k] == [] for k in skipped)
