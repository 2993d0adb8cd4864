#!/usr/bin/env bash
# Pack into .gpu/ what scripts/gpu_session.sh needs from this machine's runs/ cache to run (or
# resume) one full-profile regeneration on the lent GPU machine, which starts bare: the item
# embeddings (RaSR), the SASRec that starts the generator (only its best item table: the rest
# of its checkpoint is not read) and the generator checkpoint when there is one to resume.
# Each file is gzipped and listed in .gpu/manifest.txt (its path under runs/, then its file
# here); gpu_session.sh unpacks them before it starts. The working tree and what is carried
# travel together under a 64 MiB limit, so the total is printed.
# Usage here:  bash scripts/gpu_carry.sh [DATASET] [METHOD]   (then carry ".gpu" in the call)
set -euo pipefail
DATASET=${1:-beauty}
METHOD=${2:-rasr}
PY=${PY:-.venv/bin/python}
CARRY=${CARRY:-.gpu}  # another folder only for tests: the call carries .gpu
rm -rf "$CARRY" && mkdir -p "$CARRY"
PYTHONPATH=$PWD "$PY" - "$DATASET" "$METHOD" "$CARRY" <<'EOF'
import gzip
import shutil
import sys
from pathlib import Path

import torch

from rasr_lib.config import load_config
from rasr_lib.data import load_dataset
from rasr_lib.experiments.regen_run import pretrain_config, regen_dir
from rasr_lib.experiments.train_run import run_dir
from rasr_lib.rasr.embeddings import embedding_cache_path, item_prompts
from rasr_lib.runtime import runs_dir

dataset, method, carry = sys.argv[1:4]
cfg = load_config(dataset, "full", {"regen.method": method})
root, out = runs_dir(), Path(carry)
wanted = []
if method == "rasr":
    npy = embedding_cache_path(item_prompts(load_dataset(dataset)))
    wanted += [npy, npy.with_suffix(".json")]
pre = run_dir(pretrain_config(cfg))
wanted += [pre / "result.json", regen_dir(cfg) / "generator.pt"]
lines = []
for i, path in enumerate(wanted):
    if not path.exists():
        if path.name == "generator.pt":
            print(f"no generator checkpoint at {path}: the GPU starts the generator from epoch 1")
            continue
        sys.exit(f"error: {path} is missing; run the CPU stage that makes it first")
    packed = out / f"{i}-{path.name}.gz"
    with gzip.open(packed, "wb", compresslevel=1) as dst:
        if path.name == "result.json":  # its checkpoint goes beside it, trimmed below
            dst.write(path.read_bytes())
        else:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, dst)
    lines.append(f"{path.relative_to(root)}\t{packed.name}")
state = torch.load(pre / "checkpoint.pt", map_location="cpu", weights_only=False)
item_table = {"best_state": {"item_embedding.weight": state["best_state"]["item_embedding.weight"]}}
torch.save(item_table, out / "pretrain-checkpoint.pt")
lines.append(f"{(pre / 'checkpoint.pt').relative_to(root)}\tpretrain-checkpoint.pt")
(out / "manifest.txt").write_text("\n".join(lines) + "\n")
print(f"{dataset} {method}: pipeline {regen_dir(cfg).relative_to(root)}")
EOF
cat "$CARRY/manifest.txt"
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
carried=$(du -cb "$CARRY" | tail -1 | cut -f1)
echo "working tree $((tree / 1048576)) MiB + .gpu $((carried / 1048576)) MiB (limit 64 MiB)"
[ $((tree + carried)) -lt $((62 * 1048576)) ] || echo "warning: too close to the 64 MiB limit for one call"
