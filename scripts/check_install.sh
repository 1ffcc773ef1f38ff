#!/usr/bin/env bash
# Installs the project with `pip install .` into a fresh virtualenv (outside the repository) and
# runs the README's "use the layers in your own TFRS model" example there, from another folder:
# what a user who pip-installs the library gets. Usage: bash scripts/check_install.sh
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
PYTHON="${PYTHON:-python3}"
"${PYTHON}" -m venv "${work}/venv"
"${work}/venv/bin/python" -m pip install --quiet --upgrade pip
# A copy of the sources, so the build writes nothing into the repository.
mkdir "${work}/src"
cp -r "${repo}/features" "${repo}/model" "${repo}/trainers" "${repo}/export" "${work}/src/"
cp "${repo}/pyproject.toml" "${repo}/README.md" "${repo}/requirements.txt" "${work}/src/"
"${work}/venv/bin/python" -m pip install --quiet "${work}/src"
"${work}/venv/bin/python" - "${repo}/README.md" > "${work}/example.py" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
match = re.search(r"<!-- readme-example: own-tfrs-model -->\s*```python\n(.*?)```", text, re.S)
print(match.group(1))
PY
cd "${work}"
CUDA_VISIBLE_DEVICES="" "${work}/venv/bin/python" example.py
echo "check_install.sh: pip install . in a fresh virtualenv and the README example: OK"
