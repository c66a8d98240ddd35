# Sourced by the benchmarks/gpu_*.sh scripts: checks that torch (with CUDA) and the packages
# named in $GPU_PACKAGES import, installs them from a carried ./wheels folder when they do not,
# sets $OUT (logs, default ./gpu-out), $PY and the offline environment, and records the GPU.
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
imports="torch, $(echo "$GPU_PACKAGES" | sed 's/scikit-learn/sklearn/; s/ /, /g')"
if ! "$PY" -c "import $imports; assert torch.cuda.is_available()" 2>/dev/null; then
  if [ -d wheels ]; then
    # shellcheck disable=SC2086
    "$PY" -m pip install --quiet --no-index --find-links wheels torch $GPU_PACKAGES numpy safetensors
  else
    echo "torch (CUDA) and $GPU_PACKAGES are needed; carry a ./wheels folder" >&2
    exit 2
  fi
fi
export PYTHONPATH="$PWD" HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv | tee "$OUT/gpu.txt"
