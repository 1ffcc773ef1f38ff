r"""Serving contract check: the export predicts the same wherever serving code loads it, with core
TF ops only.

Checks, each reported PASS/FAIL:
  1. `core_ops_only`: every op of the SavedModel's graphs is a core TF op (`tf.raw_ops`) or one of
     its own functions: no TF Text (or other custom) kernel is needed to load it.
  2. `fresh_python`: a new interpreter (`python -I`, run from a temporary directory, so no project
     code is importable) that imports only `tensorflow` (and numpy) loads the export; its
     `serving_default` matches this process's within the tolerance; no project module and no
     `tensorflow_text` module was imported.
  3. `fresh_python_examples`: in that process, `predict_examples` on the same rows serialized as
     `tf.Example`s matches `serving_default`.
  4. `fresh_python_codes` (exports with `predict_codes`): in that process, `predict_codes` fed the
     SIDs of the same rows (from this process's `semantic_id`) matches this process's
     `serving_default` on the raw rows.
  5. `cpp_loader`: `tensorflow::LoadSavedModel` + `Session::Run` (`export/loader_check.py`), with no
     op library loaded and no TF Text library mapped into the process, matches `serving_default`;
     `cpp_codes` the same for `predict_codes`.
  6. `shared_history` (exports with history inputs; in this process): a request of one user (every
     row repeats row 0's history) gives the same predictions as the per-row path (the same rows
     plus one row with another history, so no row is shared), and the same again with the
     history sent once (one row for all candidates), through `serving_default` and `predict_codes`.
  7. `cpp_bad_input_*`: through the C++ loader, a NaN embedding and a wrong embedding width fail
     with INVALID_ARGUMENT naming the input; through `predict_codes`, a code out of range, a wrong
     SID length, a NaN history mask fail naming the input, and int64 codes fail with
     INVALID_ARGUMENT from the runtime (which names the argument's position, before any op runs).

Usage:
  python -m export.contract_check --export_dir=/tmp/export/ranker  # latest version under a base
  python -m export.contract_check --export_dir=/tmp/export/ranker/3 --skip_cpp

Exits 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from typing import Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf
from absl import app, flags
from tensorflow.core.protobuf import saved_model_pb2

from export import loader_check, serving_assets, signatures
from features import feature_spec
from trainers import cli

_PROJECT_PACKAGES = ("export", "model", "features", "trainers", "benchmarks", "tests")
# Op types of TF Text's kernels look like `SentencepieceOp`, `TFText>RoundRobinTrim`, `WordpieceOp`.
TF_TEXT_OP_PREFIXES = ("Sentencepiece", "TFText>", "Wordpiece", "Normalize", "FastWordpiece")
_SIGNATURES_WITH_INPUTS = (signatures.SIGNATURE_DEFAULT, signatures.SIGNATURE_CODES)

# Runs in a fresh interpreter: only tensorflow and numpy. argv: a JSON list of jobs
# {"export_dir", "inputs", "outputs"}, the project packages, the summary path.
_FRESH_SCRIPT = r"""
import json
import sys
import numpy as np
import tensorflow as tf

jobs, packages, summary_path = json.loads(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
for job in jobs:
  data = dict(np.load(job["inputs"]))
  loaded = tf.saved_model.load(job["export_dir"], tags=["serve"])
  results = {}
  for signature in ("serving_default", "predict_codes"):
    prefix = "in:" + signature + "/"
    inputs = {k[len(prefix):]: tf.constant(v) for k, v in data.items() if k.startswith(prefix)}
    if inputs and signature in loaded.signatures:
      for name, value in loaded.signatures[signature](**inputs).items():
        results[signature + "/" + name] = value.numpy()
  if "predict_examples" in loaded.signatures:
    blob, ends = data["examples_blob"].tobytes(), data["examples_ends"].tolist()
    examples = [blob[a:b] for a, b in zip([0] + ends[:-1], ends)]
    outputs = loaded.signatures["predict_examples"](examples=tf.constant(examples, tf.string))
    for name, value in outputs.items():
      results["predict_examples/" + name] = value.numpy()
  np.savez(job["outputs"], **results)
summary = {
  "project_modules": sorted(m for m in sys.modules if m.split(".")[0] in packages),
  "tf_text_modules": sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow_text"),
}
with open(summary_path, "w") as f:
  json.dump(summary, f)
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


def _op_types(export_dir: str) -> Iterator[str]:
  """Every op type of a SavedModel: its graphs and every function of their libraries."""
  saved_model = saved_model_pb2.SavedModel()
  with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
    saved_model.ParseFromString(f.read())
  for meta_graph in saved_model.meta_graphs:
    functions = {f.signature.name for f in meta_graph.graph_def.library.function}
    yield from (node.op for node in meta_graph.graph_def.node if node.op not in functions)
    for function in meta_graph.graph_def.library.function:
      yield from (node.op for node in function.node_def if node.op not in functions)


def non_core_ops(export_dir: str) -> set[str]:
  """Op types of the export that are neither core TF ops (`tf.raw_ops`) nor its own functions, and
  any op type that looks like a TF Text kernel."""
  core = set(dir(tf.raw_ops))
  return {
    op for op in _op_types(export_dir) if op not in core or op.startswith(TF_TEXT_OP_PREFIXES)
  }


def _write_inputs(path: str, inputs: Mapping[str, Mapping[str, np.ndarray]], examples) -> None:
  """inputs: signature -> input name -> array; examples: serialized `tf.Example`s."""
  arrays = {
    f"in:{signature}/{k}": v.astype("S") if v.dtype == object else v
    for signature, named in inputs.items()
    for k, v in named.items()
  }
  # Serialized protos may end in NUL bytes, which numpy's "S" dtype drops: store them as one blob.
  blob = np.frombuffer(b"".join(examples), dtype=np.uint8)
  ends = np.cumsum([len(e) for e in examples]).astype(np.int64)
  np.savez(path, examples_blob=blob, examples_ends=ends, **arrays)


def _run_fresh_python(jobs: Sequence[tuple[str, Mapping, np.ndarray]]):
  """Runs every (export_dir, signature inputs, examples) job in ONE fresh interpreter.

  Returns:
    (one dict "signature/output" -> array per job, {"project_modules", "tf_text_modules"}).
  """
  with tempfile.TemporaryDirectory() as work:
    specs = []
    for i, (export_dir, inputs, examples) in enumerate(jobs):
      inputs_path = os.path.join(work, f"in_{i}.npz")
      _write_inputs(inputs_path, inputs, examples)
      outputs = os.path.join(work, f"out_{i}.npz")
      specs.append(
        {"export_dir": os.path.abspath(export_dir), "inputs": inputs_path, "outputs": outputs}
      )
    summary_path = os.path.join(work, "summary.json")
    command = [sys.executable, "-I", "-c", _FRESH_SCRIPT, json.dumps(specs)]
    command += [",".join(_PROJECT_PACKAGES), summary_path]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=work, env=env)
    if result.returncode != 0:
      raise RuntimeError(
        f"The fresh process failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
      )
    with open(summary_path) as f:
      summary = json.load(f)
    return [dict(np.load(spec["outputs"])) for spec in specs], summary


@dataclasses.dataclass
class _Reference:
  """What this process computes for one export: the sample requests and their outputs."""

  inputs: dict[str, dict[str, np.ndarray]]  # signature -> input name -> array
  outputs: dict[str, np.ndarray]  # serving_default's outputs
  shared_history: dict[str, float]  # signature -> max |diff| of check 6 (empty: no history)


def _reference(export_dir: str, batch_size: int) -> _Reference:
  loaded = tf.saved_model.load(export_dir, tags=["serve"])
  serve = loaded.signatures[signatures.SIGNATURE_DEFAULT]
  inputs = serving_assets.sample_inputs(serve.structured_input_signature[1], batch_size)
  outputs = serve(**{k: tf.constant(v) for k, v in inputs.items()})
  requests = {signatures.SIGNATURE_DEFAULT: inputs}
  if signatures.SIGNATURE_CODES in loaded.signatures:
    requests[signatures.SIGNATURE_CODES] = serving_assets.codes_inputs(loaded, inputs)
  shared = {sig: _shared_history_diff(loaded.signatures[sig], req) for sig, req in requests.items()}
  shared = {sig: diff for sig, diff in shared.items() if diff is not None}
  return _Reference(requests, {k: v.numpy() for k, v in outputs.items()}, shared)


def _outputs(results: Mapping[str, np.ndarray], signature: str) -> dict[str, np.ndarray]:
  prefix = signature + "/"
  return {k[len(prefix) :]: v for k, v in results.items() if k.startswith(prefix)}


def check_exports(
  export_dirs: Sequence[str],
  batch_size: int = 8,
  tolerance: float = 1e-5,
  build_dir: str | None = None,
  skip_cpp: bool = False,
  embedding_key: str = "content_embedding",
) -> dict[str, list[CheckResult]]:
  """`run_checks` for several exports, with one fresh interpreter for all of them."""
  references = {d: _reference(d, batch_size) for d in export_dirs}
  jobs = [
    (d, ref.inputs, serialize_examples(ref.inputs[signatures.SIGNATURE_DEFAULT]))
    for d, ref in references.items()
  ]
  try:
    fresh, summary = _run_fresh_python(jobs)
    failure = None
  except RuntimeError as e:  # e.g. "Op type not registered": the export needs a custom kernel.
    fresh, summary, failure = [{} for _ in jobs], {}, str(e)[-1500:]
  out = {}
  for (export_dir, ref), results in zip(references.items(), fresh):
    checks = [_core_ops_check(export_dir)]
    if failure is None:
      checks += _fresh_checks(ref, results, summary, tolerance)
    else:
      checks.append(CheckResult("fresh_python", False, failure))
    shared = _shared_history_check(ref, tolerance)
    checks += [shared] if shared is not None else []
    if not skip_cpp:
      checks += cpp_checks(export_dir, ref.inputs, ref.outputs, tolerance, build_dir, embedding_key)
    out[export_dir] = checks
  return out


def run_checks(
  export_dir: str,
  batch_size: int = 8,
  tolerance: float = 1e-5,
  build_dir: str | None = None,
  skip_cpp: bool = False,
  embedding_key: str = "content_embedding",
) -> list[CheckResult]:
  """Runs every check on the SavedModel at `export_dir`; see the module docstring."""
  return check_exports([export_dir], batch_size, tolerance, build_dir, skip_cpp, embedding_key)[
    export_dir
  ]


def _shared_history_diff(serve, inputs: Mapping[str, np.ndarray]) -> float | None:
  """Check 6 for one signature: the largest difference from the per-row path (None: no history)."""
  shared = [k for k in inputs if k.startswith(feature_spec.HISTORY_PREFIX)]
  if not shared:
    return None
  one_user = {k: np.repeat(v[:1], len(v), 0) if k in shared else v for k, v in inputs.items()}
  # One more row with another row's history: no history is shared, every row runs on its own.
  per_row = {k: np.concatenate([one_user[k], v[1:2]]) for k, v in inputs.items()}
  once = {k: v[:1] if k in shared else v for k, v in one_user.items()}

  def run(request, rows=None):
    outputs = serve(**{k: tf.constant(v) for k, v in request.items()})
    return {k: v.numpy()[:rows] for k, v in outputs.items()}

  reference = run(per_row, len(inputs[shared[0]]))
  return max(_max_diff(reference, run(one_user)), _max_diff(reference, run(once)))


def _shared_history_check(ref: _Reference, tolerance: float) -> CheckResult | None:
  """Check 6 (None for an export without history inputs)."""
  if not ref.shared_history:
    return None
  return CheckResult(
    "shared_history",
    max(ref.shared_history.values()) <= tolerance,
    "max |diff| vs the per-row path, history repeated and sent once: "
    + ", ".join(f"{k} {v:.3g}" for k, v in ref.shared_history.items()),
  )


def _core_ops_check(export_dir: str) -> CheckResult:
  extra = non_core_ops(export_dir)
  count = len(set(_op_types(export_dir)))
  return CheckResult(
    "core_ops_only",
    not extra,
    f"{count} op types, non-core: {sorted(extra) if extra else 'none'}",
  )


def _fresh_checks(ref: _Reference, results, summary, tolerance: float) -> list[CheckResult]:
  project, tf_text = summary["project_modules"], summary["tf_text_modules"]
  default = _outputs(results, signatures.SIGNATURE_DEFAULT)
  diff = _max_diff(ref.outputs, default)
  checks = [
    CheckResult(
      "fresh_python",
      diff <= tolerance and not project and not tf_text,
      f"max |diff| = {diff:.3g} over {sorted(ref.outputs)}; "
      f"project modules imported: {project or 'none'}; TF Text modules: {tf_text or 'none'}",
    )
  ]
  examples = _outputs(results, signatures.SIGNATURE_EXAMPLES)
  if examples:
    diff = _max_diff(default, examples)
    checks.append(
      CheckResult(
        "fresh_python_examples", diff <= tolerance, f"max |diff| vs serving_default = {diff:.3g}"
      )
    )
  if signatures.SIGNATURE_CODES in ref.inputs:
    diff = _max_diff(ref.outputs, _outputs(results, signatures.SIGNATURE_CODES))
    checks.append(
      CheckResult(
        "fresh_python_codes",
        diff <= tolerance,
        f"max |diff| vs this process's serving_default on the raw rows = {diff:.3g}",
      )
    )
  return checks


def _bad_requests(
  inputs: Mapping[str, Mapping[str, np.ndarray]], embedding_key: str
) -> list[tuple[str, str, dict[str, np.ndarray], str]]:
  """(check name, signature, bad inputs, text the status must hold) of every bad request."""
  bad = []
  default = inputs[signatures.SIGNATURE_DEFAULT]
  if embedding_key in default:
    nan = default[embedding_key].copy()
    nan[0, 0] = np.nan
    wide = np.concatenate([default[embedding_key], default[embedding_key][:, :1]], axis=1)
    for case, value in (("nan", nan), ("width", wide)):
      request = {**default, embedding_key: value}
      bad.append((f"cpp_bad_input_{case}", signatures.SIGNATURE_DEFAULT, request, embedding_key))
  codes, key = inputs.get(signatures.SIGNATURE_CODES), feature_spec.CODES
  if codes is not None and key in codes:
    out_of_range = codes[key].copy()
    out_of_range[0, -1] = np.iinfo(np.int32).max
    longer = np.concatenate([codes[key], codes[key][:, :1]], axis=1)
    for case, value, expected in (
      ("range", out_of_range, key),
      ("length", longer, key),
      ("dtype", codes[key].astype(np.int64), "int32"),  # The runtime's message: arg position.
    ):
      bad.append(
        (f"cpp_bad_codes_{case}", signatures.SIGNATURE_CODES, {**codes, key: value}, expected)
      )
    mask = feature_spec.HISTORY_MASK
    if mask in codes and codes[mask].size:
      nan = codes[mask].copy()
      nan[0, 0] = np.nan
      bad.append(("cpp_bad_codes_nan_mask", signatures.SIGNATURE_CODES, {**codes, mask: nan}, mask))
  return bad


def cpp_checks(
  export_dir: str,
  inputs: Mapping[str, np.ndarray] | Mapping[str, Mapping[str, np.ndarray]],
  reference: Mapping[str, np.ndarray],
  tolerance: float = 1e-5,
  build_dir: str | None = None,
  embedding_key: str = "content_embedding",
) -> list[CheckResult]:
  """The C++ loader checks (one program run, no op library loaded): every signature with inputs
  matches `reference` (serving_default's outputs); bad requests are rejected.

  Args:
    export_dir: The SavedModel.
    inputs: `serving_default`'s inputs, or signature name -> inputs (as `check_exports` makes).
    reference: `serving_default`'s outputs on those inputs.
  """
  if signatures.SIGNATURE_DEFAULT not in inputs:
    inputs = {signatures.SIGNATURE_DEFAULT: dict(inputs)}
  bad = _bad_requests(inputs, embedding_key)
  requests = list(inputs.items()) + [(signature, value) for _, signature, value, _ in bad]
  try:
    binary = loader_check.build_binary(build_dir)
    runs = loader_check.run_signatures(binary, export_dir, requests)
  except loader_check.LoaderCheckError as e:
    return [CheckResult("cpp_loader", False, str(e)[-2000:])]
  clean = runs[0].libraries_loaded == 0 and not runs[0].tf_text_mapped
  where = (
    f"op libraries loaded: {runs[0].libraries_loaded}, "
    f"TF Text libraries mapped: {list(runs[0].tf_text_mapped) or 'none'}"
  )
  results = []
  for (signature, _), run in zip(inputs.items(), runs):
    name = "cpp_loader" if signature == signatures.SIGNATURE_DEFAULT else "cpp_codes"
    if not run.ok:
      results.append(CheckResult(name, False, f"Session::Run failed: {run.status[:300]}"))
      continue
    diff = _max_diff(reference, run.outputs)
    results.append(
      CheckResult(name, diff <= tolerance and clean, f"max |diff| = {diff:.3g}; {where}")
    )
  for (name, _, _, expected), run in zip(bad, runs[len(inputs) :]):
    passed = run.status.startswith("INVALID_ARGUMENT") and expected in run.status
    results.append(CheckResult(name, passed, run.status[:160]))
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
  cli.run(main)
