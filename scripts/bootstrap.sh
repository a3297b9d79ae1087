# Sourced by scripts/demo and scripts/test: make .venv (Python 3.12) and node_modules current.
# Installs only when pyproject.toml or package-lock.json changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

find_python() {
  local candidate
  for candidate in "${ASSAY_PYTHON:-}" "$(command -v pyenv >/dev/null && PYENV_VERSION=3.12.1 pyenv which python3.12 2>/dev/null || true)" python3.12 python3; do
    [ -n "$candidate" ] || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
      command -v "$candidate" || echo "$candidate"
      return 0
    fi
  done
  echo "Assay needs Python 3.12 (pyenv install 3.12.1, or set ASSAY_PYTHON)." >&2
  return 1
}

# This machine's pip config names local indexes that may not exist; its warnings are noise.
pip_install() {
  .venv/bin/python -m pip install --quiet "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

bootstrap() {
  local extras="${1:-}"  # "" for the product, "dev" for the tests
  if [ ! -x .venv/bin/python ]; then
    echo "==> Creating .venv"
    "$(find_python)" -m venv .venv
  fi
  local want have
  want="$(cat pyproject.toml | sha256sum | cut -c1-16)-${extras}"
  have="$(cat .venv/.assay-installed 2>/dev/null || true)"
  if [ "$want" != "$have" ] && ! { [ -z "$extras" ] && [ "$have" = "${want%-}-dev" ]; }; then
    echo "==> Installing Python packages"
    pip_install --upgrade pip
    if [ -n "$extras" ]; then
      pip_install -e ".[${extras}]"
    else
      pip_install -e .
    fi
    echo "$want" > .venv/.assay-installed
  fi
  local lock_sum
  lock_sum="$(sha256sum package-lock.json | cut -c1-16)"
  if [ "$(cat node_modules/.assay-installed 2>/dev/null || true)" != "$lock_sum" ]; then
    echo "==> Installing front-end packages (htmx, idiomorph, Chart.js) from the npm registry"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$lock_sum" > node_modules/.assay-installed
  fi
  export PATH="$ROOT/.venv/bin:$PATH"
}
