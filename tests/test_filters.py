"""Induction filters: the vectorized flags against a naive loop (the original's algorithm), and
the asset with its length check run through Dagster."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from quanta_core.canonical import CanonicalCorpus
from quanta_core.filters import induction_filters, present_bigram_flags, present_ngram_flags, present_trigram_flags


def _corpus(docs) -> CanonicalCorpus:
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    ids = np.concatenate([np.asarray(d, dtype=np.uint16) for d in docs]) if docs else np.zeros(0, np.uint16)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return CanonicalCorpus(ids, offsets, pd.DataFrame({"num_tokens": lengths, "num_predictable": np.maximum(lengths - 1, 0)}))


def naive_flags(docs, n: int) -> np.ndarray:
    """The original scripts' loop: per document, a set of the n-grams seen so far."""
    out = []
    for doc in docs:
        doc = [int(t) for t in doc]
        seen = set()
        for i in range(1, len(doc)):
            if i < n - 1:
                out.append(False)  # no n-gram ends here (position 1 for trigrams)
                continue
            gram = tuple(doc[i - n + 1 : i + 1])
            out.append(gram in seen)
            seen.add(gram)
    return np.array(out, dtype=bool)


def _random_docs(num_docs, max_len, alphabet, seed):
    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, alphabet, rng.integers(0, max_len + 1)) for _ in range(num_docs)]
    docs[:4] = [[], [7], [7, 7], [3, 3, 3, 3, 3]]
    return docs


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("chunk_tokens", [1, 97, 1 << 24])
def test_flags_equal_naive_loop(n, chunk_tokens):
    docs = _random_docs(400, 80, alphabet=5, seed=n)  # a small alphabet: many repeats
    docs.append(np.random.default_rng(9).integers(0, 65_536, 1024))  # the full 16-bit id range
    expected = naive_flags(docs, n)
    got = present_ngram_flags(_corpus(docs), n, chunk_tokens=chunk_tokens)
    assert got.dtype == np.bool_ and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    assert 0.05 < expected.mean() < 0.95  # the test data has both kinds


def test_more_documents_than_one_key_chunk():
    """Over 65,536 documents: keys carry a chunk-local document index, so chunks must split."""
    docs = _random_docs(70_000, 6, alphabet=2, seed=3)
    docs[65_535:65_537] = [[1, 1, 1, 1], [1, 1, 1, 1]]  # same trigrams across the chunk boundary: not flagged
    corpus = _corpus(docs)
    np.testing.assert_array_equal(present_trigram_flags(corpus), naive_flags(docs, 3))
    np.testing.assert_array_equal(present_bigram_flags(corpus), naive_flags(docs, 2))


def test_worked_example():
    # positions:    0  1  2  3  4  5  6
    doc = [5, 6, 7, 5, 6, 7, 5]
    corpus = _corpus([doc, [], [9], [5, 6, 7]])
    # bigram (5,6) again at 4, (6,7) at 5, (7,5) at 6; trigram (5,6,7) at 5, (6,7,5) at 6
    np.testing.assert_array_equal(present_bigram_flags(corpus), [0, 0, 0, 1, 1, 1] + [0, 0])
    np.testing.assert_array_equal(present_trigram_flags(corpus), [0, 0, 0, 0, 1, 1] + [0, 0])
    # overlapping repeats count: a a a a flags position 3 (trigram) and 2, 3 (bigram)
    np.testing.assert_array_equal(present_trigram_flags(_corpus([[4, 4, 4, 4]])), [0, 0, 1])
    np.testing.assert_array_equal(present_bigram_flags(_corpus([[4, 4, 4, 4]])), [0, 1, 1])


def test_edge_cases_and_errors():
    assert present_trigram_flags(_corpus([])).shape == (0,)
    assert present_bigram_flags(_corpus([[], [1]])).shape == (0,)
    with pytest.raises(ValueError, match="2 or 3"):
        present_ngram_flags(_corpus([[1, 2]]), 4)
    flags = induction_filters(_corpus([[1, 2, 1, 2, 1, 2]]))
    assert set(flags) == {"present_trigram", "present_bigram"}
    np.testing.assert_array_equal(flags["present_trigram"], [0, 0, 0, 1, 1])


# -- the Dagster asset and its check -------------------------------------------------------------


def _materialize(cache_dir, corpus: CanonicalCorpus, filters_value=None):
    """pile_canonical (stand-in returning ``corpus``) + induction_filters (the real asset, or a
    stand-in under its key returning ``filters_value``) + the real length check."""
    from quanta_assets.assets import losses as stage
    from quanta_assets.io_manager import QuantaIOManagerFactory

    @dg.asset(name="pile_canonical")
    def pile_canonical() -> dict:
        return corpus.to_arrays()

    filters_asset = stage.induction_filters
    if filters_value is not None:
        @dg.asset(name="induction_filters")
        def filters_asset(pile_canonical: dict) -> dict:
            return filters_value

    return dg.materialize([pile_canonical, filters_asset, stage.induction_filters_length],
                          resources={"io_manager": QuantaIOManagerFactory(base_dir=str(cache_dir))},
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
