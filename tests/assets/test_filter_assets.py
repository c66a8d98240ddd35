"""induction_filters through Dagster: the stored flags against the naive loop, and its length check."""

import dagster as dg
import numpy as np

from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.corpus.filters import induction_filters

from support.helpers import cache_resources
from support.helpers import corpus_of_documents as _corpus
from support.helpers import naive_ngram_flags as naive_flags
from support.helpers import random_documents as _random_docs


def _materialize(cache_dir, corpus: CanonicalCorpus, filters_value=None):
    """pile_canonical (stand-in returning ``corpus``) + induction_filters (the real asset, or a
    stand-in under its key returning ``filters_value``) + the real length check."""
    from quanta_assets.assets import corpus as stage
    from quanta_assets.checks import induction_filters_length

    @dg.asset(name="pile_canonical")
    def pile_canonical() -> dict:
        return corpus.to_arrays()

    filters_asset = stage.induction_filters
    if filters_value is not None:
        @dg.asset(name="induction_filters")
        def filters_asset(pile_canonical: dict) -> dict:
            return filters_value

    return dg.materialize([pile_canonical, filters_asset, induction_filters_length],
                          resources=cache_resources(cache_dir),
                          raise_on_error=False)


def test_asset_materializes_and_check_passes(tmp_path):
    docs = _random_docs(200, 50, alphabet=4, seed=5)
    result = _materialize(tmp_path, _corpus(docs))
    assert result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed
    for n, name in ((3, "present_trigram"), (2, "present_bigram")):
        stored = np.load(tmp_path / "corpus" / "induction_filters" / f"{name}.npy", allow_pickle=False)
        np.testing.assert_array_equal(stored, naive_flags(docs, n))
    metadata = result.asset_materializations_for_node("induction_filters")[0].metadata
    assert 0 < metadata["fraction_present_trigram"].value < metadata["fraction_present_bigram"].value < 1


def test_check_fails_on_wrong_length(tmp_path):
    docs = _random_docs(50, 30, alphabet=4, seed=6)
    good = induction_filters(_corpus(docs))
    bad = {"present_trigram": good["present_trigram"][:-1], "present_bigram": good["present_bigram"]}
    [evaluation] = _materialize(tmp_path, _corpus(docs), bad).get_asset_check_evaluations()
    assert not evaluation.passed and "present_trigram has shape" in evaluation.description
    as_int = {"present_trigram": good["present_trigram"].astype(np.int8), "present_bigram": good["present_bigram"]}
    [evaluation] = _materialize(tmp_path, _corpus(docs), as_int).get_asset_check_evaluations()
    assert not evaluation.passed
