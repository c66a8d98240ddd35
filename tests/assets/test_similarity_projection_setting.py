"""``similarity_settings.projection`` through Dagster: the asset runs the chosen projection kind
(the same matrix as a direct call) and records it in the metadata."""

import dagster as dg
import numpy as np
import pandas as pd
import torch

from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.corpus.selection import select_tokens
from quanta_core.similarity import similarity_matrix

from support.helpers import cache_resources, make_tiny_gptneox, write_demo_checkpoint

LENGTHS = [300, 120, 40]


def test_asset_uses_the_projection_setting(tmp_path):
    from quanta_assets.assets.similarity import quanta_similarity
    from quanta_assets.compute import ComputeResource
    from quanta_assets.partitions import checkpoint_partitions
    from quanta_assets.resources import ModelLoader
    from quanta_assets.settings import SimilaritySettings

    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    ids = np.concatenate([rng.integers(0, 512, n) for n in LENGTHS]).astype(np.uint16)
    corpus = CanonicalCorpus(ids, np.concatenate([[0], np.cumsum(LENGTHS)]).astype(np.int64),
                             pd.DataFrame({"num_tokens": LENGTHS}))
    model = make_tiny_gptneox(max_positions=512)
    write_demo_checkpoint(tmp_path, "step0", model)
    losses = rng.exponential(2.0, corpus.num_predictable).astype(np.float32)

    @dg.asset(name="pile_canonical")
    def pile_canonical() -> dict:
        return corpus.to_arrays()

    @dg.asset(name="induction_filters")
    def induction_filters() -> dict:
        flags = np.ones(corpus.num_predictable, dtype=bool)
        return {"present_trigram": flags, "present_bigram": flags}

    @dg.asset(name="pile_losses", partitions_def=checkpoint_partitions)
    def pile_losses() -> np.ndarray:
        return losses

    settings = SimilaritySettings(threshold_bits=1.0, filter="none", skip=2, num_tokens=5, method="projected",
                                  projection_dim=2048, projection="sjlt-2", seed=3)
    resources = {**cache_resources(tmp_path), "models": ModelLoader(device="cpu"), "compute": ComputeResource(),
                 "similarity_settings": settings}
    key = dg.MultiPartitionKey({"model": "quanta-demo", "step": "step0"})
    dg.materialize([pile_canonical, induction_filters], resources=resources)
    dg.materialize([pile_losses], partition_key=key, resources=resources)
    result = dg.materialize([pile_canonical, induction_filters, pile_losses, quanta_similarity],
                            selection=[quanta_similarity.key], partition_key=key, resources=resources)
    matrix = np.load(tmp_path / "quanta-demo" / "step0" / "quanta_similarity" / "matrix.npy", allow_pickle=False)
    expected = select_tokens(losses, None, threshold_bits=1.0, skip=2, num_tokens=5, filter_name="none")
    direct = similarity_matrix(model, corpus, expected, method="projected", projection_dim=2048, seed=3,
                               projection="sjlt-2")
    other = similarity_matrix(model, corpus, expected, method="projected", projection_dim=2048, seed=3)
    assert np.array_equal(matrix, direct.matrix) and not np.array_equal(matrix, other.matrix)
    meta = result.asset_materializations_for_node("quanta_similarity")[0].metadata
    assert meta["setting_projection"].value == "sjlt-2" and meta["projection"].value == "sjlt-2"
