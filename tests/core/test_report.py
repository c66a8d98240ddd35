"""The HTML report's Python side: data layout, escaping, the Content-Security-Policy (no Dagster,
no browser: those are tests/assets/test_report_assets.py and tests/e2e/test_report_browser.py)."""

import base64
import hashlib
import json
import re

import numpy as np
import pytest

from quanta_core.report.html import json_for_script
from quanta_core.report.page import page_rows, render_report, report_data, report_page
from quanta_core.report.samples import context_windows
from quanta_core.report.token_text import token_bytes_table

from support.report_corpus import TEXTS, all_samples, build_corpus


@pytest.fixture(scope="module")
def table(tokenizer):
    return token_bytes_table(tokenizer)


@pytest.fixture(scope="module")
def corpus(tokenizer):
    return build_corpus(tokenizer)


# -- Python side --------------------------------------------------------------------------------


def test_token_bytes_agree_with_the_tokenizer(tokenizer, table):
    assert len(table) == tokenizer.get_vocab_size(with_added_tokens=True)
    checked = 0
    for i, raw in enumerate(table):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue  # part of a character: only a run of tokens decodes
        assert text == tokenizer.decode([i], skip_special_tokens=False), i
        checked += 1
    assert checked > 45_000
    for text in TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        assert b"".join(table[i] for i in ids).decode("utf-8") == text


def test_json_for_script_cannot_end_the_block():
    value = {"a": "</script><script>alert(1)</script>", "b": "<!-- x -->", "c": "a & b > c", "d": "\u2028\u2029"}
    text = json_for_script(value)
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == value


def test_context_windows_against_naive(corpus):
    rng = np.random.default_rng(0)
    lengths = np.array([5, 400, 0, 1024, 30])
    doc = rng.choice([0, 1, 3, 4], 200)
    pos = np.array([rng.integers(1, lengths[d]) for d in doc])
    for before, after in [(300, 0), (3, 2), (0, 0), (50, 1000)]:
        ranges, start, end = context_windows(doc, pos, lengths, before, after)
        # stand-in token ids: (document, position) pairs
        stored = np.concatenate([[(d, p) for p in range(a, b)] for d, a, b in ranges])
        for i in range(len(doc)):
            naive = [(doc[i], p) for p in range(max(0, pos[i] - before), min(lengths[doc[i]], pos[i] + after + 1))]
            assert [tuple(t) for t in stored[start[i]:end[i]]] == naive
        # every token is stored at most once
        assert len({tuple(t) for t in stored}) == len(stored)


def _decoded(blocks, table):
    """(vocab ids, window token ids) of the page's blocks."""
    data, page = blocks["data"], blocks["page"]
    vocab_ids = np.array(data["vocab"]["ids"])
    offsets = np.frombuffer(base64.b64decode(data["vocab"]["offsets"]), "<u4")
    blob = base64.b64decode(data["vocab"]["bytes"])
    assert [blob[offsets[j]:offsets[j + 1]] for j in range(len(vocab_ids))] == [table[i] for i in vocab_ids]
    return vocab_ids, vocab_ids[np.frombuffer(base64.b64decode(page["windows"]), f"<u{page['windowsBits'] // 8}")]


def _check_page_samples(page, windows, rows, corpus, before, after):
    """The page's sample columns hold ``rows`` (a table), in order, with the right windows."""
    for i, row in enumerate(rows.itertuples(index=False)):
        doc = corpus.document(row.document)
        lo = max(0, row.position - before)
        assert windows[page["start"][i]:page["end"][i]].tolist() == doc[lo:row.position + after + 1].tolist()
        assert windows[page["target"][i]] == row.token_id
        assert (page["doc"][i], page["pos"][i], page["index"][i]) == (row.document, row.position, row.index)
        assert page["loss"][i] == pytest.approx(row.loss, abs=1e-6)


def test_report_data_round_trip(corpus, table):
    samples = all_samples(corpus)
    blocks = report_data(samples, corpus, table, before=7, after=2)
    vocab_ids, windows = _decoded(blocks, table)
    data, page = blocks["data"], blocks["page"]
    ordered = samples.sort_values("cluster", kind="stable").reset_index(drop=True)
    _check_page_samples(page, windows, ordered, corpus, 7, 2)
    assert page["cap"] is None and page["numShown"] == len(samples) == data["numSamples"]
    for rank, c in enumerate(data["clusters"]):
        members = ordered[ordered.cluster == rank]
        assert c["size"] == len(members) == page["shown"][rank]
        assert c["mean"] == pytest.approx(members.loss.mean(), abs=1e-6)
        assert c["median"] == pytest.approx(members.loss.median(), abs=1e-6)
        counts = members.token_id.value_counts()
        assert {int(vocab_ids[j]): n for j, n in c["tokens"]} == counts.to_dict()
        assert [n for _, n in c["tokens"]] == sorted(counts.tolist(), reverse=True)


def test_capped_page_holds_a_seeded_subset_and_stats_of_all(corpus, table):
    samples = all_samples(corpus)
    ordered = samples.sort_values("cluster", kind="stable").reset_index(drop=True)
    full = report_data(samples, corpus, table, before=5)
    blocks = report_data(samples, corpus, table, before=5, max_per_cluster=3, table_file="t.parquet")
    assert blocks["data"]["clusters"] == full["data"]["clusters"]  # sizes, losses, tokens: every sample
    assert blocks["data"]["table"] == "t.parquet" and blocks["page"]["cap"] == 3
    rows = page_rows(ordered.cluster.to_numpy(), 3)
    held = ordered.iloc[rows]
    assert blocks["page"]["shown"] == np.minimum(ordered.cluster.value_counts().sort_index(), 3).tolist()
    assert held.cluster.value_counts().sort_index().tolist() == blocks["page"]["shown"]
    _check_page_samples(blocks["page"], _decoded(blocks, table)[1], held, corpus, 5, 0)
    # nested: the samples held at cap k are among those at k + 1; seeded: the same rows each time
    for k in range(1, 8):
        assert set(page_rows(ordered.cluster.to_numpy(), k)) <= set(page_rows(ordered.cluster.to_numpy(), k + 1))
    assert page_rows(ordered.cluster.to_numpy(), 3).tolist() == rows.tolist()
    with pytest.raises(ValueError, match="≥ 1"):
        page_rows(ordered.cluster.to_numpy(), 0)


def test_size_budget_picks_the_largest_cap_that_fits(corpus, table):
    samples = all_samples(corpus)
    whole = report_page(samples, corpus, table)
    assert whole.cap is None and whole.in_page.all() and whole.size_bytes == len(whole.html.encode())
    budget = whole.size_bytes - 2_000
    capped = report_page(samples, corpus, table, max_bytes=budget, table_file="samples.parquet")
    assert capped.cap is not None and capped.size_bytes <= budget
    bigger = report_page(samples, corpus, table, max_bytes=None, max_per_cluster=capped.cap + 1,
                         table_file="samples.parquet")
    assert bigger.size_bytes > budget
    # in_page is per row of the table given, in its order
    ordered = samples.sort_values("cluster", kind="stable")
    rows = page_rows(ordered.cluster.to_numpy(), capped.cap)
    assert sorted(samples.index[capped.in_page]) == sorted(ordered.index[rows])
    assert capped.in_page.sum() == sum(min(n, capped.cap) for n in samples.cluster.value_counts())
    assert "alert" not in capped.html and capped.html.count("<script") == 3
    tiny = report_page(samples, corpus, table, max_bytes=10)  # not even one per cluster fits: one each
    assert tiny.cap == 1 and tiny.in_page.sum() == samples.cluster.nunique()
    with pytest.raises(ValueError, match="size budget must be > 0"):
        report_page(samples, corpus, table, max_bytes=0)


def test_bad_input_is_refused(corpus, table):
    samples = all_samples(corpus)
    wrong = samples.copy()
    wrong.loc[3, "token_id"] += 1
    with pytest.raises(ValueError, match="sample 3: token_id"):
        report_data(wrong, corpus, table)
    with pytest.raises(ValueError, match="lacks columns"):
        report_data(samples.drop(columns="loss"), corpus, table)
    gap = samples.copy()
    gap.loc[gap.cluster == 2, "cluster"] = 9
    with pytest.raises(ValueError, match="every rank used"):
        report_data(gap, corpus, table)
    outside = samples.copy()
    outside.loc[0, "position"] = 10_000
    with pytest.raises(ValueError, match="not a predictable token"):
        report_data(outside, corpus, table)
    with pytest.raises(ValueError, match="plain <svg>"):
        render_report(samples, corpus, table, cluster_extras={0: {"sparkline_svg": "<img src=x onerror=alert(1)>"}})


def test_html_is_escaped_self_contained_and_csp_pinned(corpus, table):
    html = render_report(all_samples(corpus), corpus, table, title="<i>title</i>",
                         details={"model": "<b>m</b>", "step": "step1"})
    assert "<i>title</i>" not in html and "&lt;i&gt;title&lt;/i&gt;" in html
    assert "<b>m</b>" not in html and "&lt;b&gt;m&lt;/b&gt;" in html
    assert html.count("<script") == 3 and html.count("</script>") == 3  # two data blocks + our code
    assert "alert" not in html  # corpus text is only in base64 inside the data block
    # no network: no URLs except the SVG namespace, and a CSP that forbids every fetch
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg"}
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp
    script = re.search(r"<script>(.*)</script>", html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
