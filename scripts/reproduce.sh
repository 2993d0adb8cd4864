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

step() { printf '\n==> [%4ss] %s\n' "$((SECONDS - START))" "$*"; }

setup_venv() {
  local py="${PYTHON:-python3}" stamp
  if [ ! -x .venv/bin/python ]; then
    step "creating .venv with $("$py" --version 2>&1)"
    "$py" -m venv .venv
  fi
  .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "error: .venv has $(.venv/bin/python --version); Python >= 3.11 is needed" >&2; exit 1; }
  stamp="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
  if [ "$(cat .venv/.rasr-install-stamp 2>/dev/null || true)" = "$stamp" ]; then
    step "reusing .venv (requirements.txt and pyproject.toml unchanged)"
  else
    step "installing the pinned requirements into .venv (a few minutes the first time)"
    .venv/bin/pip install -q -r requirements.txt
    .venv/bin/pip install -q --no-deps -e .
    echo "$stamp" > .venv/.rasr-install-stamp
  fi
}

setup_venv

step "running the notebooks on $DATASET with the $PROFILE profile (papermill -> runs/, records -> results/)"
force=()
[ "${FORCE:-0}" = "1" ] && force=(--force)
.venv/bin/python -m rasr_lib -v notebooks --dataset "$DATASET" --profile "$PROFILE" "${force[@]}"

step "building the book (notebooks run above are rendered from the cache, not executed again)"
.venv/bin/jupyter-book build . -W -n --keep-going --all

step "done in $((SECONDS - START)) s"
echo "The book: $ROOT/_build/html/index.html"
