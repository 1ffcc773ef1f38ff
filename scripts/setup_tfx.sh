#!/usr/bin/env bash
# Creates .venv-tfx (Python 3.11), the optional TFX environment, kept apart from .venv: installs the
# core set (requirements-dev.txt, i.e. requirements.txt plus the test and lint tools; requirements.txt
# alone where there is no requirements-dev.txt) together with requirements-tfx.txt in one resolve,
# requirements-tfx.txt's pins replacing the core ones; then requirements-tfx-nodeps.txt with --no-deps
# (TFX 1.21's own pins cannot be met here); and ends with an import smoke check. Re-runs only repeat
# the smoke check while the requirements files are unchanged. Usage: bash scripts/setup_tfx.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv-tfx/bin/python ]; then
  echo "setup_tfx: creating .venv-tfx with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv .venv-tfx
fi
core_req=requirements-dev.txt
[ -f "$core_req" ] || core_req=requirements.txt
stamp=".venv-tfx/.requirements.sha256"
want="$(cat requirements.txt "$core_req" requirements-tfx.txt requirements-tfx-nodeps.txt \
  | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup_tfx: installing $core_req + the TFX set into .venv-tfx (a few minutes the first time)"
  .venv-tfx/bin/python -m pip install --quiet --upgrade pip
  core="$(mktemp)"
  trap 'rm -f "$core"' EXIT
  # The core set with its -r includes inlined, minus the packages that requirements-tfx.txt pins.
  .venv-tfx/bin/python - "$core_req" requirements-tfx.txt > "$core" <<'PY'
import os, re, sys
def name(line):
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[|==|<|>|!|~|;|$)", line)
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else None
override = {name(line) for line in open(sys.argv[2])} - {None}
def emit(path):
    for line in open(path):
        include = re.match(r"\s*(-r|--requirement)[\s=]+(\S+)", line)
        if include:
            emit(os.path.join(os.path.dirname(path), include.group(2)))
        elif name(line) not in override:
            sys.stdout.write(line)
emit(sys.argv[1])
PY
  .venv-tfx/bin/python -m pip install --quiet -r "$core" -r requirements-tfx.txt
  .venv-tfx/bin/python -m pip install --quiet --no-deps -r requirements-tfx-nodeps.txt
  echo "$want" > "$stamp"
fi
echo "setup_tfx: smoke check"
TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=3 .venv-tfx/bin/python - <<'PY'
import importlib, importlib.util, os, sys, tempfile, types
# Not `from tfx import v1` (it imports google-cloud-aiplatform and TFDV, neither installed).
for mod in ["tensorflow", "tf_keras", "tensorflow_recommenders", "tensorflow_text", "apache_beam",
            "ml_metadata.metadata_store", "tfx_bsl.public.tfxio", "tensorflow_transform",
            "tfx.dsl.component.experimental.decorators", "tfx.dsl.component.experimental.annotations",
            "tfx.types.artifact", "tfx.types.standard_artifacts", "tfx.orchestration.pipeline",
            "tfx.orchestration.metadata", "tfx.orchestration.local.local_dag_runner",
            "tfx.components.example_gen.import_example_gen.component",
            "tfx.components.example_gen.csv_example_gen.component",
            "tfx.components.pusher.component"]:
    importlib.import_module(mod)
import tensorflow as tf, tf_keras
assert tf.keras.__name__.startswith("tf_keras"), f"tf.keras is {tf.keras.__name__}, not tf_keras"
assert importlib.util.find_spec("tensorflow_data_validation") is None
# tfx.components.trainer.executor imports TFDV at module level (used for a `statistics` input
# only): it imports with a placeholder module.
placeholder = types.ModuleType("tensorflow_data_validation")
placeholder.DatasetListView = type("DatasetListView", (), {})
sys.modules["tensorflow_data_validation"] = placeholder
importlib.import_module("tfx.components.trainer.component")
del sys.modules["tensorflow_data_validation"]
# ML Metadata 1.17.1 (declares protobuf<5) with this protobuf: a SQLite store round trip.
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata
import google.protobuf, tfx.version
with tempfile.TemporaryDirectory() as d:
    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(os.path.join(d, "m.sqlite")))
    t = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="Smoke"))
    [a] = store.put_artifacts([metadata_store_pb2.Artifact(type_id=t, uri="/smoke")])
    assert store.get_artifacts_by_id([a])[0].uri == "/smoke"
print(f"setup_tfx: ok: tfx {tfx.version.__version__}, tensorflow {tf.__version__}, "
      f"tf.keras = tf_keras {tf_keras.__version__}, protobuf {google.protobuf.__version__}")
PY
