"""Training throughput (examples/s) of the ranker per item representation, relative to hashing.

  python -m benchmarks.ranker_throughput --dataset=movielens --output_dir=runs/ranker_throughput

All schemes are measured in one process on the same interactions (the input pipeline is cached in
memory first, so the figure is the model's training step: embedding lookups, history, DCN, both
tasks and the optimizer, plus whatever the SID part runs in the graph). Each SID scheme runs in the
modes of `--sid_inputs`: `cached` is how `trainers.ranker_training` trains (every catalogue item's
subword ids computed once before fit, `ranker_training.catalogue_cache`, and gathered per batch),
`content` the graph encoding every candidate and history item (RQ-VAE encoder + tokenizer) on every
step, as before the cache. Each (scheme, mode) gets `--warmup_steps` untimed steps (tracing), then
`--steps` timed steps; the order is repeated `--repeats` times, interleaved and rotated by one
place each repeat (`benchmarks.interleaving`: with as many repeats as configurations, each takes
every position once), and the median is reported, so drifting machine load and position bias hit
every scheme alike. Besides wall-clock examples/s it reports examples per CPU-second of this
process (`time.process_time`, all threads): on a machine shared with other jobs that figure moves
much less than the wall clock. Writes throughput.json, throughput.md and throughput.png in
--output_dir (default runs/ranker_throughput, under the repository's git-ignored runs/ when started
from its root, as the other benchmarks).
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow: TFRS needs Keras 2

import statistics  # noqa: E402
import time  # noqa: E402

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks import interleaving  # noqa: E402
from features import io_utils  # noqa: E402
from model import ranker as ranker_lib  # noqa: E402
from model import (
  schemes,  # noqa: E402
  semantic_id_encoder,  # noqa: E402
)
from trainers import (  # noqa: E402
  artifacts,
  cli,
  data_flags,
  item_flags,
  job_flags,
  ranker_training,
)

data_flags.define()
flags.DEFINE_list(
  "schemes", list(schemes.comparison_names()), "Schemes (default: every registered one)."
)
flags.DEFINE_integer("table_rows", 4000, "Table budget.")
flags.DEFINE_integer("batch_size", 1024, "Batch size.")
flags.DEFINE_integer("steps", 30, "Timed steps per scheme and repeat.")
flags.DEFINE_integer("warmup_steps", 5, "Untimed steps per scheme (tracing).")
flags.DEFINE_integer("repeats", 3, "Interleaved repeats.")
flags.DEFINE_enum("history", "on", ["on", "off"], "History feature.")
flags.DEFINE_integer("history_length", 10, "H.")
flags.DEFINE_integer(
  "sid_levels", 3, "RQ-VAE L (trained briefly here; SIDs' quality is irrelevant)."
)
flags.DEFINE_integer("sid_codebook_size", 64, "RQ-VAE K.")
flags.DEFINE_list(
  "sid_inputs", ["cached", "content"], "SID schemes: cached subword ids and/or in-graph encoding."
)
item_flags.define()
job_flags.define_output_dir("runs/ranker_throughput", "Where the results go.")
FLAGS = flags.FLAGS


def ranker_config(dataset):
  return ranker_lib.RankerConfig(
    second_label_name=dataset.second_label_name,
    use_history=FLAGS.history == "on",
    history_length=FLAGS.history_length,
  )


def build(scheme, dataset, split, rqvae, proto, cached):
  """(the compiled model, its batches) of one scheme in one mode."""
  item_config = item_flags.item_config(scheme, FLAGS.table_rows)
  encoder = semantic_id_encoder.SemanticIdEncoder.from_rqvae(rqvae, name="sid_encoder")
  encoder = encoder if item_config.spec.uses_sid else None
  proto = proto if item_config.spec.spm_budget(item_config) is not None else None
  cache = ranker_training.catalogue_cache(dataset, item_config, encoder, proto) if cached else {}
  config = ranker_config(dataset)
  model = ranker_training.build_ranker(item_config, config, encoder, proto)
  model = ranker_training.read_cache(model, cache)
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
  n_batches = FLAGS.steps + FLAGS.warmup_steps
  data = ranker_training.make_dataset(
    dataset, split.train, config, FLAGS.batch_size, True, 0, item_cache=cache
  )
  batches = list(data.take(n_batches))
  if len(batches) < n_batches:
    raise app.UsageError(
      f"The training split has {len(batches)} batches of {FLAGS.batch_size}; need {n_batches}."
    )
  return model, _stack(batches)


def runs():
  """(name, scheme, cached) of every measured configuration, hash first."""
  out = []
  for scheme in FLAGS.schemes:
    if schemes.get(scheme).uses_sid:
      out += [(f"{scheme}/{mode}", scheme, mode == "cached") for mode in FLAGS.sid_inputs]
    else:
      out.append((scheme, scheme, False))
  return out


def main(argv):
  del argv
  dataset = data_flags.load()
  split = data_flags.split(dataset)
  print("training a small RQ-VAE and SPM model for the SID schemes ...")
  rqvae = artifacts.train_rqvae(
    dataset, artifacts.SidConfig(FLAGS.sid_levels, FLAGS.sid_codebook_size, epochs=3)
  )
  codes = rqvae.assign_codes(dataset.embeddings)
  proto = artifacts.train_spm(
    codes,
    artifacts.impressions_per_item(dataset, split.train),
    FLAGS.sid_codebook_size,
    FLAGS.table_rows // 2,
  )
  models = {
    name: build(scheme, dataset, split, rqvae, proto, cached) for name, scheme, cached in runs()
  }
  timings = {name: [] for name in models}
  cpu_timings = {name: [] for name in models}
  for repeat in range(FLAGS.repeats):
    for name in interleaving.rotated(list(models), repeat):
      model, batches = models[name]
      step = model.make_train_function()
      it = iter(tf.data.Dataset.from_tensor_slices(batches).repeat())
      for _ in range(FLAGS.warmup_steps):
        step(it)
      start, cpu_start = time.perf_counter(), time.process_time()
      for _ in range(FLAGS.steps):
        logs = step(it)
      float(logs["loss"])  # waits for the last step
      rate = FLAGS.steps * FLAGS.batch_size / (time.perf_counter() - start)
      cpu_rate = FLAGS.steps * FLAGS.batch_size / (time.process_time() - cpu_start)
      timings[name].append(rate)
      cpu_timings[name].append(cpu_rate)
      print(f"repeat {repeat} {name:16s} {rate:9.0f} examples/s {cpu_rate:9.0f} per CPU-s")
  hash_rate = statistics.median(timings["hash"]) if "hash" in timings else None
  hash_cpu = statistics.median(cpu_timings["hash"]) if "hash" in cpu_timings else None
  results = {
    s: {
      "examples_per_s": statistics.median(v),
      "runs": v,
      "relative_to_hash": statistics.median(v) / hash_rate if hash_rate else None,
      "examples_per_cpu_s": statistics.median(cpu_timings[s]),
      "cpu_relative_to_hash": statistics.median(cpu_timings[s]) / hash_cpu if hash_cpu else None,
    }
    for s, v in timings.items()
  }
  settings = {
    k: FLAGS[k].value
    for k in (
      "table_rows",
      "batch_size",
      "steps",
      "repeats",
      "history",
      "history_length",
      "sid_levels",
      "sid_codebook_size",
      "sid_inputs",
      *item_flags.NAMES,
    )
  }
  report = {"settings": settings, "data": data_flags.describe(), "results": results}
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  io_utils.write_json(os.path.join(FLAGS.output_dir, "throughput.json"), report)
  lines = [
    "| scheme/SID input | examples/s (median) | relative to hash | examples per CPU-s | relative |",
    "|---|---:|---:|---:|---:|",
  ]
  for s, r in results.items():
    rel = f"{r['relative_to_hash']:.2f}x" if r["relative_to_hash"] else "-"
    cpu_rel = f"{r['cpu_relative_to_hash']:.2f}x" if r["cpu_relative_to_hash"] else "-"
    lines.append(
      f"| {s} | {r['examples_per_s']:.0f} | {rel} | {r['examples_per_cpu_s']:.0f} | {cpu_rel} |"
    )
  text = f"Training throughput, settings {settings}\n\n" + "\n".join(lines) + "\n"
  io_utils.write_text(os.path.join(FLAGS.output_dir, "throughput.md"), text)
  _plot(results, os.path.join(FLAGS.output_dir, "throughput.png"))
  print(text)


def _stack(batches):
  """Batches as one dict of [n, B, ...] tensors, so the timed loop has no Python input code."""
  return {k: tf.stack([b[k] for b in batches]) for k in batches[0]}


def _plot(results, path):
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  names = list(results)
  fig, ax = plt.subplots(figsize=(7, 3.5))
  ax.bar(names, [results[n]["relative_to_hash"] or 0 for n in names])
  ax.axhline(1.0, color="gray", ls=":")
  ax.set_ylabel("training examples/s relative to hash")
  ax.set_title("Ranker training throughput per item representation")
  fig.tight_layout()
  with io_utils.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=110)
  plt.close(fig)


if __name__ == "__main__":
  cli.run(main)
