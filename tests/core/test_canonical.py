"""Canonical corpus and index, checked against an independent naive computation."""

import numpy as np
import pytest

from quanta_core.corpus.canonical import (
    CanonicalCorpus,
    build_canonical,
    doc_pos_to_index,
    index_to_doc_pos,
    predictable_starts,
)
from quanta_core.corpus.pile import read_pile, write_pile

EDGE_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "",  # empty document: no tokens, nothing predictable
    "a",  # one token: nothing predictable
    "def f(x):\n    return x + 1\n" * 400,  # far over 1024 tokens: truncated
    "Ünïcödé — 汉字 and emoji 🙂 split across byte-level tokens",
    "<script>alert(1)</script>",
    "",
    "last one",
]


@pytest.fixture
def edge_corpus(tmp_path, tokenizer) -> CanonicalCorpus:
    documents = [(t, {"pile_set_name": f"set{i % 3}"}) for i, t in enumerate(EDGE_TEXTS)]
    path = write_pile(tmp_path / "edge.jsonl.zst", documents)
    return build_canonical(read_pile(path), tokenizer, batch_size=3)


def _naive(tokenizer):
    """Tokenize each document alone; predictable tokens by explicit loops."""
    docs = [tokenizer.encode(t, add_special_tokens=False).ids[:1024] for t in EDGE_TEXTS]
    pairs = [(d, pos) for d, ids in enumerate(docs) for pos in range(1, len(ids))]
    return docs, pairs


def test_ids_and_offsets_match_per_document_tokenization(edge_corpus, tokenizer):
    docs, _ = _naive(tokenizer)
    assert edge_corpus.num_documents == len(EDGE_TEXTS)
    assert edge_corpus.ids.dtype == np.uint16 and edge_corpus.offsets.dtype == np.int64
    for d, ids in enumerate(docs):
        assert edge_corpus.document(d).tolist() == ids
    assert len(docs[3]) == 1024 and len(docs[1]) == 0 and len(docs[2]) == 1
    assert edge_corpus.documents["num_tokens"].tolist() == [len(ids) for ids in docs]
    assert edge_corpus.documents["num_predictable"].tolist() == [max(len(ids) - 1, 0) for ids in docs]
    assert edge_corpus.documents["pile_set_name"].tolist() == [f"set{i % 3}" for i in range(len(EDGE_TEXTS))]


def test_canonical_index_matches_naive_enumeration(edge_corpus, tokenizer):
    docs, pairs = _naive(tokenizer)
    assert edge_corpus.num_predictable == len(pairs)
    g = np.arange(len(pairs))
    doc, pos = index_to_doc_pos(g, edge_corpus.starts)
    assert list(zip(doc.tolist(), pos.tolist())) == pairs
    assert doc_pos_to_index(doc, pos, edge_corpus.starts).tolist() == g.tolist()
    assert edge_corpus.target_ids().tolist() == [docs[d][p] for d, p in pairs]


def test_index_zero_is_token_one_of_first_document():
    starts = predictable_starts(np.array([0, 1, 5, 3]))
    assert starts.tolist() == [0, 0, 0, 4, 6]
    doc, pos = index_to_doc_pos(np.array([0, 3, 4, 5]), starts)
    assert doc.tolist() == [2, 2, 3, 3] and pos.tolist() == [1, 4, 1, 2]


def test_index_out_of_range(edge_corpus):
    with pytest.raises(IndexError):
        index_to_doc_pos(np.array([edge_corpus.num_predictable]), edge_corpus.starts)
    with pytest.raises(IndexError):
        doc_pos_to_index(0, 0, edge_corpus.starts)  # position 0 is never predictable


def test_first_n_documents_is_a_prefix(edge_corpus):
    head = edge_corpus.first(4)
    assert head.num_documents == 4
    assert head.num_predictable == edge_corpus.starts[4]
    assert np.array_equal(head.target_ids(), edge_corpus.target_ids()[: head.num_predictable])


def test_tokenizer_matches_pythia_ids(tokenizer):
    # ids of GPT-NeoX-20B / Pythia for a few strings (as the hub tokenizer gives them)
    assert tokenizer.get_vocab_size() == 50277
    assert tokenizer.encode("Hello world", add_special_tokens=False).ids == [12092, 1533]
    assert tokenizer.encode("\n\n", add_special_tokens=False).ids == [535]
    assert tokenizer.encode(" the", add_special_tokens=False).ids == [253]
    assert tokenizer.encode("<|endoftext|>", add_special_tokens=False).ids == [0]
