"""Benchmark: the HTML report at the paper's size — 400 clusters × 10,000 samples, 300 tokens of
context before each target — on a synthetic corpus.

Corpus: 10,000 documents with Pile-like lengths (half truncated at 1,024 tokens, the rest
log-uniform in [16, 1024]), token ids drawn from Pythia's vocabulary with Zipf frequencies
(rank^−1, like natural text), one sample at a random predictable position of each document,
clusters with Zipf sizes. The original's report stored the text of every sample's context in the
page ("tens of megabytes").

    python benchmarks/bench_report.py                   # render, print size and seconds
    python benchmarks/bench_report.py --browser         # also time loading and switching in Chromium
    python benchmarks/bench_report.py --out /tmp/big.html
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))

from quanta_core.canonical import CanonicalCorpus, predictable_lengths  # noqa: E402
from quanta_core.report import render_report  # noqa: E402
from quanta_core.token_bytes import token_bytes_table  # noqa: E402
from quanta_core.tokenizer import load_tokenizer  # noqa: E402

from synthetic_quanta import zipf_sizes  # noqa: E402


def synthetic_report_inputs(num_samples: int, num_clusters: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    table = token_bytes_table(load_tokenizer())
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


def browser_timings(path: Path, switches: int = 20) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        started = time.perf_counter()
        page.goto(path.as_uri())
        page.wait_for_selector(".sample")
        load = time.perf_counter() - started
        started = time.perf_counter()
        for k in range(1, switches + 1):
            page.keyboard.press("ArrowRight")
            page.wait_for_function(f"document.getElementById('cluster-title').textContent === 'Cluster {k}'")
        switch = (time.perf_counter() - started) / switches
        heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : null")
        browser.close()
    return {"load_seconds": round(load, 2), "seconds_per_cluster_switch": round(switch, 3),
            "js_heap_mb": None if heap is None else round(heap / 1e6, 1), "page_errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--clusters", type=int, default=400)
    parser.add_argument("--before", type=int, default=300)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--browser", action="store_true", help="time loading and switching in headless Chromium")
    args = parser.parse_args()

    samples, corpus, table = synthetic_report_inputs(args.samples, args.clusters)
    started = time.perf_counter()
    html = render_report(samples, corpus, table, before=args.before, title="Synthetic benchmark report")
    seconds = time.perf_counter() - started
    size = len(html.encode("utf-8"))
    naive_tokens = int(np.minimum(samples.position, args.before).sum() + len(samples))
    print(f"{args.clusters} clusters × {args.samples:,} samples, before={args.before}: "
          f"rendered in {seconds:.1f} s, {size / 1e6:.1f} MB "
          f"({size / naive_tokens:.2f} bytes per context token; {naive_tokens:,} context tokens)", flush=True)
    out = args.out or Path(tempfile.mkdtemp()) / "bench_report.html"
    out.write_text(html, encoding="utf-8")
    print(f"written to {out}")
    if args.browser:
        print(browser_timings(out))


if __name__ == "__main__":
    main()
