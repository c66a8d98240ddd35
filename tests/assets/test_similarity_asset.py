"""quanta_similarity through Dagster: the real asset on a hub-layout checkpoint of a tiny GPT-NeoX
selects the tokens, computes the matrix through the compute backend and stores it."""

import dagster as dg
import numpy as np
import pandas as pd
import torch

from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.corpus.selection import select_tokens
from quanta_core.similarity import similarity_matrix

from support.helpers import cache_resources, make_tiny_gptneox, write_demo_checkpoint

LENGTHS = [1024, 300, 2, 1, 700, 50]  # a 1-token document has no predictable token


def test_asset_selects_computes_and_stores(tmp_path):
    from quanta_assets.assets.similarity import quanta_similarity
    from quanta_assets.compute import ComputeResource
    from quanta_assets.partitions import checkpoint_partitions
    from quanta_assets.resources import ModelLoader
    from quanta_assets.settings import SimilaritySettings

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    ids = np.concatenate([rng.integers(0, 512, n) for n in LENGTHS]).astype(np.uint16)
    offsets = np.concatenate([[0], np.cumsum(LENGTHS)]).astype(np.int64)
    corpus = CanonicalCorpus(ids, offsets, pd.DataFrame({"num_tokens": LENGTHS}))
    model = make_tiny_gptneox(max_positions=1024)
    write_demo_checkpoint(tmp_path, "step0", model)
    g = corpus.num_predictable
    losses = rng.exponential(2.0, g).astype(np.float32)
    trigram = rng.random(g + 10) < 0.2

    @dg.asset(name="pile_canonical")
    def pile_canonical() -> dict:
        return corpus.to_arrays()

    @dg.asset(name="induction_filters")
    def induction_filters() -> dict:
        return {"present_trigram": trigram, "present_bigram": trigram}

    @dg.asset(name="pile_losses", partitions_def=checkpoint_partitions)
    def pile_losses() -> np.ndarray:
        return losses

    resources = {
        **cache_resources(tmp_path),
        "models": ModelLoader(device="cpu"),
        "compute": ComputeResource(),
        "similarity_settings": SimilaritySettings(threshold_bits=1.0, skip=3, num_tokens=6),
    }
    key = dg.MultiPartitionKey({"model": "quanta-demo", "step": "step0"})
    dg.materialize([pile_canonical, induction_filters], resources=resources)
    dg.materialize([pile_losses], partition_key=key, resources=resources)
    result = dg.materialize([pile_canonical, induction_filters, pile_losses, quanta_similarity],
                            selection=[quanta_similarity.key], partition_key=key, resources=resources)
    stored = tmp_path / "quanta-demo" / "step0" / "quanta_similarity"
    indices = np.load(stored / "indices.npy", allow_pickle=False)
    matrix = np.load(stored / "matrix.npy", allow_pickle=False)
    expected = select_tokens(losses, trigram[:g], threshold_bits=1.0, skip=3, num_tokens=6)
    assert indices.dtype == np.int64 and indices.tolist() == expected.tolist()
    assert matrix.dtype == np.float32 and matrix.shape == (6, 6)
    direct = similarity_matrix(model, corpus, expected)
    assert np.abs(matrix - direct.matrix).max() < 1e-6
    meta = result.asset_materializations_for_node("quanta_similarity")[0].metadata
    assert meta["gradient_computations"].value == 6 and meta["setting_filter"].value == "present_trigram"
    assert meta["setting_skip"].value == 3 and meta["setting_method"].value == "exact"
