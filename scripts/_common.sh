# Shared by reproduce.sh and test.sh (sourced, not run): progress lines and the .venv set-up.
# Expects START (seconds at script start) and the repository root as the working directory.

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
