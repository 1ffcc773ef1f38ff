r"""Serving latency and export size: SPM-SID export vs hash-ID export, measured in the same run.

For each scheme the trained ranker is exported with export/export_model.py, the export is loaded
with `tf.saved_model.load` and its `serving_default` is called with one user's request of 1, 100
and 1,000 candidates. The schemes are timed in alternation (round robin per repetition), so drift
on a shared machine hits both alike. Reports median and p99 per request, the SPM/hash ratio
(target: <= 1.3 at 100 and 1,000 candidates) and each export's size on disk.

Usage (trains the two rankers with trainers.train_ranker when their dirs are not given):
  nice python -m benchmarks.serving_latency --output_dir=runs/serving_latency
  nice python -m benchmarks.serving_latency --spm_ranker_dir=runs/spm --hash_ranker_dir=runs/hash \
      --output_dir=runs/serving_latency

Writes serving_latency.json, serving_latency.md and serving_latency.png under --output_dir.
"""

import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

import matplotlib  # noqa: E402

from export import export_model, serving_assets  # noqa: I001  (sets TF_USE_LEGACY_KERAS first)
from trainers import job_flags, ranker_training  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tqdm  # noqa: E402
from absl import app, flags  # noqa: E402

SCHEMES = ("hash", "spm")
TARGET_RATIO = 1.3

FLAGS = flags.FLAGS
job_flags.define_output_dir(None, "Where the JSON, markdown and PNG go.")
flags.DEFINE_string("spm_ranker_dir", None, "A trained SPM-SID ranker (trainers.train_ranker).")
flags.DEFINE_string("hash_ranker_dir", None, "A trained hash-ID ranker (trainers.train_ranker).")
flags.DEFINE_string(
  "train_args",
  "--epochs=1 --synthetic_items=2000 --synthetic_users=500 --synthetic_interactions=50000 "
  "--table_rows=1000",
  "Extra trainers.train_ranker flags used when a ranker dir is not given.",
)
flags.DEFINE_list("candidates", ["1", "100", "1000"], "Candidates per request.")
flags.DEFINE_integer("repetitions", 200, "Timed requests per scheme and size.")
flags.DEFINE_integer("warmup", 20, "Untimed requests per scheme and size first.")
flags.DEFINE_integer("seed", 0, "Seed of the request contents.")


def train_ranker(scheme: str, output_dir: str) -> str:
  """Runs trainers.train_ranker for `scheme` into `output_dir` (reused if already trained)."""
  if export_model.is_trained_ranker(output_dir):
    return output_dir
  command = [sys.executable, "-m", "trainers.train_ranker", f"--item_representation={scheme}"]
  command += [f"--output_dir={output_dir}", *shlex.split(FLAGS.train_args)]
  print(f"training the {scheme} ranker: {' '.join(command)}", flush=True)
  subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
  return output_dir


def time_requests(functions, requests, repetitions: int, warmup: int, output: str = "ctr"):
  """Round-robin timing: per repetition, one call of each function. Returns name -> ms array."""
  times = {name: [] for name in functions}
  for step in tqdm.trange(warmup + repetitions, leave=False, desc="requests"):
    for name, function in functions.items():
      start = time.perf_counter()
      outputs = function(**requests[name])
      outputs[output].numpy()
      if step >= warmup:
        times[name].append((time.perf_counter() - start) * 1e3)
  return {name: np.asarray(values) for name, values in times.items()}


def one_user_request(specs, candidates: int, seed: int):
  """`candidates` rows of one user (same id and history), random candidate embeddings."""
  inputs = serving_assets.sample_inputs(specs, candidates, seed=seed)
  for name, value in inputs.items():
    if name == "user_id" or name.startswith("history"):
      inputs[name] = np.repeat(value[2:3] if len(value) > 2 else value[:1], candidates, axis=0)
  return {name: tf.constant(value) for name, value in inputs.items()}


def semantic_id_share(ranker_dir: str, serve) -> dict:
  """Time of the SPM ranker's own `semantic_id` signature (no row limit) alone on the rows one
  request encodes: each candidate's embedding plus its copy of the user's H history embeddings
  (the ranker encodes every history row of every candidate)."""
  specs = serve.structured_input_signature[1]
  history = specs.get("history_content_embedding")
  rows_per_candidate = 1 + (int(history.shape[1]) if history is not None else 0)
  encoder = getattr(
    ranker_training.load_ranker(ranker_dir).item_representation, "sid_encoder", None
  )
  if encoder is None or "content_embedding" not in specs:
    return {}
  semantic_id = tf.function(lambda content_embedding: {"codes": encoder(content_embedding)})
  dim = int(specs["content_embedding"].shape[1])
  shares = {}
  for candidates in (int(c) for c in FLAGS.candidates):
    rows = candidates * rows_per_candidate
    request = {"content_embedding": tf.random.normal([rows, dim], seed=FLAGS.seed)}
    times = time_requests(
      {"semantic_id": semantic_id},
      {"semantic_id": request},
      FLAGS.repetitions,
      FLAGS.warmup,
      output="codes",
    )["semantic_id"]
    shares[candidates] = {"rows": rows, "median_ms": float(np.median(times))}
  return shares


def run(output_dir: str) -> dict:
  work = os.path.join(output_dir, "work")
  ranker_dirs = {
    "spm": FLAGS.spm_ranker_dir or train_ranker("spm", os.path.join(work, "ranker_spm")),
    "hash": FLAGS.hash_ranker_dir or train_ranker("hash", os.path.join(work, "ranker_hash")),
  }
  exports, functions, sizes = {}, {}, {}
  for scheme in SCHEMES:
    base = os.path.join(work, f"export_{scheme}")
    exports[scheme] = export_model.export(ranker_dirs[scheme], base)
    sizes[scheme] = export_model.directory_size(exports[scheme])
    functions[scheme] = tf.saved_model.load(exports[scheme]).signatures["serving_default"]
  results = {scheme: {} for scheme in SCHEMES}
  for candidates in (int(c) for c in FLAGS.candidates):
    requests = {
      scheme: one_user_request(
        functions[scheme].structured_input_signature[1], candidates, FLAGS.seed
      )
      for scheme in SCHEMES
    }
    times = time_requests(functions, requests, FLAGS.repetitions, FLAGS.warmup)
    for scheme in SCHEMES:
      results[scheme][candidates] = {
        "median_ms": float(np.median(times[scheme])),
        "p99_ms": float(np.percentile(times[scheme], 99)),
        "mean_ms": float(np.mean(times[scheme])),
      }
  results["spm_semantic_id"] = semantic_id_share(ranker_dirs["spm"], functions["spm"])
  ratios = {
    candidates: {
      stat: results["spm"][candidates][stat] / results["hash"][candidates][stat]
      for stat in ("median_ms", "p99_ms")
    }
    for candidates in results["spm"]
  }
  return {
    "ranker_dirs": ranker_dirs,
    "exports": exports,
    "export_size_bytes": sizes,
    "latency": results,
    "spm_over_hash": ratios,
    "target_ratio": TARGET_RATIO,
    "meets_target": all(r["median_ms"] <= TARGET_RATIO for c, r in ratios.items() if c >= 100),
    "repetitions": FLAGS.repetitions,
    "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "tf": tf.__version__},
    "method": "tf.saved_model.load + serving_default from Python, one user per request, "
    "schemes timed round robin",
  }


def markdown(result: dict) -> str:
  lines = [
    "# Serving latency: SPM-SID vs hash-ID export",
    "",
    f"{result['method']}; {result['repetitions']} timed requests per cell; "
    f"{result['machine']['cpus']} CPUs, TF {result['machine']['tf']}.",
    "",
    "| candidates | hash median ms | hash p99 ms | SPM median ms | SPM p99 ms | SPM/hash median "
    "| SPM/hash p99 |",
    "|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for candidates, ratio in result["spm_over_hash"].items():
    h, s = result["latency"]["hash"][candidates], result["latency"]["spm"][candidates]
    lines.append(
      f"| {candidates} | {h['median_ms']:.2f} | {h['p99_ms']:.2f} | {s['median_ms']:.2f} | "
      f"{s['p99_ms']:.2f} | {ratio['median_ms']:.2f}x | {ratio['p99_ms']:.2f}x |"
    )
  share = result["latency"].get("spm_semantic_id", {})
  if share:
    lines += [
      "",
      "SPM ranker's `semantic_id` signature alone on the rows one request encodes "
      "(candidates x (1 + history length)):",
      "",
    ]
    for candidates, cell in share.items():
      lines.append(f"- {candidates} candidates: {cell['rows']} rows, {cell['median_ms']:.2f} ms")
  verdict = "met" if result["meets_target"] else "NOT met"
  lines += [
    "",
    f"Target SPM/hash median <= {result['target_ratio']}x at >= 100 candidates: {verdict}.",
    "",
    "| scheme | export size on disk |",
    "|---|---:|",
  ]
  for scheme, size in result["export_size_bytes"].items():
    lines.append(f"| {scheme} | {size / 1e6:.2f} MB |")
  return "\n".join(lines) + "\n"


def plot(result: dict, path: str) -> None:
  sizes = list(result["spm_over_hash"])
  x = np.arange(len(sizes))
  fig, ax = plt.subplots(figsize=(6, 4))
  for offset, scheme in ((-0.2, "hash"), (0.2, "spm")):
    medians = [result["latency"][scheme][c]["median_ms"] for c in sizes]
    p99 = [result["latency"][scheme][c]["p99_ms"] for c in sizes]
    ax.bar(x + offset, medians, width=0.4, label=f"{scheme} median")
    ax.scatter(x + offset, p99, marker="_", s=200, color="black")
  ax.set_xticks(x, [str(c) for c in sizes])
  ax.set_xlabel("candidates per request")
  ax.set_ylabel("latency per request (ms); dash = p99")
  ax.set_yscale("log")
  ax.set_title("serving_default latency: SPM-SID vs hash-ID")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _atomic(path: str, write) -> None:
  fd, temp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=os.path.splitext(path)[1])
  os.close(fd)
  write(temp)
  os.replace(temp, path)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.output_dir:
    raise app.UsageError("--output_dir is required")
  if FLAGS.repetitions < 1 or FLAGS.warmup < 0:
    raise app.UsageError(
      f"--repetitions must be positive and --warmup non-negative. Received: "
      f"{FLAGS.repetitions}, {FLAGS.warmup}"
    )
  for name in ("spm_ranker_dir", "hash_ranker_dir"):
    if FLAGS[name].value and not os.path.isdir(FLAGS[name].value):
      raise app.UsageError(f"--{name}={FLAGS[name].value!r} is not a directory")
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  result = run(FLAGS.output_dir)
  base = os.path.join(FLAGS.output_dir, "serving_latency")
  text = markdown(result)

  def write_text(content):
    return lambda p: open(p, "w").write(content)

  _atomic(base + ".json", write_text(json.dumps(result, indent=1)))
  _atomic(base + ".md", write_text(text))
  _atomic(base + ".png", lambda p: plot(result, p))
  print(text)
  print(f"wrote {base}.json, .md and .png")


if __name__ == "__main__":
  app.run(main)
