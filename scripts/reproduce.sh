#!/usr/bin/env bash
# The main job on a fresh clone: set up (or reuse) .venv, run every notebook on the bundled
# Beauty data with the quick profile through the runner (executed copies in runs/, recorded
# values harvested into results/beauty/*-quick.json), then build the HTML book.
# Environment: DATASET (default beauty), PROFILE (default quick), FORCE=1 to rerun notebooks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
export PATH="$ROOT/.venv/bin:$PATH"
DATASET="${DATASET:-beauty}"
PROFILE="${PROFILE:-quick}"
START=$SECONDS

source scripts/_common.sh

setup_venv

step "running the notebooks on $DATASET with the $PROFILE profile (papermill -> runs/, records -> results/)"
force=()
[ "${FORCE:-0}" = "1" ] && force=(--force)
.venv/bin/python -m rasr_lib -v notebooks --dataset "$DATASET" --profile "$PROFILE" "${force[@]}"

step "building the book (notebooks run above are rendered from the cache, not executed again)"
.venv/bin/jupyter-book build . -W -n --keep-going --all

step "done in $((SECONDS - START)) s"
echo "The book: $ROOT/_build/html/index.html"
