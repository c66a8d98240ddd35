"""The complete samples table next to the report (:mod:`quanta_core.report.table`), against the
tokenizer's own decoding of each context window."""

import numpy as np
import pytest

from quanta_core.report.page import page_rows
from quanta_core.report.table import TABLE_COLUMNS, samples_table, window_texts
from quanta_core.report.token_text import token_bytes_table

from support.report_corpus import DANGEROUS, all_samples, build_corpus


@pytest.fixture(scope="module")
def table(tokenizer):
    return token_bytes_table(tokenizer)


@pytest.fixture(scope="module")
def corpus(tokenizer):
    return build_corpus(tokenizer)


def test_every_sample_with_its_text(tokenizer, corpus, table):
    samples = all_samples(corpus)
    in_page = np.zeros(len(samples), dtype=bool)
    in_page[::3] = True
    out = samples_table(samples, corpus, table, before=6, after=2, in_page=in_page)
    assert list(out.columns) == list(TABLE_COLUMNS) and len(out) == len(samples)
    assert out.cluster.is_monotonic_increasing
    ordered = samples.assign(in_page=in_page).sort_values("cluster", kind="stable").reset_index(drop=True)
    for column in ["cluster", "index", "document", "position", "token_id", "loss", "in_page"]:
        np.testing.assert_array_equal(out[column].to_numpy(), ordered[column].to_numpy())
    whole = 0
    for row in out.itertuples(index=False):
        doc = corpus.document(row.document)
        lo, hi = max(0, row.position - 6), min(len(doc), row.position + 3)
        raw = b"".join(table[i] for i in doc[lo:hi])
        text = row.text_before + row.text_target + row.text_after
        try:  # a window that cuts no character decodes as the tokenizer does
            expected = raw.decode("utf-8")
        except UnicodeDecodeError:
            assert "\\x" in text  # cut bytes are shown as escapes
            continue
        assert text == expected == tokenizer.decode(doc[lo:hi].tolist(), skip_special_tokens=False)
        whole += 1
    assert whole > 0.8 * len(out)
    # the hostile document is kept as text, unchanged (Parquet; no markup involved)
    last = out[(out.document == 1) & (out.position == corpus.num_tokens[1] - 1)].iloc[0]
    full = samples_table(samples, corpus, table, before=10_000)
    assert "".join(full.loc[last.name, ["text_before", "text_target", "text_after"]]) == DANGEROUS


def test_character_split_over_tokens_and_cut_by_the_window():
    emoji = "😀".encode()  # 4 bytes: two stand-in tokens of 2 bytes each
    parts = [b"a ", emoji[:2], emoji[2:], b"!"]
    assert window_texts([0, 1, 2, 3], 2, parts) == ("a ", "😀", "!")  # whole, in the part of its last byte
    assert window_texts([0, 1], 1, parts) == ("a ", "\\xf0\\x9f", "")  # cut at the window's end
    assert window_texts([2, 3], 0, parts) == ("", "\\x98\\x80", "!")  # cut at its start


def test_in_page_follows_the_page(corpus, table):
    samples = all_samples(corpus)
    ordered = samples.sort_values("cluster", kind="stable")
    in_page = np.zeros(len(samples), dtype=bool)
    in_page[ordered.index[page_rows(ordered.cluster.to_numpy(), 2)]] = True
    out = samples_table(samples, corpus, table, in_page=in_page)
    assert (out.groupby("cluster").in_page.sum() == np.minimum(out.groupby("cluster").size(), 2)).all()
    with pytest.raises(ValueError, match="in_page has shape"):
        samples_table(samples, corpus, table, in_page=in_page[:-1])
