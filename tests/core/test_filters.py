"""Induction filters: the vectorized flags against a naive loop (the original's algorithm)
(the asset and its check: tests/assets/test_filter_assets.py)."""

import numpy as np
import pytest

from quanta_core.corpus.filters import (
    induction_filters,
    present_bigram_flags,
    present_ngram_flags,
    present_trigram_flags,
)

from support.helpers import corpus_of_documents as _corpus
from support.helpers import naive_ngram_flags as naive_flags
from support.helpers import random_documents as _random_docs


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
