#!/usr/bin/env bash
# GPU check of QDG similarity (issue 14 §2), prepared to run as ONE command on a lent GPU machine
# (e.g. the `device` tool's H200: 15 minutes of device time in all, so every step is time-boxed).
#
#   bash benchmarks/gpu_similarity.sh            # writes logs to $OUT (or ./gpu-out)
#
# 1. Gram accuracy on the device: 512 unit rows of 18.9M (pythia-70m's parameter count), stored as
#    float16 (as the resident blocks are) and as float32; modes `ieee` (float32 SIMT) and `3xtf32`
#    (tensor cores) against a float64 Gram of the same rows: max |diag − 1| (goal ≤ 1e-5) and
#    max |Δ| (goal ≤ 1e-6), seconds. Tensor cores' accumulation is the one thing the CPU
#    emulation in tests/core/test_similarity_gram.py cannot show.
# 2. exact at S = 10,000 (pythia-70m shape, random weights), float16 resident blocks planned for the
#    device's memory, Gram `ieee`, then — only if step 1 met both goals — `3xtf32`.
# Needs torch with CUDA and transformers; if they are missing and a ./wheels folder was carried,
# they are installed from it (pip --no-index).
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_PACKAGES="transformers pandas"
source benchmarks/gpu_env.sh

timeout 150 "$PY" benchmarks/bench_similarity.py --device cuda --gram-check 512 2>&1 | tee "$OUT/gram_check.txt"

timeout 330 "$PY" benchmarks/bench_similarity.py --device cuda --tokens 10000 --skip-reference \
  --gram-mode ieee 2>&1 | tee "$OUT/exact_10000_ieee.txt" || echo "ieee run stopped (time box)" | tee -a "$OUT/exact_10000_ieee.txt"

if "$PY" - "$OUT/gram_check.txt" <<'EOF'
import re, sys
lines = [l for l in open(sys.argv[1]) if "3xtf32" in l and "float16" in l]
ok = bool(lines) and all(float(re.search(r"diag − 1\| ([0-9.e+-]+)", l).group(1)) <= 1e-5
                         and float(re.search(r"float64 ([0-9.e+-]+)", l).group(1)) <= 1e-6 for l in lines)
sys.exit(0 if ok else 1)
EOF
then
  timeout 240 "$PY" benchmarks/bench_similarity.py --device cuda --tokens 10000 --skip-reference \
    --gram-mode 3xtf32 2>&1 | tee "$OUT/exact_10000_3xtf32.txt" || echo "3xtf32 run stopped (time box)"
else
  echo "3xtf32 missed the accuracy goals on this device: not run at S = 10,000" | tee "$OUT/exact_10000_3xtf32.txt"
fi
