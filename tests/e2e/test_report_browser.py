"""The HTML report's behaviour in a real headless Chromium.

Browser tests need Debian's ``/usr/bin/chromium`` (``scripts/install-system-deps.sh``) and FAIL
when it is missing. Screenshots go to ``test-artifacts/``.
"""

from pathlib import Path

import pandas as pd
import pytest

from quanta_core.report.page import render_report, report_page
from quanta_core.report.token_text import token_bytes_table

from support.report_corpus import DANGEROUS, all_samples, build_corpus

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def table(tokenizer):
    return token_bytes_table(tokenizer)


@pytest.fixture(scope="module")
def corpus(tokenizer):
    return build_corpus(tokenizer)


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
        self.wait_drawn()

    def wait_drawn(self):
        """Until the cluster's first batch of samples is drawn (the first few come at once)."""
        self.page.wait_for_selector("#samples[aria-busy=false] .sample")

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
    # the dropdown (filled after the first paint) lists every cluster, the current one chosen
    assert p.page.locator("#cluster-select option").count() == samples.cluster.nunique()
    assert p.page.locator("#cluster-select").input_value() == "0"
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
    p.wait_drawn()
    # shown samples = the cluster's size (≤ 50 at a time), stats match the table
    members = samples[samples.cluster == 5]
    assert p.page.locator(".sample").count() == min(50, len(members))
    assert f"size {len(members)}" in p.page.locator("#cluster-stats").text_content()
    # quick moves: each cluster's rest of the first batch is dropped when the next one comes
    p.page.evaluate("['#cluster-0', '#cluster-1', '#cluster-0'].forEach(h => { location.hash = h; "
                    "window.dispatchEvent(new HashChangeEvent('hashchange')); })")
    p.wait_drawn()
    assert p.title() == "Cluster 0"
    heads = p.page.eval_on_selector_all(".sample .sample-head", "hs => hs.map(h => h.textContent.split(' · '))")
    members = samples[samples.cluster == 0]
    expected = [[f"document {d}", f"position {q}"] for d, q in zip(members.document, members.position)]
    assert [h[:2] for h in heads] == expected[:50]
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
    assert p.page.evaluate("document.scripts.length") == 3  # two data blocks and our code
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


@pytest.fixture(scope="module")
def capped_file(corpus, table, tmp_path_factory):
    """A page that holds 2 samples per cluster (the rest: "samples.parquet"), and the samples it
    holds (a boolean per row of the samples table)."""
    samples = all_samples(corpus)
    page = report_page(samples, corpus, table, max_bytes=None, max_per_cluster=2, table_file="samples.parquet")
    path = tmp_path_factory.mktemp("capped") / "report.html"
    path.write_text(page.html, encoding="utf-8")
    return path, samples, page.in_page


@pytest.mark.browser
def test_capped_page_says_so_and_searches_every_sample(browser, capped_file, table):
    path, samples, in_page = capped_file
    p = Page(browser, path)
    assert "at most 2 samples per cluster" in p.page.locator("#page-note").text_content()
    assert "samples.parquet" in p.page.locator("#about-page").text_content()
    for rank in range(samples.cluster.max() + 1):
        p.page.evaluate(f"location.hash = '#cluster-{rank}'")
        p.page.wait_for_function(f"document.getElementById('cluster-title').textContent === 'Cluster {rank}'")
        p.wait_drawn()
        size = int((samples.cluster == rank).sum())
        held = samples[in_page & (samples.cluster == rank)]
        # the samples drawn are those of the page, all of them, and no "show more"
        heads = p.page.eval_on_selector_all(".sample .sample-head", "hs => hs.map(h => h.textContent)")
        assert sorted(h.split(" · ")[:2] for h in heads) == sorted(
            [f"document {d}", f"position {q}"] for d, q in zip(held.document, held.position))
        assert p.page.locator("#more").is_hidden()
        note = p.page.locator("#cluster-capped")
        assert note.is_visible() == (size > 2)
        if size > 2:
            assert f"2 of {size} samples shown" in note.text_content() and "samples.parquet" in note.text_content()
        assert f"size {size}" in p.page.locator("#cluster-stats").text_content()  # stats of every sample
    # search by a predicted token that only samples not in the page have: its cluster is found
    held_tokens = set(samples.token_id[in_page])
    only_out = [t for t in samples.token_id[~in_page].unique() if t not in held_tokens
                and table[t].decode("utf-8", "ignore").strip().isalpha()]
    token = max(only_out, key=lambda t: len(table[t]))
    text = table[token].decode("utf-8").strip()
    p.page.fill("#search", text)
    listed = p.page.eval_on_selector_all("#cluster-select option", "os => os.map(o => Number(o.value))")
    hit = [text.lower() in table[i].decode("utf-8", "ignore").lower() for i in samples.token_id]
    assert set(samples.cluster[samples.token_id == token]) <= set(listed) == set(samples.cluster[hit])
    p.check_clean()


@pytest.mark.browser
def test_capped_page_keeps_markup_as_text(browser, corpus, table, tmp_path):
    """The hostile document through the capped data path: one sample per cluster, each the last
    token of document 1 (the whole document as context) or of the others."""
    samples = all_samples(corpus)
    ends = samples.groupby("document").position.transform("max") == samples.position
    picked = samples[ends].assign(cluster=lambda d: range(len(d)))
    extra = samples[~ends].head(30).assign(cluster=0)  # cluster 0 gets more than the page holds
    mixed = pd.concat([picked, extra]).reset_index(drop=True)
    page = report_page(mixed, corpus, table, before=10_000, max_bytes=None, max_per_cluster=1)
    assert page.cap == 1 and page.in_page.sum() == len(picked)
    path = tmp_path / "report.html"
    path.write_text(page.html, encoding="utf-8")
    rank = int(picked.cluster[picked.document == 1].iloc[0])
    p = Page(browser, path, f"#cluster-{rank}")
    assert p.page.locator(".sample .ctx").text_content() == DANGEROUS
    assert p.page.evaluate("document.querySelectorAll('main img, main script, main iframe').length") == 0
    p.check_clean()


@pytest.mark.browser
def test_learned_at_extras_and_screenshots(browser, corpus, table, tmp_path):
    samples = all_samples(corpus)
    k = samples.cluster.max() + 1
    steps = [None, 512, 1000, 4, 143000, 2][:k]
    extras = {
        r: {"learned_at": None if s is None else f"step{s}", "learned_at_step": s,
            "learned_at_rule": "the first checkpoint from which its mean loss stays below 1 nats",
            "sparkline_svg": f'<svg class="spark" width="80" height="18"><polyline points="0,16 40,{r + 2} 80,2" '
                             'fill="none" stroke="currentColor"/></svg>'}
        for r, s in enumerate(steps)
    }
    path = tmp_path / "report.html"
    path.write_text(render_report(samples, corpus, table, cluster_extras=extras,
                                  extra_sections_html=['<h2 id="model-level">When clusters are learned</h2>']),
                    encoding="utf-8")
    p = Page(browser, path, "#cluster-1")
    card = p.page.locator("#cluster-extra").text_content()
    assert "cluster learned at step512" in card and "Cluster learned at: the first checkpoint" in card
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


@pytest.mark.browser
def test_stability_card_sort_and_filter(browser, corpus, table, tmp_path):
    """Each cluster's stability band and coherence z on its card; sorting by stability and showing
    only one band, in a real browser (issue 23)."""
    from quanta_core.clustering.stability import stability_band

    samples = all_samples(corpus)
    k = samples.cluster.max() + 1
    values = [0.9, 0.3, 0.7, 0.8, 0.5, 0.95][:k]
    bands = list(stability_band(values))
    extras = {r: {"stability": v, "band": b, "coherence_z": 2.5 + r} for r, (v, b) in enumerate(zip(values, bands))}
    path = tmp_path / "report.html"
    path.write_text(render_report(samples, corpus, table, cluster_extras=extras), encoding="utf-8")
    p = Page(browser, path, "#cluster-1")
    card = p.page.locator("#cluster-extra").text_content()
    assert card == f"stability {values[1]:.3f} ({bands[1]})coherence z 3.5"  # no dynamics: no learned-at line
    p.page.select_option("#sort", "stability")
    order = p.page.eval_on_selector_all("#cluster-select option", "os => os.map(o => Number(o.value))")
    assert order == sorted(range(k), key=lambda r: (-values[r], r))
    p.page.select_option("#band", "stable")
    shown = p.page.eval_on_selector_all("#cluster-select option", "os => os.map(o => Number(o.value))")
    assert shown == [r for r in order if bands[r] in ("stable", "highly stable")]
    assert p.page.locator("#status").text_content() == f"{len(shown)} of {k} clusters match"
    p.page.select_option("#band", "unstable")
    shown = p.page.eval_on_selector_all("#cluster-select option", "os => os.map(o => Number(o.value))")
    assert shown == [r for r in order if bands[r] == "unstable"] and shown
    p.check_clean()
