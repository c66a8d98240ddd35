"""pile_losses through Dagster, on a real hub-layout checkpoint of a tiny GPT-NeoX: the stored
table against a naive one-document-at-a-time computation, the checks on good and corrupted
tables, and a failing blocking check stopping downstream."""

import math
from types import SimpleNamespace

import dagster as dg
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from quanta_core.corpus.canonical import CanonicalCorpus

from support.helpers import (
    cache_resources,
    corpus_from_lengths,
    make_tiny_gptneox,
    write_demo_checkpoint,
    write_hub_revision,
)

VOCAB = 50_304  # Pythia's (padded) vocabulary, so real token ids fit
DEMO_STEP0 = dg.MultiPartitionKey({"model": "quanta-demo", "step": "step0"})


def naive_losses(model, corpus: CanonicalCorpus) -> np.ndarray:
    """Each document alone through the full HF model (as the original), cross-entropy per token."""
    out = []
    with torch.no_grad():
        for d in range(corpus.num_documents):
            doc = corpus.document(d)
            if len(doc) < 2:
                continue
            x = torch.tensor(doc.astype(np.int64))[None]
            out.append(F.cross_entropy(model(input_ids=x).logits[0][:-1].float(), x[0, 1:], reduction="none").numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def tiny_model():
    return make_tiny_gptneox(vocab_size=VOCAB, hidden=32, layers=2, heads=4)


def _definitions(corpus: CanonicalCorpus, cache_dir, settings=None, **loader):
    from quanta_assets.assets import losses as stage
    from quanta_assets.checks import pile_losses_finite, pile_losses_length, pile_losses_step0_sanity
    from quanta_assets.compute import ComputeResource
    from quanta_assets.resources import ModelLoader
    from quanta_assets.settings import LossSettings

    @dg.asset(name="pile_canonical")
    def pile_canonical() -> dict:
        return corpus.to_arrays()

    assets = [pile_canonical, stage.pile_losses]
    checks = [pile_losses_length, pile_losses_finite, pile_losses_step0_sanity]
    resources = {**cache_resources(cache_dir), "models": ModelLoader(device="cpu", **loader),
                 "loss_settings": settings or LossSettings(), "compute": ComputeResource()}
    return assets, checks, resources


def _evaluations(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    """pile_canonical + pile_losses (quanta-demo, step0, a tiny checkpoint in <cache>/hub) and its
    checks, through Dagster."""
    cache_dir = tmp_path_factory.mktemp("cache")
    corpus = corpus_from_lengths([0, 1, 300, 40, 2, 77])
    model = tiny_model()
    write_demo_checkpoint(cache_dir, "step0", model)
    assets, checks, resources = _definitions(corpus, cache_dir)
    dg.materialize([assets[0]], resources=resources)
    result = dg.materialize(assets + checks, selection=[assets[1].key], partition_key=DEMO_STEP0,
                            resources=resources)
    return SimpleNamespace(cache_dir=cache_dir, corpus=corpus, assets=assets, checks=checks,
                           resources=resources, result=result, model=model)


def test_asset_stores_the_table_and_checks_pass(materialized):
    result, corpus = materialized.result, materialized.corpus
    assert result.success
    stored = np.load(materialized.cache_dir / "quanta-demo" / "step0" / "pile_losses.npy", allow_pickle=False)
    assert stored.dtype == np.float32 and len(stored) == corpus.num_predictable
    np.testing.assert_allclose(stored, naive_losses(materialized.model, corpus), atol=1e-4)
    evaluations = _evaluations(result)
    assert set(evaluations) == {"pile_losses_length", "pile_losses_finite", "pile_losses_step0_sanity"}
    assert all(e.passed for e in evaluations.values())
    assert evaluations["pile_losses_step0_sanity"].metadata["applies"].value is True  # random init ≈ ln(vocab)
    metadata = result.asset_materializations_for_node("pile_losses")[0].metadata
    assert metadata["num_tokens"].value == len(stored)
    assert abs(metadata["mean_loss_nats"].value - float(stored.mean())) < 1e-5
    assert "| loss (nats) |" in metadata["loss_histogram"].value
    for key in ("median_loss_nats", "fraction_below_0.1_nats", "tokens_per_second", "device", "dtype", "batch_tokens"):
        assert key in metadata


def _run_checks_on(materialized, table: np.ndarray) -> dict:
    """Run the real checks through Dagster on a table stored under the pile_losses key (a stand-in
    asset returns ``table``, the IO manager stores it, the checks load it back)."""
    from quanta_assets.partitions import checkpoint_partitions

    @dg.asset(name="pile_losses", partitions_def=checkpoint_partitions)
    def corrupted_pile_losses() -> np.ndarray:
        return table

    result = dg.materialize(
        [materialized.assets[0], corrupted_pile_losses, *materialized.checks], selection=[corrupted_pile_losses.key],
        partition_key=DEMO_STEP0, resources=materialized.resources, raise_on_error=False,
    )
    return _evaluations(result)


def test_checks_fail_on_corrupted_tables(materialized):
    good = np.array(np.load(materialized.cache_dir / "quanta-demo" / "step0" / "pile_losses.npy"))
    try:
        short = _run_checks_on(materialized, good[:-1].copy())
        assert not short["pile_losses_length"].passed and short["pile_losses_finite"].passed
        assert "expected float32" in short["pile_losses_length"].description

        nan = good.copy()
        nan[5] = np.nan
        evaluations = _run_checks_on(materialized, nan)
        assert evaluations["pile_losses_length"].passed and not evaluations["pile_losses_finite"].passed
        assert evaluations["pile_losses_finite"].metadata["first_bad_index"].value == 5

        wrong_dtype = _run_checks_on(materialized, good.astype(np.float64))
        assert not wrong_dtype["pile_losses_length"].passed

        trained_looking = _run_checks_on(materialized, np.full_like(good, 2.5))
        sanity = trained_looking["pile_losses_step0_sanity"]
        assert not sanity.passed and sanity.severity == dg.AssetCheckSeverity.WARN
        assert trained_looking["pile_losses_length"].passed and trained_looking["pile_losses_finite"].passed
    finally:
        np.save(materialized.cache_dir / "quanta-demo" / "step0" / "pile_losses.npy", good, allow_pickle=False)


def test_blocking_check_stops_downstream(materialized, tmp_path):
    """A failing blocking check keeps a downstream asset of the same run from materializing: a
    checkpoint whose unembedding is NaN (every loss NaN) fails pile_losses_finite."""
    from quanta_assets.partitions import checkpoint_partitions

    ran = []

    @dg.asset(partitions_def=checkpoint_partitions, deps=["pile_losses"])
    def downstream() -> None:
        ran.append(True)

    broken = tiny_model()
    with torch.no_grad():
        broken.get_output_embeddings().weight.fill_(float("nan"))
    hub = tmp_path / "hub"
    hub.mkdir()
    write_hub_revision(hub, "EleutherAI/pythia-70m", "step0", broken)
    assets, checks, resources = _definitions(materialized.corpus, materialized.cache_dir, hub_cache_dir=str(hub),
                                             offline=True)
    result = dg.materialize(assets + checks + [downstream], selection=[assets[1].key, downstream.key],
                            partition_key=dg.MultiPartitionKey({"model": "pythia-70m", "step": "step0"}),
                            resources=resources, raise_on_error=False)
    assert not _evaluations(result)["pile_losses_finite"].passed
    assert not ran


def test_settings_resolve_number_of_documents():
    from quanta_assets.settings import LossSettings

    assert LossSettings().for_model("quanta-demo", 2000) == 400  # the demo preset
    assert LossSettings().for_model("quanta-demo", 300) == 300
    assert LossSettings().for_model("pythia-70m", 200_000) == 20_000
    assert LossSettings().for_model("pythia-70m", 500) == 500
    assert LossSettings(num_documents=7).for_model("pythia-70m", 500) == 7
    with pytest.raises(ValueError, match="has 500 documents"):
        LossSettings(num_documents=501).for_model("quanta-demo", 500)
    assert math.isclose(math.log(50_304), 10.826, abs_tol=1e-3)
