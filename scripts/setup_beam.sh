#!/usr/bin/env bash
# Creates .venv-beam (Python 3.11), the optional Apache Beam environment, kept apart from .venv:
# installs the core set (requirements-dev.txt: requirements.txt plus the test and lint tools)
# unchanged, then requirements-beam.txt with --no-deps (apache-beam 2.77.0 declares protobuf<7; the
# core needs protobuf 7, see requirements-beam.txt), and ends with a smoke check: a TFRecord round
# trip through a DirectRunner pipeline. Re-runs only repeat the smoke check while the requirements
# files are unchanged. Usage: bash scripts/setup_beam.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv-beam/bin/python ]; then
  echo "setup_beam: creating .venv-beam with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv .venv-beam
fi
echo "*" > .venv-beam/.gitignore  # Keeps git and ruff out of it (as Python 3.13's venv does).
stamp=".venv-beam/.requirements.sha256"
want="$(cat requirements.txt requirements-dev.txt requirements-beam.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup_beam: installing requirements-dev.txt + requirements-beam.txt into .venv-beam"
  .venv-beam/bin/python -m pip install --quiet --upgrade pip
  .venv-beam/bin/python -m pip install --quiet -r requirements-dev.txt
  .venv-beam/bin/python -m pip install --quiet --no-deps -r requirements-beam.txt
  echo "$want" > "$stamp"
fi
echo "setup_beam: smoke check"
TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=3 .venv-beam/bin/python - <<'PY'
import os, tempfile
import apache_beam as beam
import google.protobuf, pyarrow, tensorflow as tf, tf_keras
assert tf.keras.__name__.startswith("tf_keras"), f"tf.keras is {tf.keras.__name__}, not tf_keras"
from apache_beam.testing.util import assert_that, equal_to
with tempfile.TemporaryDirectory() as d:
    with beam.Pipeline() as p:
        _ = p | beam.Create([b"a", b"b"]) | beam.io.WriteToTFRecord(os.path.join(d, "r"))
    with beam.Pipeline() as p:
        assert_that(p | beam.io.ReadFromTFRecord(os.path.join(d, "r*")), equal_to([b"a", b"b"]))
print(f"setup_beam: ok: apache-beam {beam.__version__}, tensorflow {tf.__version__}, "
      f"protobuf {google.protobuf.__version__}, pyarrow {pyarrow.__version__}")
PY
