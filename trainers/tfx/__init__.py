"""TFX integration: the `SemanticIdGen` component, a ranker Trainer and an end-to-end pipeline.

The orchestration layer above `export/` (it writes the serving export), so it may import every
package of the project and none of them imports it (`tests/project/layering_test.py`). It needs the
optional TFX environment: `bash scripts/setup_tfx.sh` builds `.venv-tfx`; run everything here with
`.venv-tfx/bin/python`. Importing it elsewhere fails with an ImportError that says so.

TFX 1.21 runs here without TensorFlow Data Validation (no matching release for this platform; see
docs/tfx_install_findings.md), so this package puts a stand-in module for it in place before the
first TFX import (`tfdv_stand_in`), imports TFX's DSL and components from their modules (never
`from tfx import v1`) and uses no component that needs TFDV (StatisticsGen, SchemaGen, Transform).
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from features import keras_env  # noqa: E402
from trainers.tfx import tfdv_stand_in  # noqa: E402

keras_env.configure()

try:
  import tfx  # noqa: E402, F401
except ImportError as error:
  raise ImportError(
    "trainers.tfx needs the optional TFX environment, which is not installed in this Python "
    f"({error}). Run `bash scripts/setup_tfx.sh` and use `.venv-tfx/bin/python`."
  ) from error

tfdv_stand_in.install()  # before any module of this package imports TFX's Trainer

# The public modules (import them as `from trainers.tfx import <module>`).
__all__ = [
  "artifact_types",
  "component",
  "examples_io",
  "executor",
  "metadata_report",
  "pipeline",
  "ranker_trainer",
  "tfdv_stand_in",
  "trainer_module",
]
