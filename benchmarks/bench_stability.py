"""Benchmark of the cluster stability (clusterboot) and coherence: what it says and what it costs.

Sections (``--only a,b``; default: demo):

* ``demo``: demo-like data — S = 600 tokens, k = 30 (the ``make demo`` sizes): a trained-like matrix
  (planted Zipf-sized clusters, ``synthetic_quanta.planted_similarity``, noise 0.6: the exact road's
  seed-to-seed ARI ≈ 0.78, the real demo matrix's is 0.86) and a null (random unit vectors in 64
  dimensions: no structure, as a random-init model's gradients would be at best). Both schemes,
  ARPACK and eigh, R = 20, n_init 30: fraction stable, median stability, mean ARI, coherence z,
  seconds and the ratio to one clustering.
* ``scale``: the cost at ``--samples`` (10,000) × ``--clusters`` (400) with R = ``--resamples`` (20)
  on one road (``--road exact|sparse``, ``--neighbors`` 30 for the sparse road's kNN graph) and
  scheme. ``--measured N`` runs only N re-clusterings (≥ 2) and extrapolates to R: the seeds
  scheme's first re-clustering carries the one embedding, the others are k-means only;
  ``--measured 0`` (seeds only) extrapolates from the one clustering's phases: embedding once +
  R × its k-means (a seeds re-clustering *is* that k-means with another seed). Also times the
  coherence with its null (100 random groups per cluster).

    OMP_NUM_THREADS=1 python benchmarks/bench_stability.py --only demo
    OMP_NUM_THREADS=2 python benchmarks/bench_stability.py --only scale --samples 10000 --clusters 400 \\
        --road exact --scheme seeds --measured 0
    OMP_NUM_THREADS=2 python benchmarks/bench_stability.py --only scale --samples 2500 --clusters 100 \\
        --road sparse --scheme subsample --measured 4

Results go to stdout (and ``--json``) as they come.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from quanta_core.clustering.coherence import cluster_coherence
from quanta_core.clustering.roads import ClusterOptions, cluster_similarity
from quanta_core.clustering.stability import StabilityOptions, cluster_stability, reclusterings
from quanta_core.similarity.knn import knn_from_dense

from synthetic_quanta import planted_similarity


def random_unit_cosines(num_samples: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(num_samples, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return (x @ x.T).astype(np.float32)


def section_demo(args, record) -> None:
    data = {"trained-like": planted_similarity(600, 30, dim=64, noise=0.6, seed=0)[0], "null": random_unit_cosines(600)}
    for name, C in data.items():
        similarity = {"indices": np.arange(600), "matrix": C}
        for solver in ("arpack", "eigh"):
            options = ClusterOptions(num_clusters=30, eigen_solver=solver)
            started = time.perf_counter()
            labels, _ = cluster_similarity(similarity, options)
            one = time.perf_counter() - started
            for scheme in ("seeds", "subsample"):
                _, s = cluster_stability(similarity, labels, options, StabilityOptions(scheme=scheme,
                                                                                        resamples=args.resamples))
                record({"section": "demo", "data": name, "solver": solver, "scheme": scheme,
                        "fraction_stable": round(s["fraction_stable"], 3), "median_stability":
                        round(s["median_stability"], 3), "mean_ari": s["mean_ari"], "bands": s["bands"],
                        "median_coherence_z": round(s["median_coherence_z"], 1), "seconds": s["seconds"],
                        "one_clustering_seconds": round(one, 2), "ratio": round(s["seconds"] / one, 1)})


def section_scale(args, record) -> None:
    S, k = args.samples, args.clusters
    C, _ = planted_similarity(S, k, dim=64, noise=0.6, seed=0)
    similarity = {"indices": np.arange(S), "matrix": C}
    if args.road == "sparse":
        idx, cos = knn_from_dense(C, args.neighbors)
        similarity = {"indices": np.arange(S), "knn_indices": idx, "knn_cosines": cos}
        del C
    options = ClusterOptions(num_clusters=k, eigen_solver=args.solver, n_init=args.n_init)
    started = time.perf_counter()
    labels, info = cluster_similarity(similarity, options)
    one = time.perf_counter() - started
    record({"section": "scale", "step": "one clustering", "seconds": round(one, 1), "info": info})
    started = time.perf_counter()
    cluster_coherence(similarity, labels)
    record({"section": "scale", "step": "coherence (100 random groups per cluster)",
            "seconds": round(time.perf_counter() - started, 1)})
    if args.measured == 0:  # seeds: the re-clusterings are k-means on the reused embedding, as timed above
        if args.scheme != "seeds":
            raise SystemExit("--measured 0 only for --scheme seeds")
        total = info["embedding_seconds"] + args.resamples * info["kmeans_seconds"]
        each = np.array([])
    else:
        stamps = [time.perf_counter()]
        stability = StabilityOptions(scheme=args.scheme, resamples=args.measured)
        reclusterings(similarity, options, stability, progress=lambda message: stamps.append(time.perf_counter()))
        each = np.diff(stamps)
        rest = each[1:].mean() if args.scheme == "seeds" else each.mean()
        total = each.sum() + (args.resamples - args.measured) * rest
    record({"section": "scale", "road": args.road, "scheme": args.scheme, "solver": args.solver, "S": S, "k": k,
            "measured_reclusterings_seconds": [round(v, 1) for v in each],
            "extrapolated_R": args.resamples, "extrapolated_seconds": round(float(total), 0),
            "ratio_to_one_clustering": round(float(total) / one, 1)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="demo")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--clusters", type=int, default=400)
    parser.add_argument("--resamples", type=int, default=20)
    parser.add_argument("--measured", type=int, default=20, help="re-clusterings actually run (scale)")
    parser.add_argument("--road", choices=("exact", "sparse"), default="exact")
    parser.add_argument("--scheme", choices=("seeds", "subsample"), default="seeds")
    parser.add_argument("--solver", choices=("arpack", "eigh"), default="eigh")
    parser.add_argument("--neighbors", type=int, default=30)
    parser.add_argument("--n-init", type=int, default=30)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = []

    def record(row: dict) -> None:
        results.append(row)
        print(json.dumps(row), flush=True)

    for name in args.only.split(","):
        {"demo": section_demo, "scale": section_scale}[name](args, record)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
