"""Benchmark: the HTML report at the paper's size — 400 clusters × 10,000 samples — and beyond
(``--samples 100000 --clusters 4000``), 300 tokens of context before each target, on a synthetic
corpus.

Corpus: one document per sample with Pile-like lengths (half truncated at 1,024 tokens, the rest
log-uniform in [16, 1024]), token ids drawn from Pythia's vocabulary with Zipf frequencies
(rank^−1, like natural text), one sample at a random predictable position of each document,
clusters with Zipf sizes (exponent 1.2). The original's report stored the text of every sample's
context in the page ("tens of megabytes").

Prints the page's size, how many samples it holds (all, or a capped number per cluster to stay
under ``--max-mb``), the render time, and with ``--table`` the time and size of the complete
samples table (Parquet). ``--browser`` opens the page in headless Chromium (``/usr/bin/chromium``
through Playwright) ``--loads`` times and prints medians: ``load_ms`` (the page's load event),
``first_cluster_ms`` (the first cluster's samples are in the page) and ``first_cluster_drawn_ms``
(the frame after, painted), all from navigation start as the page measures them; ``wall_s``
(Python: ``goto`` until a sample is on screen); then ``switch_ms`` per ← / → step, ``dropdown_ms``
(choose the last cluster), ``hash_ms`` (``#cluster-N``), ``search_ms`` (type a token, the dropdown
refilled).

    python benchmarks/bench_report.py                   # render, print size and seconds
    python benchmarks/bench_report.py --browser         # also time loading and switching in Chromium
    python benchmarks/bench_report.py --samples 100000 --clusters 4000 --table --browser
    python benchmarks/bench_report.py --out /tmp/big.html
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from quanta_core.corpus.canonical import CanonicalCorpus, predictable_lengths  # noqa: E402
from quanta_core.corpus.tokenizer import load_tokenizer  # noqa: E402
from quanta_core.report.page import MAX_PAGE_BYTES, report_page  # noqa: E402
from quanta_core.report.table import samples_table  # noqa: E402
from quanta_core.report.token_text import token_bytes_table  # noqa: E402

from synthetic_quanta import zipf_sizes  # noqa: E402

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]


def synthetic_report_inputs(num_samples: int, num_clusters: int, seed: int = 0, table=None):
    """(samples table, corpus, token bytes table) of the synthetic benchmark corpus."""
    rng = np.random.default_rng(seed)
    table = table if table is not None else token_bytes_table(load_tokenizer())
    lengths = np.where(rng.random(num_samples) < 0.5, 1024,
                       np.exp(rng.uniform(np.log(16), np.log(1024), num_samples))).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ranks = np.arange(1, len(table) + 1, dtype=np.float64)
    vocab = rng.permutation(len(table))
    ids = vocab[rng.choice(len(table), offsets[-1], p=(1 / ranks) / (1 / ranks).sum())].astype(np.uint16)
    documents = pd.DataFrame({"pile_set_name": "Synthetic", "num_tokens": lengths,
                              "num_predictable": predictable_lengths(lengths)})
    corpus = CanonicalCorpus(ids, offsets, documents)
    doc = np.arange(num_samples)
    pos = rng.integers(1, lengths)
    labels = rng.permutation(np.repeat(np.arange(num_clusters), zipf_sizes(num_samples, num_clusters)))
    samples = pd.DataFrame({
        "cluster": labels, "index": corpus.starts[doc] + pos - 1, "document": doc, "position": pos,
        "token_id": ids[offsets[doc] + pos].astype(np.int64), "loss": rng.random(num_samples) * 0.1,
    })
    return samples, corpus, table


TIMING = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const mark = (name) => performance.getEntriesByName(name)[0].startTime;
  return {load: nav.loadEventEnd, first: mark("quanta-first-cluster"), drawn: mark("quanta-first-cluster-drawn")};
}"""


def _timed(page, action, condition: str) -> float:
    """Milliseconds from ``action()`` until the page's ``condition`` (a JS expression) holds."""
    started = time.perf_counter()
    action()
    page.wait_for_function(condition)
    return 1000 * (time.perf_counter() - started)


def _load(browser, uri: str) -> tuple[object, dict]:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    started = time.perf_counter()
    page.goto(uri)
    page.wait_for_selector(".sample")
    wall = time.perf_counter() - started
    page.wait_for_function("performance.getEntriesByName('quanta-first-cluster-drawn').length > 0")
    t = page.evaluate(TIMING)
    return page, {"load_ms": t["load"], "first_cluster_ms": t["first"], "first_cluster_drawn_ms": t["drawn"],
                  "wall_s": wall, "errors": errors}


def browser_timings(path: Path, loads: int = 3, switches: int = 20) -> dict:
    from playwright.sync_api import sync_playwright

    title = "document.getElementById('cluster-title').textContent === 'Cluster {}'"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=LAUNCH_ARGS)
        runs = []
        for _ in range(loads):
            page, run = _load(browser, path.as_uri())
            runs.append(run)
            page.close()
        page, _ = _load(browser, path.as_uri())
        right = lambda: page.keyboard.press("ArrowRight")  # noqa: E731
        switch = [_timed(page, right, title.format(k)) for k in range(1, switches + 1)]
        last = page.evaluate("Array.from(document.getElementById('cluster-select').options).pop().value")
        dropdown = _timed(page, lambda: page.select_option("#cluster-select", last), title.format(last))
        hash_ms = _timed(page, lambda: page.evaluate("location.hash = '#cluster-7'"), title.format(7))
        search = _timed(page, lambda: page.fill("#search", "the"),
                        "/clusters match$/.test(document.getElementById('status').textContent)")
        matches = page.evaluate("document.getElementById('status').textContent")
        heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : null")
        browser.close()
    median = {k: round(statistics.median(r[k] for r in runs), 3 if k == "wall_s" else 0)
              for k in ("load_ms", "first_cluster_ms", "first_cluster_drawn_ms", "wall_s")}
    return {**median, "loads": loads, "switch_ms": round(statistics.median(switch)), "dropdown_ms": round(dropdown),
            "hash_ms": round(hash_ms), "search_ms": round(search), "search_status": matches,
            "js_heap_mb": None if heap is None else round(heap / 1e6, 1),
            "page_errors": [e for r in runs for e in r["errors"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--clusters", type=int, default=400)
    parser.add_argument("--before", type=int, default=300)
    parser.add_argument("--max-mb", type=float, default=MAX_PAGE_BYTES / 1e6, help="size budget of the page (MB)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", action="store_true", help="also build and write the complete samples table")
    parser.add_argument("--browser", action="store_true", help="time loading and switching in headless Chromium")
    parser.add_argument("--loads", type=int, default=3, help="page loads timed in the browser (median)")
    args = parser.parse_args()

    samples, corpus, table = synthetic_report_inputs(args.samples, args.clusters)
    started = time.perf_counter()
    page = report_page(samples, corpus, table, before=args.before, title="Synthetic benchmark report",
                       max_bytes=int(args.max_mb * 1e6), table_file="samples.parquet")
    seconds = time.perf_counter() - started
    naive_tokens = int(np.minimum(samples.position, args.before).sum() + len(samples))
    held = "every sample" if page.cap is None else f"{page.in_page.sum():,} samples, ≤ {page.cap} per cluster"
    print(f"{args.clusters:,} clusters × {args.samples:,} samples, before={args.before}: rendered in {seconds:.1f} s, "
          f"{page.size_bytes / 1e6:.1f} MB (budget {args.max_mb:g} MB), page holds {held} "
          f"({naive_tokens:,} context tokens in all)", flush=True)
    out = args.out or Path(tempfile.mkdtemp()) / "bench_report.html"
    out.write_text(page.html, encoding="utf-8")
    print(f"written to {out}")
    if args.table:
        started = time.perf_counter()
        complete = samples_table(samples, corpus, table, before=args.before, in_page=page.in_page)
        built = time.perf_counter() - started
        parquet = out.with_name("samples.parquet")
        complete.to_parquet(parquet, index=False)
        print(f"complete table: {len(complete):,} rows built in {built:.1f} s, written in "
              f"{time.perf_counter() - started - built:.1f} s, {parquet.stat().st_size / 1e6:.1f} MB ({parquet})")
    if args.browser:
        print(browser_timings(out, loads=args.loads), flush=True)


if __name__ == "__main__":
    main()
