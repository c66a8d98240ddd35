"""token_losses: the batched loss table against a naive one-document-at-a-time computation
(the asset and its checks: tests/assets/test_loss_assets.py)."""


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from quanta_core.corpus.canonical import CanonicalCorpus, build_canonical
from quanta_core.corpus.pile import PileDocument
from quanta_core.models.losses import plan_batches, token_losses

from support.helpers import corpus_from_lengths, make_tiny_gptneox

VOCAB = 50_304  # Pythia's (padded) vocabulary, so real token ids fit


def naive_losses(model, corpus: CanonicalCorpus, num_documents=None) -> np.ndarray:
    """Each document alone through the full HF model (as the original), cross-entropy per token."""
    out = []
    with torch.no_grad():
        for d in range(num_documents if num_documents is not None else corpus.num_documents):
            doc = corpus.document(d)
            if len(doc) < 2:
                continue
            x = torch.tensor(doc.astype(np.int64))[None]
            logits = model(input_ids=x).logits[0]
            out.append(F.cross_entropy(logits[:-1].float(), x[0, 1:], reduction="none").numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


@pytest.fixture(scope="module")
def model():
    return make_tiny_gptneox(vocab_size=VOCAB, hidden=32, layers=2, heads=4, max_positions=1024)


@pytest.fixture(scope="module")
def real_corpus(tokenizer) -> CanonicalCorpus:
    """Real tokenized text: empty, one-token, over-long (> 1024 tokens before truncation) and
    assorted documents of similar lengths (so some forward passes carry padding)."""
    words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "seven", "wizards",
             "quietly", "hex"]
    rng = np.random.default_rng(1)

    def text(n):
        return " ".join(rng.choice(words, n))

    texts = ["", "the", text(1500), text(40), "x = 1", text(130), text(125), text(120), "", text(5), text(3), "the"]
    docs = [PileDocument(t, "Test", i + 1) for i, t in enumerate(texts)]
    return build_canonical(docs, tokenizer)


@pytest.fixture(scope="module")
def naive_real(model, real_corpus) -> np.ndarray:
    return naive_losses(model, real_corpus)


def test_corpus_has_the_edge_cases(real_corpus):
    n = real_corpus.num_tokens
    assert n[0] == 0 and n[1] == 1 and n[2] == 1024 and n[8] == 0 and n[11] == 1


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"batch_tokens": 1500, "logits_chunk": 97},  # many small forward passes, ragged chunks
        {"batch_tokens": 4096, "max_padding": 1.0},  # long documents padded next to short ones
    ],
)
def test_losses_equal_naive_per_document(model, real_corpus, naive_real, options):
    expected = naive_real
    got = token_losses(model, real_corpus, **options)
    assert got.dtype == np.float32 and got.shape == (real_corpus.num_predictable,)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_losses_of_first_documents_and_progress(model, real_corpus, naive_real):
    calls = []
    got = token_losses(model, real_corpus, num_documents=8, batch_tokens=1024, progress=calls.append)
    assert len(got) == real_corpus.starts[8]
    np.testing.assert_allclose(got, naive_real[: len(got)], atol=1e-4, rtol=0)
    assert calls == sorted(calls) and calls[-1] == len(got)


def test_positions_restart_per_document(model):
    """A document batched behind a longer one gets the same losses as alone (rotary positions 0…n−1)."""
    corpus = corpus_from_lengths([300, 250, 64])
    alone = token_losses(model, corpus.first(1), batch_tokens=1)
    together = token_losses(model, corpus, batch_tokens=10_000, max_padding=1.0)
    np.testing.assert_allclose(together[: len(alone)], alone, atol=1e-5, rtol=0)
    np.testing.assert_allclose(together, naive_losses(model, corpus), atol=1e-4, rtol=0)


def test_empty_and_tiny_corpora(model):
    assert token_losses(model, corpus_from_lengths([0, 1, 0])).shape == (0,)
    assert token_losses(model, corpus_from_lengths([])).shape == (0,)
    two = corpus_from_lengths([2])
    np.testing.assert_allclose(token_losses(model, two), naive_losses(model, two), atol=1e-4)


def test_bad_arguments(model):
    corpus = corpus_from_lengths([5, 6])
    with pytest.raises(ValueError, match="asked for 3 documents"):
        token_losses(model, corpus, num_documents=3)
    with pytest.raises(ValueError, match="batch_tokens"):
        token_losses(model, corpus, batch_tokens=0)


def test_plan_batches_sorted_bounded_and_complete():
    lengths = np.array([0, 1, 1024, 5, 700, 1024, 2, 650, 30, 31])
    batches = plan_batches(lengths, batch_tokens=2048, max_padding=0.125)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == [2, 3, 4, 5, 6, 7, 8, 9]  # every document with ≥ 2 tokens, once
    assert list(lengths[flat]) == sorted(lengths[flat], reverse=True)
    for b in batches:
        assert len(b) * lengths[b].max() <= 2048 or len(b) == 1
        assert lengths[b].min() >= (1 - 0.125) * lengths[b].max()


def test_identical_unembedding_rows_are_merged_exactly():
    """Like the demo suite: the rows of tokens never seen in training are equal (merged, + log count)."""
    from quanta_core.models.losses import _Unembedding

    corpus = corpus_from_lengths([0, 200, 1, 60, 2], vocab=300, seed=4)  # ids < 300: most rows unused
    model = make_tiny_gptneox(vocab_size=VOCAB, hidden=32, layers=2, heads=4, seed=3)
    used = np.unique(corpus.ids.astype(np.int64))
    unused = np.setdiff1d(np.arange(VOCAB), used)
    with torch.no_grad():
        weight = model.get_output_embeddings().weight
        weight[unused] = weight[unused[0]].clone()  # one shared row
        weight[used[:2]] = weight[used[2]].clone()  # and a few used tokens sharing another
    merged = _Unembedding(model.get_output_embeddings())
    assert merged.merged and len(merged.weight) == len(used) - 2 + 1
    got = token_losses(model, corpus, logits_chunk=70)
    np.testing.assert_allclose(got, naive_losses(model, corpus), atol=1e-4, rtol=0)
    assert not _Unembedding(make_tiny_gptneox(vocab_size=VOCAB).get_output_embeddings()).merged
