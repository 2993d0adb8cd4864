#!/usr/bin/env bash
# The GPU checks, made to fit one call of the lent GPU machine (about 8 minutes; issue 5):
#   1. tests/test_gpu.py: every backbone ranks on CUDA as on the CPU and trains there;
#   2. benchmarks/bench_models.py on CUDA: seconds per epoch of every backbone (Table 6 reads it);
#   3. a quick DR4SR regeneration on CUDA (no sentence encoder needed).
# It uses the machine's own python3, whose PyTorch has CUDA (the project's CPU pins do not
# apply there), and writes every log and JSON under $OUT (default runs/gpu-check). Each step
# has its own time limit, so one slow step cannot hide the others' results.
# Usage on the device machine:  bash scripts/gpu_check.sh
set -uo pipefail
OUT=${OUT:-runs/gpu-check}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg HF_HUB_OFFLINE=1 RASR_RUNS_DIR="$OUT/runs"

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

timeout 200 $PY -m pytest -p no:cacheprovider -m gpu tests/test_gpu.py -q -rs 2>&1 | tee "$OUT/gpu-tests.log"
timeout 200 $PY benchmarks/bench_models.py --device cuda --batches 20 --out "$OUT/bench-models-gpu.json" 2>&1 \
    | tee "$OUT/bench-models-gpu.log"
timeout 100 $PY -m rasr_lib regenerate --dataset beauty --method dr4sr --profile quick --device cuda 2>&1 \
    | tee "$OUT/regenerate-gpu.log"
rm -rf "$OUT/runs"  # checkpoints and caches: only the logs and JSON come back
