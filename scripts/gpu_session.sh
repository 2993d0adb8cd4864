#!/usr/bin/env bash
# One call of the lent GPU machine (about 9 minutes; issues 3 and 5), in three parts:
#   1. tests/test_gpu.py: every backbone ranks on CUDA as on the CPU and trains there;
#   2. benchmarks/bench_models.py on CUDA: seconds per epoch of every backbone (Table 6 reads it),
#      and benchmarks/bench_kernels.py (the loss and dropout kernels, chapter 03);
#   3. the full-profile RaSR (or DR4SR) regeneration of one dataset (the paper's 100 generator
#      epochs take hours on a 2-core CPU), stopped before a deadline: checkpointed, so a later
#      call, or the CPU, resumes it.
# The regeneration needs what this machine already made: the dataset's item embeddings and the
# SASRec that starts the generator (and the generator checkpoint, to resume). Here, run
# `bash scripts/gpu_carry.sh DATASET METHOD` and name ".gpu" in the call's carry: this script
# unpacks .gpu/ into runs/ first. Everything that should come back is packed
# into one tar, split into 15 MB parts ($OUT/back.tgz.part-*): unpack with
# `cat back.tgz.part-* | tar xzf -`. Each part has its own time limit, so one slow part cannot
# hide the others' results.
# Usage on the device machine:  DATASET=beauty METHOD=rasr BUDGET_S=560 bash scripts/gpu_session.sh
# (CHECKS=0 skips parts 1 and 2, to give the generator the whole call)
# (RUNS=/tmp/dry/runs DEVICE=cpu EXTRA="--set data.max_users=500" rehearses it on the CPU).
set -uo pipefail
T0=$(date +%s)
OUT=${OUT:-runs/gpu-session}
PY=${PY:-python3}
DATASET=${DATASET:-beauty}
METHOD=${METHOD:-rasr}
CHECKS=${CHECKS:-1}
DEVICE=${DEVICE:-cuda}
BUDGET_S=${BUDGET_S:-560}
EXTRA=${EXTRA:-}
BENCH_MODELS=${BENCH_MODELS:-}  # default: every backbone
DECODE_S=${DECODE_S:-60}  # seconds left for decoding after the generator
RUNS=${RUNS:-$PWD/runs}
CARRY=${CARRY:-.gpu}  # what scripts/gpu_carry.sh packed
BACK=$(mktemp -d)/back
mkdir -p "$OUT" "$BACK"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg HF_HUB_OFFLINE=1
left() { local s=$((T0 + BUDGET_S - $(date +%s) - ${1:-0})); echo $((s > 1 ? s : 1)); }

if [ -f "$CARRY/manifest.txt" ]; then  # <path under runs/> TAB <file in $CARRY>
    while IFS=$'\t' read -r dest file; do
        mkdir -p "$RUNS/$(dirname "$dest")"
        case $file in
            *.gz) gunzip -c "$CARRY/$file" > "$RUNS/$dest" ;;
            *) cp "$CARRY/$file" "$RUNS/$dest" ;;
        esac
    done < "$CARRY/manifest.txt"
fi

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} > "$BACK/gpu.txt" 2>&1
cat "$BACK/gpu.txt"

[ "$CHECKS" = 1 ] && RASR_RUNS_DIR=$(mktemp -d) timeout 90 $PY -m pytest -p no:cacheprovider -m gpu tests/test_gpu.py -q -rs \
    2>&1 | tee "$BACK/gpu-tests.log" | tail -5
[ "$CHECKS" = 1 ] && RASR_RUNS_DIR=$RUNS timeout 100 $PY benchmarks/bench_models.py --dataset "$DATASET" --device "$DEVICE" \
    --batches 20 ${BENCH_MODELS:+--models $BENCH_MODELS} --out "$BACK/bench-models-gpu.json" 2>&1 | tee "$BACK/bench-models-gpu.log" | tail -16
[ "$CHECKS" = 1 ] && timeout 30 $PY benchmarks/bench_kernels.py --device "$DEVICE" \
    --out "$BACK/bench-kernels-gpu.json" 2>&1 | tail -3

# The generator stops after its last epoch that fits before the deadline (it leaves a minute for
# decoding); the hard limit behind it leaves time to pack.
hours=$(python3 -c "print(max(($(left "$DECODE_S")) / 3600, 0.001))")
export RASR_RUNS_DIR=$RUNS
# shellcheck disable=SC2086
timeout "$(left 20)" $PY -m rasr_lib regenerate --dataset "$DATASET" --method "$METHOD" --profile full \
    --device "$DEVICE" --hours "$hours" $EXTRA 2>&1 | tee "$BACK/regen-$METHOD.log" | grep -v "it/s\]" | tail -20
for folder in "$RUNS"/regen/"$DATASET"/"$METHOD"-*; do
    [ -d "$folder" ] || continue
    mkdir -p "$BACK/$(basename "$folder")"
    cp "$folder"/*.json "$folder"/*.npz "$folder"/generator.pt "$BACK/$(basename "$folder")/" 2>/dev/null
done
find "$BACK" -type f -printf "%s %p\n"
tar czf - -C "$(dirname "$BACK")" back | split -b 15M - "$OUT/back.tgz.part-"
ls -la "$OUT"
