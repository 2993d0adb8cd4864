#!/usr/bin/env bash
# The whole test suite on a fresh clone: set up (or reuse) .venv, then
#   1. unit tests                      pytest -m "not notebooks"
#   2. notebook value tests            pytest -m notebooks  (papermill, quick defaults)
#   3. nbval over the notebooks        pytest --nbval-lax _build/nbval/*.ipynb
#   4. the book, warnings as errors    jupyter-book build . -W -n --keep-going
# Stage 2 stores its executed notebooks in the book's jupyter-cache, so stage 4 renders them
# instead of executing every notebook a third time. .ci/run calls this script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
export PATH="$ROOT/.venv/bin:$PATH"
START=$SECONDS

source scripts/_common.sh

# pytest, failing loudly on exit 5 (nothing collected): every stage must test something.
run_pytest() {
  local label="$1" rc=0
  shift
  .venv/bin/python -m pytest "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "error: stage '$label' collected no tests (pytest exit 5)" >&2
    exit 1
  elif [ "$rc" -ne 0 ]; then
    echo "error: stage '$label' failed (pytest exit $rc)" >&2
    exit "$rc"
  fi
}

setup_venv
rm -rf _build/.jupyter_cache _build/nbval  # the book renders only outputs made by this run

step "1/4 unit tests"
run_pytest "unit tests" -m "not notebooks and not gpu and not slow"

step "2/4 notebook value tests (papermill, quick profile; outputs go to the book cache)"
RASR_BOOK_CACHE="$ROOT/_build/.jupyter_cache" \
  run_pytest "notebook value tests" -m "notebooks and not gpu and not slow"

step "3/4 nbval over the notebooks converted with jupytext"
mkdir -p _build/nbval
shopt -s nullglob
sources=(notebooks/[0-9][0-9]_*.md book/results.md)
[ "${#sources[@]}" -gt 1 ] || { echo "error: no notebooks found in notebooks/" >&2; exit 1; }
for src in "${sources[@]}"; do
  .venv/bin/jupytext --quiet --to ipynb --output "_build/nbval/$(basename "${src%.md}").ipynb" "$src"
done
run_pytest "nbval" --nbval-lax --nbval-current-env -p no:cacheprovider _build/nbval/*.ipynb

step "4/4 book build (warnings are errors)"
.venv/bin/jupyter-book build . -W -n --keep-going --all

step "all stages passed; the book is at $ROOT/_build/html/index.html"
