"""Benchmark: the sparse road end to end on the demo suite (issue 15's acceptance).

1. ``--compare-tokens`` (default 5,000): the same low-loss tokens clustered by both roads — the
   dense projected matrix by the exact road (scikit-learn's labels), its top-``--neighbors`` graph
   by the sparse road — ARI / NMI between them, and the exact road against itself with another
   random state (the ceiling any approximation can be judged by).
2. ``--only synthetic``: what follows the gradients at ``--tokens``, on planted projected rows
   (Gram tiles into the kNN sink, the kNN road's clustering): seconds and peak RSS.
3. ``--only report``: the real ``quanta_report`` at ``--tokens`` tokens × ``--clusters`` clusters
   (drawn Zipf-sized labels on the selected tokens; needs the loss table of an earlier run).
4. ``--tokens`` (default 50,000): ``pile_losses`` (all documents of the mini-Pile, the loss-table
   setting ``loss_settings.num_documents``), ``quanta_similarity`` (projected, ``neighbors`` k),
   ``quanta_clusters`` (the kNN road) and ``quanta_report`` of ``quanta-demo|step512``, each
   materialized through Dagster (the real assets, ``dg.materialize`` with the code location's
   resources and a private cache and Dagster home) in its own process: wall time and peak RSS
   (VmHWM) per stage.

Set-up (not timed): ``corpus/`` and ``hub/`` are copied from ``--source-cache`` (a cache where
``make demo`` ran: the mini-Pile, its induction filters and the trained demo suite) into
``--workdir``. Run under the bench lock on a quiet machine::

    flock /tmp/quanta-bench.lock python benchmarks/bench_sparse_road.py --source-cache .quanta_cache
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from quanta_core.host_memory import process_peak_bytes

ROOT = Path(__file__).resolve().parent.parent

MODEL, STEP = "quanta-demo", "step512"
STAGES = ("pile_losses", "quanta_similarity", "quanta_clusters", "quanta_report")


def settings(args) -> dict:
    """The settings resources of the end-to-end run (JSON-able kwargs by resource name)."""
    return {
        "loss_settings": {"num_documents": args.documents},
        "similarity_settings": {"threshold_bits": args.threshold_bits, "filter": args.filter, "skip": 1,
                                "num_tokens": args.tokens, "method": "projected",
                                "projection_dim": args.projection_dim, "neighbors": args.neighbors},
        "cluster_settings": {"num_clusters": args.clusters, "n_components": args.components, "n_init": args.n_init,
                             "knn_eigen_solver": "amg", "kmeans": "full"},
    }


def run_stage(stage: str, config: dict) -> None:
    """(child process) Materialize ``stage`` of quanta-demo|step512 with ``config``'s settings."""
    import dagster as dg

    from quanta_assets import settings as s
    from quanta_assets.code_versions import with_settings_code_version
    from quanta_assets.definitions import SHARED_ASSETS, default_resources, study_assets
    from quanta_assets.partitions import checkpoint_key
    from quanta_assets.studies import DEFAULT_STUDY

    classes = {"loss_settings": s.LossSettings, "similarity_settings": s.SimilaritySettings,
               "cluster_settings": s.ClusterSettings}
    resources = {**default_resources(), **{k: classes[k](**v) for k, v in config.items()}}
    assets = [with_settings_code_version(a, resources) for a in [*SHARED_ASSETS, *study_assets(DEFAULT_STUDY)]]
    started = time.perf_counter()
    result = dg.materialize(assets, selection=[stage], partition_key=checkpoint_key(MODEL, STEP),
                            resources=resources, instance=dg.DagsterInstance.get())
    meta = {k: v.value for k, v in result.asset_materializations_for_node(stage)[0].metadata.items()
            if isinstance(v.value, (int, float, str))}
    print("RESULT " + json.dumps({"stage": stage, "seconds": round(time.perf_counter() - started, 1),
                                  "peak_rss_gib": round(process_peak_bytes() / 2**30, 2),
                                  "metadata": meta}), flush=True)


def end_to_end(args, workdir: Path, stages=STAGES) -> list[dict]:
    env = {**os.environ, "QUANTA_CACHE_DIR": str(workdir / "cache"), "DAGSTER_HOME": str(workdir / "dh"),
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    (workdir / "dh").mkdir(parents=True, exist_ok=True)
    rows = []
    for stage in stages:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, __file__, "--child", stage, "--config", json.dumps(settings(args))],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        result = None
        for line in proc.stdout:
            if line.startswith("RESULT "):
                result = json.loads(line[7:])
            elif args.verbose or "left" in line or "done" in line or "Error" in line:
                print("   ", line.rstrip()[-220:], flush=True)
        if proc.wait() != 0 or result is None:
            raise SystemExit(f"{stage} failed (exit {proc.returncode})")
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        rows.append(result)
        print(f"{stage}: {result['wall_seconds']:.0f} s wall (materialize {result['seconds']:.0f} s), peak RSS "
              f"{result['peak_rss_gib']:.2f} GiB; load {os.getloadavg()[0]:.1f}", flush=True)
    return rows


def compare(args, workdir: Path) -> dict:
    """Both roads on the same ``--compare-tokens`` tokens: the dense projected matrix by the exact
    road, its top-k graph (k in 10, ``--neighbors``, 100) by the sparse road; ARI / NMI."""
    import torch

    from quanta_core import store
    from quanta_core.clustering import sparse as knn_clustering
    from quanta_core.clustering.roads import ClusterOptions, cluster_similarity
    from quanta_core.clustering.spectral import compare_labelings
    from quanta_core.corpus.canonical import CanonicalCorpus
    from quanta_core.corpus.selection import select_tokens
    from quanta_core.models.checkpoints import load_checkpoint
    from quanta_core.progress import RateLog
    from quanta_core.similarity import similarity_matrix
    from quanta_core.similarity.knn import knn_from_dense

    cache = workdir / "cache"
    losses = np.asarray(store.read_value(cache / MODEL / STEP / "pile_losses.npy"))
    indices = select_tokens(losses, None, threshold_bits=args.threshold_bits, skip=1, num_tokens=args.compare_tokens,
                            filter_name="none")
    corpus = CanonicalCorpus.load(cache / "corpus" / "pile_canonical")
    checkpoint = load_checkpoint(MODEL, STEP, hub_cache_dir=cache / "hub", device="cpu", offline=True)
    torch.set_num_threads(os.cpu_count() or 1)
    rate = RateLog(print, len(indices), "gradient computations", every_seconds=60)
    t = time.perf_counter()
    matrix = similarity_matrix(checkpoint.model, corpus, indices, method="projected",
                               projection_dim=args.projection_dim, progress=lambda p: rate(p.gradients_done)).matrix
    out = {"tokens": len(indices), "clusters": args.compare_clusters,
           "similarity_seconds": round(time.perf_counter() - t)}
    k = args.compare_clusters
    labels, info = cluster_similarity({"indices": indices, "matrix": matrix}, ClusterOptions(k))
    out["exact_road_seconds"] = info["clustering_seconds"]
    other, _ = cluster_similarity({"indices": indices, "matrix": matrix}, ClusterOptions(k, random_state=1))
    out["exact_seed0_vs_seed1"] = {n: round(v, 4) for n, v in compare_labelings(labels, other).items()}
    sparse = {}
    for neighbors in sorted({10, args.neighbors, 100}):
        t = time.perf_counter()
        result = knn_clustering.knn_spectral_clustering(*knn_from_dense(matrix, neighbors), k)
        sparse[neighbors] = result.labels
        out[f"sparse_k{neighbors}_vs_exact"] = {**{n: round(v, 4) for n, v in
                                                   compare_labelings(labels, result.labels).items()},
                                                "seconds": round(time.perf_counter() - t, 1)}
        print(f"sparse road, {neighbors} neighbours, vs exact: {out[f'sparse_k{neighbors}_vs_exact']}", flush=True)
    if args.figure:
        args.figure.write_text(rank_frequency_figure({"exact road (dense matrix)": labels,
                                                      f"sparse road ({args.neighbors} neighbours)":
                                                      sparse[args.neighbors]}, out))
    return out


def rank_frequency_figure(labelings: dict, summary: dict, width: int = 560, height: int = 340) -> str:
    """A standalone SVG: cluster size against rank (log-log) for each labelling."""
    from quanta_core.clustering.spectral import cluster_sizes

    left, top, w, h = 60, 40, width - 80, height - 90
    curves = {name: cluster_sizes(labels) for name, labels in labelings.items()}
    x_max = np.log10(max(len(c) for c in curves.values()))
    y_max = np.log10(max(c.max() for c in curves.values()))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#888"/>',
             f'<text x="{left}" y="20">Cluster size against rank, S = {summary["tokens"]:,} demo tokens, '
             f'k = {summary["clusters"]} (log-log)</text>']
    for decade in range(int(x_max) + 1):
        px = left + w * decade / x_max
        parts.append(f'<text x="{px:.1f}" y="{top + h + 16}" text-anchor="middle">{10 ** decade}</text>')
    for decade in range(int(y_max) + 1):
        py = top + h * (1 - decade / y_max)
        parts.append(f'<text x="{left - 6}" y="{py + 4:.1f}" text-anchor="end">{10 ** decade}</text>')
    for i, (name, sizes) in enumerate(curves.items()):
        colour = ("#1f5fa8", "#c0392b")[i % 2]
        points = " ".join(f"{left + w * np.log10(r + 1) / x_max:.1f},{top + h * (1 - np.log10(v) / y_max):.1f}"
                          for r, v in enumerate(sizes))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{left + w - 4}" y="{top + 16 + 16 * i}" text-anchor="end" '
                     f'fill="{colour}">{name}</text>')
    parts.append(f'<text x="{left}" y="{height - 12}">rank (x) · cluster size in tokens (y)</text></svg>')
    return "\n".join(parts)


def synthetic(args) -> dict:
    """The sparse road after the gradients at ``--tokens``: projected rows (planted directions in
    ``--projection-dim`` dimensions, ``--clusters`` centres) stored as the similarity stores them, their Gram
    tile by tile into a :class:`KnnSink`, then the kNN road's clustering — seconds and peak RSS."""
    import torch

    from quanta_core.clustering.roads import ClusterOptions, cluster_similarity
    from quanta_core.clustering.spectral import compare_labelings
    from quanta_core.similarity.knn import KnnSink
    from quanta_core.similarity.tiles import StoredRows, gram_into_sink

    torch.set_num_threads(os.cpu_count() or 1)
    s, d = args.tokens, args.projection_dim
    gen = torch.Generator().manual_seed(0)
    truth = torch.randint(0, args.clusters, (s,), generator=gen)
    centres = torch.randn(args.clusters, d, generator=gen)
    stored = StoredRows(s, d, "float16", torch.device("cpu"))
    for a in range(0, s, 4096):
        rows = torch.arange(a, min(a + 4096, s))
        stored.put(rows, centres[truth[rows]] + 0.8 * torch.randn(len(rows), d, generator=gen))
    del centres
    sink, t = KnnSink(s, args.neighbors), time.perf_counter()
    gram_into_sink(stored, sink)
    idx, cos = sink.finish()
    gram_seconds = time.perf_counter() - t
    del stored
    labels, info = cluster_similarity({"indices": np.arange(s), "knn_indices": idx, "knn_cosines": cos},
                                      ClusterOptions(args.clusters, n_components=args.components, n_init=args.n_init))
    return {"tokens": s, "projection_dim": d, "neighbors": args.neighbors,
            "gram_and_topk_seconds": round(gram_seconds, 1),
            "clustering_seconds": info["clustering_seconds"], "embedding_seconds": info["embedding_seconds"],
            "kmeans_seconds": info["kmeans_seconds"], "peak_rss_gib": round(process_peak_bytes() / 2**30, 2),
            "ari_vs_planted": round(compare_labelings(labels, truth.numpy())["adjusted_rand"], 3)}


def report_only(args, workdir: Path) -> dict:
    """``quanta_report`` (the real asset) at ``--tokens`` demo tokens × ``--clusters`` Zipf-sized
    clusters: the labels are drawn (the report's cost does not depend on how they were found)."""
    from quanta_core import store
    from quanta_core.clustering.spectral import rank_clusters
    from quanta_core.clustering.tokens import clusters_table
    from quanta_core.corpus.canonical import CanonicalCorpus
    from quanta_core.corpus.selection import select_tokens
    from quanta_core.paths import asset_path

    cache = workdir / "cache"
    losses = np.asarray(store.read_value(cache / MODEL / STEP / "pile_losses.npy"))
    indices = select_tokens(losses, None, threshold_bits=args.threshold_bits, skip=1, num_tokens=args.tokens,
                            filter_name="none")
    weights = 1.0 / np.arange(1, args.clusters + 1)
    labels = rank_clusters(np.random.default_rng(0).choice(args.clusters, len(indices), p=weights / weights.sum()))
    corpus = CanonicalCorpus.load(cache / "corpus" / "pile_canonical")
    store.write_value(asset_path(cache, "quanta_clusters", MODEL, STEP),
                      {"labels": labels, "tokens": clusters_table(indices, labels, corpus, losses)})
    [row] = end_to_end(args, workdir, STAGES[3:])
    return row


def prepare(source: Path, workdir: Path) -> None:
    for part in ("corpus", "hub"):
        target = workdir / "cache" / part
        if not target.exists():
            if not (source / part).exists():
                raise SystemExit(f"{source / part} is missing: run `make demo` (or pass --source-cache)")
            shutil.copytree(source / part, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-cache", type=Path, default=ROOT / ".quanta_cache")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/quanta-bench-sparse"))
    parser.add_argument("--tokens", type=int, default=50_000)
    parser.add_argument("--compare-tokens", type=int, default=5_000)
    parser.add_argument("--compare-clusters", type=int, default=100)
    parser.add_argument("--documents", type=int, default=2000, help="loss_settings.num_documents")
    parser.add_argument("--threshold-bits", type=float, default=1.0)
    parser.add_argument("--filter", default="none")
    parser.add_argument("--projection-dim", type=int, default=2048)
    parser.add_argument("--neighbors", type=int, default=30)
    parser.add_argument("--clusters", type=int, default=400)
    parser.add_argument("--components", type=int, default=100)
    parser.add_argument("--n-init", type=int, default=10)
    parser.add_argument("--only", choices=("compare", "end-to-end", "synthetic", "report"))
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--reuse-losses", action="store_true", help="keep the loss table of an earlier run")
    parser.add_argument("--figure", type=Path, help="write the rank-frequency SVG of both roads here")
    parser.add_argument("--child", choices=STAGES)
    parser.add_argument("--config")
    args = parser.parse_args()
    if args.child:
        return run_stage(args.child, json.loads(args.config))
    if args.only == "synthetic":
        print("synthetic (after the gradients):", json.dumps(synthetic(args)), flush=True)
        return None
    prepare(args.source_cache, args.workdir)
    if args.only == "report":
        print("report (drawn labels):", json.dumps(report_only(args, args.workdir)), flush=True)
        return None
    print(f"settings: {json.dumps(settings(args))}; load {os.getloadavg()}", flush=True)
    losses = args.workdir / "cache" / MODEL / STEP / "pile_losses.npy"
    if (args.only == "compare" or args.reuse_losses) and losses.exists():
        rows = []  # the loss table of an earlier run (its --documents)
    else:
        rows = end_to_end(args, args.workdir, STAGES[:1])  # the loss table over --documents documents
    report = {}
    if args.only != "end-to-end":
        report["compare"] = compare(args, args.workdir)
        print("dense vs sparse on the same tokens:", json.dumps(report["compare"]), flush=True)
    if args.only != "compare":
        report["end_to_end"] = rows + end_to_end(args, args.workdir, STAGES[1:])
        total = sum(r["wall_seconds"] for r in report["end_to_end"])
        print(f"end to end: {total:.0f} s ({total / 60:.1f} min), max peak RSS "
              f"{max(r['peak_rss_gib'] for r in report['end_to_end']):.2f} GiB", flush=True)
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
