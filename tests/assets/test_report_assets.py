"""``quanta_clusters`` and ``quanta_report`` materialized through Dagster on the report test corpus."""

import numpy as np
import pandas as pd
import pytest

from support.helpers import cache_resources
from support.report_corpus import build_corpus


@pytest.fixture(scope="module")
def corpus(tokenizer):
    return build_corpus(tokenizer)


# -- the Dagster assets ----------------------------------------------------------------------------


def _materialize_clusters_and_report(cache_dir, corpus, indices, matrix, losses, num_clusters):
    import dagster as dg

    from quanta_assets.assets import clusters as stage
    from quanta_assets.assets.report import quanta_report
    from quanta_assets.partitions import checkpoint_key, checkpoint_partitions, model_partitions
    from quanta_assets.settings import ClusterSettings, PileSource, ReportSettings

    @dg.asset(name="pile_canonical")
    def pile_canonical() -> dict:
        return corpus.to_arrays()

    @dg.asset(name="pile_losses", partitions_def=checkpoint_partitions)
    def pile_losses() -> np.ndarray:
        return losses

    @dg.asset(name="quanta_similarity", partitions_def=checkpoint_partitions)
    def quanta_similarity() -> dict:
        return {"indices": indices, "matrix": matrix}

    dynamics = dg.AssetSpec("quanta_training_dynamics", partitions_def=model_partitions)  # not materialized here
    judged = [dg.AssetSpec(k, partitions_def=checkpoint_partitions)  # optional inputs of the report, not here
              for k in ("quanta_cluster_stability", "quanta_cluster_sweep")]
    dg.materialize([pile_canonical], resources=cache_resources(cache_dir))
    return dg.materialize(
        [pile_canonical, pile_losses, quanta_similarity, dynamics, *judged, stage.quanta_clusters, quanta_report],
        selection=["pile_losses", "quanta_similarity", "quanta_clusters", "quanta_report", "quanta_report_samples"],
        partition_key=checkpoint_key("quanta-demo", "step4"),
        resources={
            **cache_resources(cache_dir),
            "pile": PileSource(),
            "cluster_settings": ClusterSettings(num_clusters=num_clusters),
            "report_settings": ReportSettings(before=20),
        },
        raise_on_error=False,
    )


def test_assets_materialize_through_dagster(cache_dir, corpus, tokenizer):
    from quanta_assets.settings import ClusterSettings
    from quanta_core.clustering.spectral import spectral_clustering
    from quanta_core.report.token_text import token_bytes_table

    table = token_bytes_table(tokenizer)

    predictable = corpus.num_predictable
    indices = np.arange(0, predictable, 2, dtype=np.int64)
    targets = corpus.target_ids()[indices]
    rng = np.random.default_rng(0)
    x = np.eye(5)[targets % 5] + 0.3 * rng.normal(size=(len(indices), 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    matrix = (x @ x.T).astype(np.float32)
    losses = rng.random(predictable).astype(np.float32)

    result = _materialize_clusters_and_report(cache_dir, corpus, indices, matrix, losses, num_clusters=5)
    assert result.success
    folder = cache_dir / "quanta-demo" / "step4"
    labels = np.load(folder / "quanta_clusters" / "labels.npy", allow_pickle=False)
    np.testing.assert_array_equal(labels, spectral_clustering(matrix, 5))
    tokens = pd.read_parquet(folder / "quanta_clusters" / "tokens.parquet")
    assert list(tokens.columns) == ["cluster", "index", "document", "position", "token_id", "loss"]
    np.testing.assert_array_equal(tokens.cluster, labels)
    np.testing.assert_array_equal(tokens["index"], indices)
    np.testing.assert_array_equal(tokens.token_id, targets)
    np.testing.assert_array_equal(corpus.starts[tokens.document] + tokens.position - 1, indices)
    np.testing.assert_array_equal(tokens.loss, losses[indices])
    meta = result.asset_materializations_for_node("quanta_clusters")[0].metadata
    assert meta["num_clusters"].value == 5 and meta["n_init"].value == 30 and meta["random_state"].value == 0
    assert meta["clustering_seconds"].value >= 0
    html_path = folder / "quanta_report.html"
    meta = result.asset_materializations_for_node("quanta_report")[0].metadata
    assert meta["file_size_bytes"].value == html_path.stat().st_size
    assert meta["num_clusters"].value == 5 and meta["before"].value == 20 and meta["after"].value == 0
    assert "quanta-demo · step4" in html_path.read_text(encoding="utf-8")
    assert "samples_per_cluster_cap" not in meta and meta["samples_in_page"].value == len(tokens)
    # the complete samples table next to the page: every sample, in the page, with its text
    samples = pd.read_parquet(folder / "quanta_report_samples.parquet")
    assert len(samples) == len(tokens) and samples.in_page.all() and samples.cluster.is_monotonic_increasing
    row = samples.iloc[-1]
    doc = corpus.document(row.document)
    context = doc[max(0, row.position - 20):row.position + 1]
    assert row.text_before + row.text_target + row.text_after == b"".join(table[i] for i in context).decode()
    meta = result.asset_materializations_for_node("quanta_report")[1].metadata
    assert meta["num_rows"].value == len(tokens)
    assert ClusterSettings().for_model("quanta-demo").num_clusters == 30
    assert ClusterSettings().for_model("pythia-70m").num_clusters == 400


def test_cluster_asset_refuses_more_clusters_than_tokens(cache_dir, corpus):
    indices = np.arange(10, dtype=np.int64)
    result = _materialize_clusters_and_report(cache_dir, corpus, indices, np.eye(10, dtype=np.float32),
                                              np.zeros(corpus.num_predictable, np.float32), num_clusters=11)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "num_clusters = 11 is more than the 10 samples" in str(failure.event_specific_data.error)
    assert not (cache_dir / "quanta-demo" / "step4" / "quanta_clusters").exists()


def test_report_shows_the_dynamics_of_its_step(cache_dir, corpus):
    """dynamics → report, one way: the report of the reference step shows the stored dynamics
    (sparklines, learned-at section); the dynamics page links the report by a relative href."""
    import dagster as dg

    from quanta_assets.assets.dynamics import quanta_training_dynamics
    from quanta_assets.assets.report import quanta_report
    from quanta_assets.partitions import checkpoint_key, checkpoint_partitions, model_partitions
    from quanta_assets.settings import PileSource, ReportSettings, TrainingDynamicsSettings

    indices = np.arange(0, corpus.num_predictable, 2, dtype=np.int64)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(indices), 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    losses = rng.random(corpus.num_predictable).astype(np.float32)
    assert _materialize_clusters_and_report(cache_dir, corpus, indices, (x @ x.T).astype(np.float32), losses,
                                            num_clusters=5).success
    report_path = cache_dir / "quanta-demo" / "step4" / "quanta_report.html"
    assert "When clusters are learned" not in report_path.read_text(encoding="utf-8")  # no dynamics yet

    resources = {**cache_resources(cache_dir), "pile": PileSource(),
                 "dynamics_settings": TrainingDynamicsSettings(), "report_settings": ReportSettings(before=20)}
    upstream = [dg.AssetSpec(k, partitions_def=checkpoint_partitions) for k in ("quanta_clusters", "pile_losses")]
    learning = dg.AssetSpec("token_learning_times", partitions_def=model_partitions)  # not materialized: optional
    assert dg.materialize([*upstream, learning, quanta_training_dynamics], partition_key="quanta-demo",
                          resources=resources).success
    page = (cache_dir / "quanta-demo" / "quanta_training_dynamics" / "page.html").read_text(encoding="utf-8")
    assert '<a href="../step4/quanta_report.html">' in page

    @dg.asset(name="pile_canonical")
    def pile_canonical() -> dict:
        return corpus.to_arrays()

    stored = [upstream[0], dg.AssetSpec("quanta_training_dynamics", partitions_def=model_partitions),  # stored above
              *(dg.AssetSpec(k, partitions_def=checkpoint_partitions)
                for k in ("quanta_cluster_stability", "quanta_cluster_sweep"))]
    result = dg.materialize([pile_canonical, *stored, quanta_report],
                            selection=["quanta_report", "quanta_report_samples"],
                            partition_key=checkpoint_key("quanta-demo", "step4"),
                            resources=resources)
    assert result.success
    html = report_path.read_text(encoding="utf-8")
    assert "When clusters are learned" in html and html.count('<template id="sparkline-') == 5
    assert result.asset_materializations_for_node("quanta_report")[0].metadata["training_dynamics"].value is True
    # k changes (5 → 3): the stored dynamics followed the 5 old clusters, so the new report shows no
    # learned-at figure, curve or section of them — it says the dynamics are pending for these clusters
    assert _materialize_clusters_and_report(cache_dir, corpus, indices, (x @ x.T).astype(np.float32), losses,
                                            num_clusters=3).success
    html = report_path.read_text(encoding="utf-8")
    assert "Training dynamics: pending for these clusters" in html
    assert "When clusters are learned" not in html and '<template id="sparkline-' not in html
    assert '"learnedAt":' not in html and '"hasLearnedAt":false' in html.replace(" ", "")
