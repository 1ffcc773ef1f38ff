#!/usr/bin/env bash
# Runs `bazel test //...` offline with the project's virtualenv as the Python toolchain.
#
# Usage: bash scripts/bazel_test.sh [extra `bazel test` flags, e.g. --nocache_test_results]
#
# Environment:
#   SEMANTIC_IDS_PYTHON       interpreter for py_test (default: <repo>/.venv/bin/python)
#   SEMANTIC_IDS_SHARED_DATA  the ml-latest-small copy (default: <repo>/../shared/data/ml-latest-small
#                             when it exists); tests that need it skip otherwise
#   BAZEL_JOBS                parallel actions and tests (default: 2, sized for a 2-core machine)
#
# Installs Debian's bazel-bootstrap (Bazel 4.2.3) with apt-get when `bazel` is missing. Exits
# non-zero when any test fails.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo}"

if ! command -v bazel >/dev/null 2>&1; then
  echo "bazel_test.sh: bazel not found; installing Debian's bazel-bootstrap" >&2
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "bazel_test.sh: apt-get not found; install Bazel 4.2 (bazel-bootstrap) by hand" >&2
    exit 1
  fi
  sudo_cmd=()
  if [[ "$(id -u)" -ne 0 ]]; then
    sudo_cmd=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends bazel-bootstrap >/dev/null
fi

python_bin="${SEMANTIC_IDS_PYTHON:-${repo}/.venv/bin/python}"
case "${python_bin}" in
  /*) ;;
  *) python_bin="${repo}/${python_bin}" ;;
esac
if [[ ! -x "${python_bin}" ]]; then
  echo "bazel_test.sh: Python interpreter not found: ${python_bin}." \
    "Create the virtualenv (python3 -m venv .venv && .venv/bin/pip install -r requirements.txt)" \
    "or set SEMANTIC_IDS_PYTHON." >&2
  exit 1
fi
export SEMANTIC_IDS_PYTHON="${python_bin}"

shared_data="${SEMANTIC_IDS_SHARED_DATA:-${repo}/../shared/data/ml-latest-small}"
if [[ -d "${shared_data}" ]]; then
  export SEMANTIC_IDS_SHARED_DATA="$(cd "${shared_data}" && pwd)"
else
  echo "bazel_test.sh: no shared data at ${shared_data}; tests that need it will skip" >&2
  unset SEMANTIC_IDS_SHARED_DATA
fi

jobs="${BAZEL_JOBS:-2}"
flags=(
  --jobs="${jobs}"
  --local_test_jobs="${jobs}"
  --repo_env=SEMANTIC_IDS_PYTHON="${SEMANTIC_IDS_PYTHON}"
  --test_output=errors
)
if [[ "${CI:-}" == "true" ]]; then
  # Plain, append-only logs for CI consoles.
  flags+=(--color=no --curses=no --show_timestamps)
fi

echo "bazel_test.sh: bazel test //... with ${SEMANTIC_IDS_PYTHON}" >&2
start="$(date +%s)"
status=0
bazel test //... "${flags[@]}" "$@" || status=$?
if [[ "${status}" -eq 4 ]]; then
  # Bazel's "build succeeded but no test targets": nothing under tests/ matches *_test.py yet.
  echo "bazel_test.sh: no tests found under tests/ (nothing to run)" >&2
  status=0
fi
echo "bazel_test.sh: bazel test exited with ${status} after $(( $(date +%s) - start )) s" >&2
exit "${status}"
