"""Benchmark: ``quanta_core.clustering.spectral_clustering`` against the original's call, and the
paper-sized run.

The original ran ``SpectralClustering(n_clusters=k, affinity="precomputed",
assign_labels="kmeans", n_init=30, random_state=0).fit(1 − arccos(C)/π)``. Ours performs exactly
those calls, so the ratio is ≈ 1 by construction; this script checks that the labels are equal and
measures the time of the paper's size (10,000 tokens, 400 clusters), split into the spectral
embedding (ARPACK, float64) and k-means (30 restarts). Data: a synthetic similarity matrix of unit
vectors around planted centres with Zipf-distributed cluster sizes (``synthetic_quanta.py``).

    python benchmarks/bench_clustering.py                         # compare at S=2000, k=100, then S=10000, k=400
    python benchmarks/bench_clustering.py --samples 3000 --clusters 120 --json out.json

Results go to stdout (and to ``--json``), printed as they come.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))

from synthetic_quanta import planted_similarity  # noqa: E402

from quanta_core import clustering  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--clusters", type=int, default=400)
    parser.add_argument("--compare-samples", type=int, default=2_000, help="size of the ours-vs-sklearn comparison")
    parser.add_argument("--compare-clusters", type=int, default=100)
    parser.add_argument("--n-init", type=int, default=clustering.N_INIT)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results: dict = {"cpus": os.cpu_count()}

    def record(key, value):
        results[key] = value
        print(f"{key}: {value}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))

    from sklearn import __version__ as sklearn_version
    from sklearn.cluster import SpectralClustering

    record("sklearn", sklearn_version)
    clustering.spectral_clustering(planted_similarity(50, 3)[0], 3)  # warm up imports
    C, planted = planted_similarity(args.compare_samples, args.compare_clusters)
    started = time.perf_counter()
    ours = clustering.spectral_clustering(C, args.compare_clusters, n_init=args.n_init)
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    theirs = SpectralClustering(args.compare_clusters, affinity="precomputed", assign_labels="kmeans",
                                n_init=args.n_init, random_state=0).fit_predict(clustering.affinity_from_similarity(C))
    theirs_s = time.perf_counter() - started
    record("compare", {
        "samples": args.compare_samples, "clusters": args.compare_clusters,
        "ours_seconds": round(ours_s, 2), "sklearn_seconds": round(theirs_s, 2),
        "ratio_sklearn_over_ours": round(theirs_s / ours_s, 3),
        "identical_labels": bool(np.array_equal(ours, clustering.rank_clusters(theirs))),
        "ari_vs_planted": round(clustering.compare_labelings(ours, planted)["adjusted_rand"], 4),
    })

    C, planted = planted_similarity(args.samples, args.clusters)
    started = time.perf_counter()
    embedding = clustering.spectral_embedding(C, args.clusters)
    embed_s = time.perf_counter() - started
    record("full_embedding_seconds", round(embed_s, 1))
    started = time.perf_counter()
    labels = embedding.kmeans(args.clusters, args.n_init)
    kmeans_s = time.perf_counter() - started
    sizes = clustering.cluster_sizes(labels)
    record("full", {
        "samples": args.samples, "clusters": args.clusters, "n_init": args.n_init,
        "embedding_seconds": round(embed_s, 1), "kmeans_seconds": round(kmeans_s, 1),
        "total_seconds": round(embed_s + kmeans_s, 1),
        "ari_vs_planted": round(clustering.compare_labelings(labels, planted)["adjusted_rand"], 4),
        "largest_sizes": sizes[:5].tolist(), "planted_largest": clustering.cluster_sizes(planted)[:5].tolist(),
    })


if __name__ == "__main__":
    main()
