#!/usr/bin/env bash
# Sets everything up, then runs the end-to-end job on the built-in synthetic data.
# Extra arguments go to the job, e.g. --output_dir=runs/mine or --dataset=movielens.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m trainers.pipeline "$@"
