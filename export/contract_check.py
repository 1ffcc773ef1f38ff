r"""Serving contract check: the export predicts the same wherever serving code loads it.

Checks, each reported PASS/FAIL:
  1. `fresh_python`: a new interpreter (`python -I`, run from a temporary directory, so no project
     code is importable) that imports only `tensorflow` and `tensorflow_text` loads the export; its
     `serving_default` matches this process's within the tolerance; no project module was imported.
  2. `fresh_python_examples`: in that process, `predict_examples` on the same rows serialized as
     `tf.Example`s matches `serving_default`.
  3. `cpp_loader`: `tensorflow::LoadSavedModel` + `Session::Run` (`export/loader_check.py`) match.
  4. `cpp_bad_input_*`: through the C++ loader, a NaN embedding and a wrong embedding width fail
     with INVALID_ARGUMENT naming the input.

Usage:
  python -m export.contract_check --export_dir=/tmp/export/ranker  # latest version under a base
  python -m export.contract_check --export_dir=/tmp/export/ranker/3 --skip_cpp

Exits 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
from typing import Mapping

import numpy as np
import tensorflow as tf
from absl import app, flags

from export import loader_check, serving_assets, signatures

_PROJECT_PACKAGES = ("export", "model", "features", "trainers", "benchmarks", "tests")

# Runs in a fresh interpreter: only tensorflow, tensorflow_text and numpy.
_FRESH_SCRIPT = r"""
import sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

export_dir, inputs_path, outputs_path = sys.argv[1:4]
data = dict(np.load(inputs_path))
loaded = tf.saved_model.load(export_dir, tags=["serve"])
inputs = {k[len("in/"):]: tf.constant(v) for k, v in data.items() if k.startswith("in/")}
results = {}
for name, value in loaded.signatures["serving_default"](**inputs).items():
  results["serving_default/" + name] = value.numpy()
if "predict_examples" in loaded.signatures:
  blob, ends = data["examples_blob"].tobytes(), data["examples_ends"].tolist()
  examples = [blob[a:b] for a, b in zip([0] + ends[:-1], ends)]
  outputs = loaded.signatures["predict_examples"](examples=tf.constant(examples, tf.string))
  for name, value in outputs.items():
    results["predict_examples/" + name] = value.numpy()
project = [m for m in sys.modules if m.split(".")[0] in sys.argv[4].split(",")]
results["project_modules"] = np.array(project, dtype="S")
np.savez(outputs_path, **results)
"""


@dataclasses.dataclass
class CheckResult:
  name: str
  passed: bool
  detail: str


def resolve_export_dir(path: str) -> str:
  """`path` itself if it holds a saved_model.pb, else its highest numeric version subdirectory."""
  if os.path.exists(os.path.join(path, "saved_model.pb")):
    return path
  versions = [d for d in os.listdir(path) if d.isdigit()] if os.path.isdir(path) else []
  if not versions:
    raise FileNotFoundError(f"No SavedModel (saved_model.pb or numeric version dir) under {path!r}")
  return os.path.join(path, max(versions, key=int))


def serialize_examples(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
  """One serialized `tf.Example` per row of `inputs` (values flattened per row)."""
  batch = len(next(iter(inputs.values())))
  records = []
  for row in range(batch):
    feature = {}
    for name, value in inputs.items():
      flat = np.asarray(value[row]).reshape(-1)
      if flat.dtype.kind in "SOU":
        feature[name] = tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[bytes(v) for v in flat])
        )
      elif flat.dtype.kind == "f":
        feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=flat.tolist()))
      else:
        feature[name] = tf.train.Feature(
          int64_list=tf.train.Int64List(value=flat.astype(int).tolist())
        )
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    records.append(example.SerializeToString())
  return np.array(records, dtype=object)


def _max_diff(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
  if sorted(a) != sorted(b):
    return float("inf")
  return max(float(np.max(np.abs(a[k] - b[k]), initial=0.0)) for k in a)


def _run_fresh_python(export_dir: str, inputs: Mapping[str, np.ndarray], examples: np.ndarray):
  with tempfile.TemporaryDirectory() as work:
    inputs_path, outputs_path = os.path.join(work, "in.npz"), os.path.join(work, "out.npz")
    arrays = {f"in/{k}": v.astype("S") if v.dtype == object else v for k, v in inputs.items()}
    # Serialized protos may end in NUL bytes, which numpy's "S" dtype drops: store them as one blob.
    blob = np.frombuffer(b"".join(examples), dtype=np.uint8)
    ends = np.cumsum([len(e) for e in examples]).astype(np.int64)
    np.savez(inputs_path, examples_blob=blob, examples_ends=ends, **arrays)
    command = [sys.executable, "-I", "-c", _FRESH_SCRIPT, os.path.abspath(export_dir)]
    command += [inputs_path, outputs_path, ",".join(_PROJECT_PACKAGES)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=work, env=env)
    if result.returncode != 0:
      raise RuntimeError(
        f"The fresh process failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
      )
    return dict(np.load(outputs_path))


def run_checks(
  export_dir: str,
  batch_size: int = 8,
  tolerance: float = 1e-5,
  build_dir: str | None = None,
  skip_cpp: bool = False,
  embedding_key: str = "content_embedding",
) -> list[CheckResult]:
  """Runs every check on the SavedModel at `export_dir`; see the module docstring."""
  import tensorflow_text  # noqa: F401  (registers the TF Text ops for this process's load)

  loaded = tf.saved_model.load(export_dir, tags=["serve"])
  serve = loaded.signatures[signatures.SIGNATURE_DEFAULT]
  specs = serve.structured_input_signature[1]
  inputs = serving_assets.sample_inputs(specs, batch_size)
  reference = {
    k: v.numpy() for k, v in serve(**{k: tf.constant(v) for k, v in inputs.items()}).items()
  }
  results = []

  fresh = _run_fresh_python(export_dir, inputs, serialize_examples(inputs))
  fresh_default = {
    k.split("/", 1)[1]: v for k, v in fresh.items() if k.startswith("serving_default/")
  }
  project = [m.decode() for m in fresh["project_modules"]]
  diff = _max_diff(reference, fresh_default)
  results.append(
    CheckResult(
      "fresh_python",
      diff <= tolerance and not project,
      f"max |diff| = {diff:.3g} over {sorted(reference)}; "
      f"project modules imported: {project or 'none'}",
    )
  )
  fresh_examples = {
    k.split("/", 1)[1]: v for k, v in fresh.items() if k.startswith("predict_examples/")
  }
  if fresh_examples:
    diff = _max_diff(fresh_default, fresh_examples)
    results.append(
      CheckResult(
        "fresh_python_examples", diff <= tolerance, f"max |diff| vs serving_default = {diff:.3g}"
      )
    )
  if not skip_cpp:
    results.extend(cpp_checks(export_dir, inputs, reference, tolerance, build_dir, embedding_key))
  return results


def cpp_checks(
  export_dir: str,
  inputs: Mapping[str, np.ndarray],
  reference: Mapping[str, np.ndarray],
  tolerance: float = 1e-5,
  build_dir: str | None = None,
  embedding_key: str = "content_embedding",
) -> list[CheckResult]:
  """The C++ loader checks: `serving_default` matches `reference`; bad embeddings are rejected."""
  try:
    binary = loader_check.build_binary(build_dir)
    run = loader_check.run_signature(binary, export_dir, inputs)
  except loader_check.LoaderCheckError as e:
    return [CheckResult("cpp_loader", False, str(e))]
  if not run.ok:
    return [CheckResult("cpp_loader", False, f"Session::Run failed: {run.status}")]
  diff = _max_diff(reference, run.outputs)
  results = [CheckResult("cpp_loader", diff <= tolerance, f"max |diff| = {diff:.3g}")]
  if embedding_key in inputs:
    bad = inputs[embedding_key].copy()
    bad[0, 0] = np.nan
    wide = np.concatenate([inputs[embedding_key], inputs[embedding_key][:, :1]], axis=1)
    for case, value in (("nan", bad), ("width", wide)):
      status = loader_check.run_signature(
        binary, export_dir, {**inputs, embedding_key: value}
      ).status
      passed = status.startswith("INVALID_ARGUMENT") and embedding_key in status
      results.append(CheckResult(f"cpp_bad_input_{case}", passed, status.splitlines()[0][:160]))
  return results


def format_summary(results: list[CheckResult]) -> str:
  lines = [f"{'PASS' if r.passed else 'FAIL'}  {r.name:<24} {r.detail}" for r in results]
  passed = all(r.passed for r in results)
  lines.append(
    f"{'PASS' if passed else 'FAIL'}: {sum(r.passed for r in results)}/{len(results)} checks passed"
  )
  return "\n".join(lines)


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the CLI flags (only when run as a program, so importing this module defines none)."""
  flags.DEFINE_string(
    "export_dir", None, "A SavedModel directory, or a base dir of numeric versions."
  )
  flags.DEFINE_integer("batch_size", 8, "Rows in the sample request.")
  flags.DEFINE_float("tolerance", 1e-5, "Largest allowed absolute difference between outputs.")
  flags.DEFINE_string(
    "build_dir", None, "Cache for the compiled C++ loader (default: ~/.cache/...)."
  )
  flags.DEFINE_bool("skip_cpp", False, "Skip the C++ loader checks (e.g. without g++).")
  flags.DEFINE_string("embedding_key", "content_embedding", "The content-embedding input name.")


def main(argv):
  del argv
  if not FLAGS.export_dir:
    raise app.UsageError("--export_dir is required")
  if FLAGS.batch_size < 1:
    raise app.UsageError(f"--batch_size must be positive. Received: {FLAGS.batch_size}")
  try:
    export_dir = resolve_export_dir(FLAGS.export_dir)
  except FileNotFoundError as e:
    raise app.UsageError(str(e))
  print(f"Checking {export_dir}", flush=True)
  results = run_checks(
    export_dir,
    batch_size=FLAGS.batch_size,
    tolerance=FLAGS.tolerance,
    build_dir=FLAGS.build_dir,
    skip_cpp=FLAGS.skip_cpp,
    embedding_key=FLAGS.embedding_key,
  )
  print(format_summary(results))
  sys.exit(0 if all(r.passed for r in results) else 1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
