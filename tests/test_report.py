"""The HTML report: data layout and escaping (Python), and behaviour in a real headless Chromium.

Browser tests need Debian's ``/usr/bin/chromium`` (``scripts/install-system-deps.sh``) and FAIL
when it is missing. Screenshots go to ``test-artifacts/``.
"""

import base64
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quanta_core.canonical import build_canonical
from quanta_core.clustering import rank_clusters
from quanta_core.corpus import PileDocument
from quanta_core.report import context_windows, json_for_script, render_report, report_data
from quanta_core.token_bytes import token_bytes_table

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parents[1] / "test-artifacts"

DANGEROUS = ("Hello “world” — 日本語 😀 naïve. <script>alert(1)</script> then </script> and "
             "<!-- comment --> & <img src=x onerror=alert(2)> done.")
TEXTS = [
    "def f(x):\n\treturn x + 1  # two spaces\n\n\nprint(f(2))\n",
    DANGEROUS,
    "The quick brown fox jumps over the lazy dog. " * 12,
    "bell \x07 nul \x00 line\u2028sep, <!-- not a comment --> ]]> \\u003c/script>",
    "",  # empty documents are allowed
    "x",  # no predictable token
]


@pytest.fixture(scope="module")
def table(tokenizer):
    return token_bytes_table(tokenizer)


@pytest.fixture(scope="module")
def corpus(tokenizer):
    return build_canonical([PileDocument(t, "Test", i + 1) for i, t in enumerate(TEXTS)], tokenizer)


def all_samples(corpus, num_clusters=6, seed=0):
    """Every predictable token of the corpus as a sample, in random clusters (ranked)."""
    doc = np.repeat(np.arange(corpus.num_documents), np.maximum(corpus.num_tokens - 1, 0))
    pos = np.concatenate([np.arange(1, n) for n in corpus.num_tokens if n > 1])
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "cluster": rank_clusters(rng.integers(0, num_clusters, len(doc))),
        "index": corpus.starts[doc] + pos - 1,
        "document": doc,
        "position": pos,
        "token_id": corpus.ids[corpus.offsets[doc] + pos].astype(np.int64),
        "loss": rng.random(len(doc)) * 0.1,
    })


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


def test_report_data_round_trip(corpus, table):
    samples = all_samples(corpus)
    data = report_data(samples, corpus, table, before=7, after=2)
    vocab_ids = np.array(data["vocab"]["ids"])
    offsets = np.frombuffer(base64.b64decode(data["vocab"]["offsets"]), "<u4")
    blob = base64.b64decode(data["vocab"]["bytes"])
    assert [blob[offsets[j]:offsets[j + 1]] for j in range(len(vocab_ids))] == [table[i] for i in vocab_ids]
    windows = vocab_ids[np.frombuffer(base64.b64decode(data["windows"]), "<u2")]
    s = data["samples"]
    ordered = samples.sort_values("cluster", kind="stable").reset_index(drop=True)
    for i, row in enumerate(ordered.itertuples(index=False)):
        doc = corpus.document(row.document)
        lo = max(0, row.position - 7)
        assert windows[s["start"][i]:s["end"][i]].tolist() == doc[lo:row.position + 3].tolist()
        assert windows[s["target"][i]] == row.token_id
        assert (s["doc"][i], s["pos"][i], s["index"][i]) == (row.document, row.position, row.index)
    for rank, c in enumerate(data["clusters"]):
        members = ordered[ordered.cluster == rank]
        assert c["size"] == len(members) and c["first"] == members.index[0]
        assert c["mean"] == pytest.approx(members.loss.mean(), abs=1e-6)
        assert c["median"] == pytest.approx(members.loss.median(), abs=1e-6)
        counts = members.token_id.value_counts()
        assert {int(vocab_ids[j]): n for j, n in c["tokens"]} == counts.to_dict()
        assert [n for _, n in c["tokens"]] == sorted(counts.tolist(), reverse=True)


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
    assert html.count("<script") == 2 and html.count("</script>") == 2  # data block + our code
    assert "alert" not in html  # corpus text is only in base64 inside the data block
    # no network: no URLs except the SVG namespace, and a CSP that forbids every fetch
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg"}
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp
    script = re.search(r"<script>(.*)</script>", html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp


# -- the Dagster assets ----------------------------------------------------------------------------


def _materialize_clusters_and_report(cache_dir, corpus, indices, matrix, losses, num_clusters):
    import dagster as dg

    from quanta_assets.assets import clusters as stage
    from quanta_assets.io_manager import QuantaIOManagerFactory
    from quanta_assets.partitions import checkpoint_key, checkpoint_partitions
    from quanta_assets.resources import PileSource, QuantaCache

    @dg.asset(name="pile_canonical")
    def pile_canonical() -> dict:
        return corpus.to_arrays()

    @dg.asset(name="pile_losses", partitions_def=checkpoint_partitions)
    def pile_losses() -> np.ndarray:
        return losses

    @dg.asset(name="quanta_similarity", partitions_def=checkpoint_partitions)
    def quanta_similarity() -> dict:
        return {"indices": indices, "matrix": matrix}

    dg.materialize([pile_canonical], resources={"io_manager": QuantaIOManagerFactory(base_dir=str(cache_dir))})
    return dg.materialize(
        [pile_canonical, pile_losses, quanta_similarity, stage.quanta_clusters, stage.quanta_report],
        selection=["pile_losses", "quanta_similarity", "quanta_clusters", "quanta_report"],
        partition_key=checkpoint_key("quanta-demo", "step4"),
        resources={
            "io_manager": QuantaIOManagerFactory(base_dir=str(cache_dir)),
            "cache": QuantaCache(root=str(cache_dir)),
            "pile": PileSource(),
            "cluster_settings": stage.ClusterSettings(num_clusters=num_clusters),
            "report_settings": stage.ReportSettings(before=20),
        },
        raise_on_error=False,
    )


def test_assets_materialize_through_dagster(cache_dir, corpus):
    from quanta_assets.assets.clusters import ClusterSettings
    from quanta_core.clustering import spectral_clustering

    predictable = corpus.num_predictable
    indices = np.arange(0, predictable, 2, dtype=np.int64)
    targets = corpus.target_ids()[indices]
    rng = np.random.default_rng(0)
    x = np.eye(5)[targets % 5] + 0.3 * rng.normal(size=(len(indices), 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    matrix = (x @ x.T).astype(np.float32)
    losses = rng.random(predictable).astype(np.float32)

    result = _materialize_clusters_and_report(cache_dir, corpus, indices, matrix, losses, num_clusters=5)
    assert result.success
    folder = cache_dir / "quanta-demo" / "step4"
    labels = np.load(folder / "quanta_clusters" / "labels.npy", allow_pickle=False)
    np.testing.assert_array_equal(labels, spectral_clustering(matrix, 5))
    tokens = pd.read_parquet(folder / "quanta_clusters" / "tokens.parquet")
    assert list(tokens.columns) == ["cluster", "index", "document", "position", "token_id", "loss"]
    np.testing.assert_array_equal(tokens.cluster, labels)
    np.testing.assert_array_equal(tokens["index"], indices)
    np.testing.assert_array_equal(tokens.token_id, targets)
    np.testing.assert_array_equal(corpus.starts[tokens.document] + tokens.position - 1, indices)
    np.testing.assert_array_equal(tokens.loss, losses[indices])
    meta = result.asset_materializations_for_node("quanta_clusters")[0].metadata
    assert meta["num_clusters"].value == 5 and meta["n_init"].value == 30 and meta["random_state"].value == 0
    assert meta["clustering_seconds"].value >= 0
    html_path = folder / "quanta_report.html"
    meta = result.asset_materializations_for_node("quanta_report")[0].metadata
    assert meta["file_size_bytes"].value == html_path.stat().st_size
    assert meta["num_clusters"].value == 5 and meta["before"].value == 20 and meta["after"].value == 0
    assert "quanta-demo · step4" in html_path.read_text(encoding="utf-8")
    assert ClusterSettings().clusters_for("quanta-demo") == 30 and ClusterSettings().clusters_for("pythia-70m") == 400


def test_cluster_asset_refuses_more_clusters_than_tokens(cache_dir, corpus):
    indices = np.arange(10, dtype=np.int64)
    result = _materialize_clusters_and_report(cache_dir, corpus, indices, np.eye(10, dtype=np.float32),
                                              np.zeros(corpus.num_predictable, np.float32), num_clusters=11)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "num_clusters = 11 is more than the 10 samples" in str(failure.event_specific_data.error)
    assert not (cache_dir / "quanta-demo" / "step4" / "quanta_clusters").exists()


# -- browser -------------------------------------------------------------------------------------

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield b
        b.close()


class Page:
    """A page on a report file that records console errors, page errors, dialogs and requests."""

    def __init__(self, browser, path: Path, hash_: str = "", color_scheme="light"):
        self.page = browser.new_page(viewport={"width": 1200, "height": 900}, color_scheme=color_scheme)
        self.errors, self.dialogs, self.requests = [], [], []
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.url = path.as_uri()
        self.page.goto(self.url + hash_)
        self.page.wait_for_selector(".sample")

    def title(self) -> str:
        return self.page.locator("#cluster-title").text_content()

    def sample(self, doc: int, pos: int):
        """The rendered sample box of (document, position), as an element handle (or None)."""
        return self.page.evaluate_handle(
            """([doc, pos]) => Array.from(document.querySelectorAll('.sample')).find(
                 s => s.querySelector('.sample-head').textContent.startsWith(`document ${doc} · position ${pos} ·`))""",
            [doc, pos],
        ).as_element()

    def check_clean(self):
        assert self.errors == [] and self.dialogs == []
        assert all(u.split("#")[0] == self.url for u in self.requests), self.requests


@pytest.fixture(scope="module")
def report_file(corpus, table, tmp_path_factory):
    samples = all_samples(corpus)
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render_report(samples, corpus, table, before=300, details={"model": "test"}), encoding="utf-8")
    return path, samples


def cluster_of(samples, doc, pos) -> int:
    row = samples[(samples.document == doc) & (samples.position == pos)]
    return int(row.cluster.iloc[0])


@pytest.mark.browser
def test_loads_clean_and_navigates(browser, report_file):
    path, samples = report_file
    p = Page(browser, path)
    assert p.title() == "Cluster 0"
    p.page.keyboard.press("ArrowRight")
    assert p.title() == "Cluster 1"
    assert p.page.evaluate("location.hash") == "#cluster-1"
    p.page.keyboard.press("ArrowRight")
    p.page.keyboard.press("ArrowLeft")
    assert p.title() == "Cluster 1"
    p.page.select_option("#cluster-select", "4")
    assert p.title() == "Cluster 4"
    # keys are ignored while typing in the search box or using a select
    p.page.focus("#search")
    p.page.keyboard.press("ArrowRight")
    assert p.title() == "Cluster 4"
    p.page.focus("#sort")
    p.page.keyboard.press("ArrowLeft")
    assert p.title() == "Cluster 4"
    p.page.click("#next")
    assert p.title() == "Cluster 5"
    # shown samples = the cluster's size (≤ 50 at a time), stats match the table
    members = samples[samples.cluster == 5]
    assert p.page.locator(".sample").count() == min(50, len(members))
    assert f"size {len(members)}" in p.page.locator("#cluster-stats").text_content()
    p.check_clean()


@pytest.mark.browser
def test_hash_opens_cluster_and_sort_and_search(browser, report_file, table):
    path, samples = report_file
    p = Page(browser, path, "#cluster-3")
    assert p.title() == "Cluster 3"
    assert p.page.locator("#cluster-select").input_value() == "3"
    p.page.evaluate("location.hash = '#cluster-2'")
    p.page.wait_for_function("document.getElementById('cluster-title').textContent === 'Cluster 2'")
    # sort by mean loss: the dropdown lists clusters from the lowest mean loss
    p.page.select_option("#sort", "loss")
    order = p.page.eval_on_selector_all("#cluster-select option", "os => os.map(o => Number(o.value))")
    means = samples.groupby("cluster").loss.mean()
    assert order == sorted(range(len(means)), key=lambda r: (means[r], r))
    # search by predicted token and by number
    for query in ["Naïve", " the", "jumps"]:
        p.page.fill("#search", query)
        listed = p.page.eval_on_selector_all("#cluster-select option", "os => os.map(o => Number(o.value))")
        hit = [query.lower() in table[i].decode("utf-8", "ignore").lower() for i in samples.token_id]
        assert set(listed) == set(samples[hit].cluster), query
    assert len(set(samples[[b"na\xc3\xafve" in table[i] for i in samples.token_id]].cluster)) == 1
    p.page.fill("#search", "4")
    listed = p.page.eval_on_selector_all("#cluster-select option", "os => os.map(o => Number(o.value))")
    assert 4 in listed
    p.page.press("#search", "Enter")
    assert p.title() == f"Cluster {listed[0]}"
    p.check_clean()


@pytest.mark.browser
def test_script_in_corpus_is_text_and_multibyte_is_whole(browser, report_file):
    path, samples = report_file
    # position 21 is the '>' closing "</script>"; 10 completes 😀 (split over 2 tokens); 8 completes 語
    for pos, expect_end, expect_target in [(21, "<script>alert(1)</script>", ">"), (10, "日本語 😀", "😀"),
                                           (8, "— 日本語", "語")]:
        rank = cluster_of(samples, 1, pos)
        p = Page(browser, path, f"#cluster-{rank}")
        box = p.sample(1, pos)
        assert box is not None, f"sample (1, {pos}) not rendered in cluster {rank}"
        ctx = box.query_selector(".ctx")
        text = ctx.text_content()
        assert text.endswith(expect_end) and "\ufffd" not in text and "⟨" not in text
        assert box.query_selector(".target").text_content() == expect_target
        p.check_clean()
    # the whole document as context: tags are text, nothing ran, no element was created from data
    last = int(samples[samples.document == 1].position.max())
    p = Page(browser, path, f"#cluster-{cluster_of(samples, 1, last)}")
    assert p.sample(1, last).query_selector(".ctx").text_content() == DANGEROUS  # ends with the target "."
    assert p.page.evaluate("document.scripts.length") == 2
    assert p.page.evaluate("document.querySelectorAll('main img, main script, main iframe').length") == 0
    p.check_clean()


@pytest.mark.browser
def test_cut_character_at_the_target_shows_bytes(browser, report_file):
    path, samples = report_file
    # position 9 is " \xf0\x9f\x98": the emoji's first bytes, cut by the window's end (after = 0)
    p = Page(browser, path, f"#cluster-{cluster_of(samples, 1, 9)}")
    target = p.sample(1, 9).query_selector(".target").text_content()
    assert target == "·⟨f0 9f 98⟩"
    p.check_clean()


@pytest.mark.browser
def test_whitespace_visible(browser, report_file):
    path, samples = report_file
    # document 0 "def f(x):\n\treturn …": the target 'print' follows three newlines
    ids = samples[samples.document == 0]
    pos = int(ids.position.max())
    p = Page(browser, path, f"#cluster-{cluster_of(samples, 0, pos)}")
    text = p.sample(0, pos).query_selector(".ctx").text_content()
    assert "↵\n→\treturn x + 1  # two spaces↵\n↵\n↵\n" in text
    p.page.check("#show-spaces")
    text = p.sample(0, pos).query_selector(".ctx").text_content()
    assert "return·x·+·1··#·two·spaces" in text
    p.check_clean()
    # control characters and line separators are shown as escapes, markup as text
    last = int(samples[samples.document == 3].position.max())
    p = Page(browser, path, f"#cluster-{cluster_of(samples, 3, last)}")
    text = p.sample(3, last).query_selector(".ctx").text_content()
    assert "bell \\u0007 nul \\u0000 line\\u2028sep, <!-- not a comment --> ]]> \\u003c/script" in text
    p.check_clean()


@pytest.mark.browser
def test_learned_at_extras_and_screenshots(browser, corpus, table, tmp_path):
    samples = all_samples(corpus)
    k = samples.cluster.max() + 1
    steps = [None, 512, 1000, 4, 143000, 2][:k]
    extras = {
        r: {"learned_at": None if s is None else f"step{s}", "learned_at_step": s,
            "sparkline_svg": f'<svg class="spark" width="80" height="18"><polyline points="0,16 40,{r + 2} 80,2" '
                             'fill="none" stroke="currentColor"/></svg>'}
        for r, s in enumerate(steps)
    }
    path = tmp_path / "report.html"
    path.write_text(render_report(samples, corpus, table, cluster_extras=extras,
                                  extra_sections_html=['<h2 id="model-level">When clusters are learned</h2>']),
                    encoding="utf-8")
    p = Page(browser, path, "#cluster-1")
    assert "learned at step512" in p.page.locator("#cluster-extra").text_content()
    assert p.page.locator("#cluster-extra svg.spark").count() == 1
    assert p.page.locator("#model-level").count() == 1
    p.page.select_option("#sort", "learned")
    order = p.page.eval_on_selector_all("#cluster-select option", "os => os.map(o => Number(o.value))")
    assert order == sorted(range(k), key=lambda r: (steps[r] is None, steps[r] or 0, r))
    p.check_clean()
    ARTIFACTS.mkdir(exist_ok=True)
    p.page.screenshot(path=str(ARTIFACTS / "report-light.png"))
    dark = Page(browser, path, "#cluster-1", color_scheme="dark")
    assert dark.page.evaluate("getComputedStyle(document.body).backgroundColor") != \
        p.page.evaluate("getComputedStyle(document.body).backgroundColor")
    dark.page.screenshot(path=str(ARTIFACTS / "report-dark.png"))
    assert (ARTIFACTS / "report-light.png").stat().st_size > 10_000
