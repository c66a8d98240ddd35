"""Studies and lineage: run config cannot change what is computed, studies sit side by side, a
page never mixes versions, a broken study file is named and left out."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from support.helpers import cache_resources
from support.report_corpus import build_corpus

PARTITION = "quanta-demo|step4"


@pytest.fixture(scope="module")
def corpus(tokenizer):
    return build_corpus(tokenizer)


@pytest.fixture(scope="module")
def planted(corpus):
    """Selected tokens, a similarity with five planted groups, and a loss table."""
    indices = np.arange(0, corpus.num_predictable, 2, dtype=np.int64)
    rng = np.random.default_rng(0)
    x = np.eye(5)[corpus.target_ids()[indices] % 5] + 0.3 * rng.normal(size=(len(indices), 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return indices, (x @ x.T).astype(np.float32), rng.random(corpus.num_predictable).astype(np.float32)


def _stand_ins(corpus, planted, studies):
    """pile_canonical, pile_losses and each study's quanta_similarity returning fixed values."""
    indices, matrix, losses = planted
    from quanta_assets.partitions import checkpoint_partitions, model_partitions

    @dg.asset(name="pile_canonical")
    def pile_canonical() -> dict:
        return corpus.to_arrays()

    @dg.asset(name="pile_losses", partitions_def=checkpoint_partitions)
    def pile_losses() -> np.ndarray:
        return losses

    def similarity(prefix):
        @dg.asset(name="quanta_similarity", key_prefix=prefix, partitions_def=checkpoint_partitions)
        def quanta_similarity() -> dict:
            return {"indices": indices, "matrix": matrix}
        return quanta_similarity

    learning = dg.AssetSpec("token_learning_times", partitions_def=model_partitions)  # not materialized here
    return [pile_canonical, pile_losses, learning, *(similarity(s.key_prefix) for s in studies
                                                      if s.own_similarity or not s.key)]


def _definitions(cache_dir, corpus, planted, studies, k=5, stability=None):
    """The real clusters / report / comparison assets of the default study and ``studies``, with
    their settings folded into code versions as the code location does."""
    from quanta_assets.assets.comparison import comparison_asset
    from quanta_assets.code_versions import with_settings_code_version
    from quanta_assets.definitions import study_assets
    from quanta_assets.settings import (
        ClusterSettings,
        PileSource,
        ReportSettings,
        StabilitySettings,
        TrainingDynamicsSettings,
    )
    from quanta_assets.studies import DEFAULT_STUDY

    resources = {**cache_resources(cache_dir), "pile": PileSource(),
                 "cluster_settings": ClusterSettings(num_clusters=k), "report_settings": ReportSettings(before=20),
                 "dynamics_settings": TrainingDynamicsSettings(),
                 "stability_settings": stability or StabilitySettings()}
    everything = [DEFAULT_STUDY, *studies]
    for study in studies:
        resources.update(study.resources())
    analysis = [a for s in everything for a in study_assets(s) if "quanta_similarity" not in a.op.name]
    assets = [*_stand_ins(corpus, planted, everything), *analysis, comparison_asset(everything)]
    assets = [with_settings_code_version(a, resources) for a in assets]
    return assets, resources


def _run(assets, resources, selection, run_config=None, instance=None):
    return dg.materialize(assets, selection=selection, partition_key=PARTITION, resources=resources,
                          run_config=run_config, instance=instance, raise_on_error=False)


def _failure_text(result) -> str:
    """What the failed step said (its error and, for a ``dg.Failure``, its description)."""
    data = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data
    return f"{data.error.message if data.error else ''} {getattr(data.user_failure_data, 'description', '')}"


def _clusters_of(cache_dir, key=""):
    folder = cache_dir / "quanta-demo" / "step4" / key / "quanta_clusters"
    return np.load(folder / "labels.npy"), pd.read_parquet(folder / "tokens.parquet")


def test_run_config_cannot_change_settings_that_shape_results(cache_dir, corpus, planted):
    assets, resources = _definitions(cache_dir, corpus, planted, [])
    selection = ["pile_canonical", "pile_losses", "quanta_similarity", "quanta_clusters"]
    assert _run(assets, resources, selection).success
    labels_before = (cache_dir / "quanta-demo" / "step4" / "quanta_clusters" / "labels.npy").read_bytes()
    changed = {"resources": {"cluster_settings": {"config": {"num_clusters": 3}}}}
    result = _run(assets, resources, ["quanta_clusters"], run_config=changed)
    assert not result.success
    message = _failure_text(result)
    assert "cluster_settings.num_clusters: 5 in the definitions, 3 in this run" in message
    assert "studies/" in message
    # nothing was written: the definitions' result is still the one on disk
    assert (cache_dir / "quanta-demo" / "step4" / "quanta_clusters" / "labels.npy").read_bytes() == labels_before
    # execution-only fields stay free (Dagster builds a resource given in run config from that config
    # alone, so the fields the definitions set are given too)
    budget = {"resources": {"cluster_settings": {"config": {"num_clusters": 5, "memory_budget_gib": 2.0}}}}
    assert _run(assets, resources, ["quanta_clusters"], run_config=budget).success
    partial = {"resources": {"cluster_settings": {"config": {"memory_budget_gib": 2.0}}}}
    result = _run(assets, resources, ["quanta_clusters"], run_config=partial)
    assert not result.success and "num_clusters: 5 in the definitions, None in this run" in _failure_text(result)


def test_a_similarity_setting_in_run_config_is_refused_before_any_gradient(cache_dir):
    from quanta_assets.assets.similarity import quanta_similarity
    from quanta_assets.code_versions import with_settings_code_version
    from quanta_assets.definitions import default_resources
    from quanta_assets.partitions import checkpoint_partitions

    def stand_in(name, partitions=None):
        @dg.asset(name=name, partitions_def=partitions)
        def value() -> np.ndarray:
            return np.zeros(3, dtype=np.float32)
        return value

    resources = {**default_resources(), **cache_resources(cache_dir)}
    assets = [stand_in("pile_canonical"), stand_in("induction_filters"), stand_in("pile_losses", checkpoint_partitions),
              dg.AssetSpec("model_checkpoint", partitions_def=checkpoint_partitions),
              with_settings_code_version(quanta_similarity, resources)]
    config = {"resources": {"similarity_settings": {"config": {"num_tokens": 7}}}}
    result = dg.materialize(assets, resources=resources, partition_key=PARTITION, run_config=config,
                            selection=["pile_canonical", "induction_filters", "pile_losses", "quanta_similarity"],
                            raise_on_error=False)
    assert not result.success
    assert "similarity_settings.num_tokens: None in the definitions, 7 in this run" in _failure_text(result)
    assert not (cache_dir / "quanta-demo" / "step4" / "quanta_similarity").exists()


def test_an_environment_variable_changes_the_code_version(monkeypatch, tmp_path):
    from quanta_assets.definitions import build_definitions

    def version(pile):
        monkeypatch.setenv("QUANTA_PILE", pile)
        graph = build_definitions(studies=[]).resolve_asset_graph()
        return graph.get(dg.AssetKey("pile_canonical")).code_version

    assert version(str(tmp_path / "a.jsonl.zst")) != version(str(tmp_path / "b.jsonl.zst"))


def test_two_studies_side_by_side_and_their_comparison(cache_dir, corpus, planted):
    from quanta_assets.studies import Study

    three = Study(name="k-three", settings={"cluster_settings": {"num_clusters": 3}}, description="k = 3")
    assets, resources = _definitions(cache_dir, corpus, planted, [three])
    assert not three.own_similarity  # it declares no similarity setting: it clusters the default's
    assert _run(assets, resources, ["pile_canonical", "pile_losses", "quanta_similarity", "quanta_clusters"]).success
    default_file = cache_dir / "quanta-demo" / "step4" / "quanta_clusters" / "labels.npy"
    before = (default_file.read_bytes(), default_file.stat().st_mtime_ns)
    assert _run(assets, resources, ["k_three/quanta_clusters", "quanta_study_comparison"]).success
    assert (default_file.read_bytes(), default_file.stat().st_mtime_ns) == before  # untouched by the other study
    default_labels, _ = _clusters_of(cache_dir)
    three_labels, three_tokens = _clusters_of(cache_dir, "k_three")
    assert len(np.unique(default_labels)) == 5 and len(np.unique(three_labels)) == 3
    folder = cache_dir / "quanta-demo" / "step4" / "quanta_study_comparison"
    pairs = pd.read_parquet(folder / "pairs.parquet")
    row = pairs.iloc[0]
    assert {row.study_a, row.study_b} == {"default", "k-three"} and row.shared_tokens == len(planted[0])
    assert row.adjusted_rand == pytest.approx(adjusted_rand_score(default_labels, three_labels), abs=1e-12)
    assert row.nmi == pytest.approx(normalized_mutual_info_score(default_labels, three_labels), abs=1e-12)
    page = (folder / "page.html").read_text()
    assert "k-three" in page and "default" in page


def test_the_page_and_its_samples_table_are_never_made_apart(cache_dir, corpus, planted):
    assets, resources = _definitions(cache_dir, corpus, planted, [])
    with pytest.raises(dg.DagsterInvalidDefinitionError) as raised:
        _run(assets, resources, ["quanta_report"])
    assert isinstance(raised.value.__cause__, dg.DagsterInvalidSubsetError)


def test_a_broken_study_file_is_named_and_the_rest_loads(tmp_path, monkeypatch):
    from quanta_assets.definitions import build_definitions
    from quanta_assets.studies import load_studies

    (tmp_path / "good.yaml").write_text("description: fine\ncluster_settings: {num_clusters: 12}\n")
    (tmp_path / "zero.yaml").write_text("cluster_settings: {num_clusters: 0}\n")
    (tmp_path / "typo.yaml").write_text("cluster_settings: {num_clusterz: 3}\n")
    (tmp_path / "what.yaml").write_text("clusters: {num_clusters: 3}\n")
    with pytest.warns(UserWarning):
        studies, problems = load_studies([tmp_path])
    assert [s.name for s in studies] == ["good"]
    assert studies[0].resources()["good__cluster_settings"].num_clusters == 12
    text = "\n".join(problems)
    assert f"{tmp_path / 'zero.yaml'}: settings.cluster_settings" in text or "zero.yaml" in text
    assert "num_clusters" in text and "greater than or equal to 1" in text
    assert "typo.yaml" in text and "num_clusterz" in text
    assert "what.yaml" in text and "unknown key(s) ['clusters']" in text
    monkeypatch.setenv("QUANTA_STUDIES", str(tmp_path))
    with pytest.warns(UserWarning):
        defs = build_definitions()
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "good/quanta_clusters" in keys and "quanta_clusters" in keys and not any("typo" in k for k in keys)


def test_stability_and_sweep_assets_judge_the_clusters_and_the_report_shows_them(cache_dir, corpus, planted):
    from quanta_assets.settings import StabilitySettings

    assets, resources = _definitions(cache_dir, corpus, planted, [],
                                     stability=StabilitySettings(resamples=4, min_stable_fraction=0.9))
    selection = ["pile_canonical", "pile_losses", "quanta_similarity", "quanta_clusters", "quanta_cluster_stability",
                 "quanta_cluster_sweep", "quanta_report", "quanta_report_samples"]
    result = _run(assets, resources, selection)
    assert result.success
    folder = cache_dir / "quanta-demo" / "step4"
    table = pd.read_parquet(folder / "quanta_cluster_stability" / "clusters.parquet")
    labels, _ = _clusters_of(cache_dir)
    assert len(table) == 5 and table["size"].tolist() == np.bincount(labels).tolist()
    assert (table.stability > 0.9).all() and (table.band == "highly stable").all()  # five planted groups
    assert (table.coherence_z > 3).all()
    meta = result.asset_materializations_for_node("quanta_cluster_stability")[0].metadata
    assert meta["fraction_stable"].value == 1.0
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == "enough_stable_clusters" and check.passed
    sweep = pd.read_parquet(folder / "quanta_cluster_sweep" / "envelope.parquet")
    assert sweep["size"].is_monotonic_decreasing and sweep["size"].iloc[0] <= len(labels)
    html = (folder / "quanta_report.html").read_text()
    assert "Which clusters are real" in html and "100% of 5 clusters are stable" in html
    assert '"band": "highly stable"' in html or '"band":"highly stable"' in html


def test_the_stability_check_warns_on_a_random_matrix(cache_dir, corpus, planted):
    from quanta_assets.settings import StabilitySettings

    indices, _, losses = planted
    x = np.random.default_rng(7).normal(size=(len(indices), 40))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assets, resources = _definitions(cache_dir, corpus, (indices, (x @ x.T).astype(np.float32), losses), [], k=8,
                                     stability=StabilitySettings(resamples=4))
    result = _run(assets, resources, ["pile_canonical", "pile_losses", "quanta_similarity", "quanta_clusters",
                                      "quanta_cluster_stability"])
    assert result.success  # a warning, not a failure
    check = result.get_asset_check_evaluations()[0]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["fraction_stable"].value < 0.5
