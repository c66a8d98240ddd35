#!/usr/bin/env bash
# GPU check of the sparse road (issue 15's GPU goal: S = 100,000 tokens of a pythia-70m-shaped
# model, projected, into each token's 30 nearest neighbours, ≤ 3 minutes on an H200), prepared to run
# as ONE command on a lent GPU machine; time-boxed to fit one device call next to gpu_similarity.sh.
#
#   bash benchmarks/gpu_sparse_road.sh            # writes logs to $OUT (or ./gpu-out)
#
# 1. a 2,000-token run (warm-up, and the rate to extrapolate from if step 2 is cut off);
# 2. S = 100,000 (countsketch to 8,192, 30 neighbours).
# Needs torch with CUDA and transformers; a carried ./wheels folder is installed from if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_PACKAGES="transformers pandas scikit-learn"
source benchmarks/gpu_env.sh
timeout 120 "$PY" benchmarks/bench_projected_knn.py --device cuda --tokens 2000 2>&1 | tee "$OUT/knn_2000.txt"
timeout 400 "$PY" benchmarks/bench_projected_knn.py --device cuda --tokens 100000 2>&1 | tee "$OUT/knn_100000.txt" \
  || echo "S = 100,000 stopped (time box 400 s): extrapolate from the progress lines" | tee -a "$OUT/knn_100000.txt"
