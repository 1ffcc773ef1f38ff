"""Training throughput (examples/s) of the ranker per item representation, relative to hashing.

  python -m benchmarks.ranker_throughput --dataset=movielens --output_dir=/tmp/ranker_throughput

All schemes are measured in one process on the same batches (the input pipeline is cached in memory
first, so the figure is the model's training step: SID encoder, tokenizer, embedding lookups,
history, DCN, both tasks and the optimizer). Each scheme gets `--warmup_steps` untimed steps
(tracing), then `--steps` timed steps; the order of schemes is repeated `--repeats` times,
interleaved, and the median is reported, so drifting machine load hits every scheme alike. Writes
throughput.json, throughput.md and throughput.png in --output_dir.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow: TFRS needs Keras 2

import statistics  # noqa: E402
import time  # noqa: E402

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from features import history, io_utils  # noqa: E402
from model import ranker as ranker_lib  # noqa: E402
from model import (
  schemes,  # noqa: E402
  semantic_id_encoder,  # noqa: E402
)
from trainers import artifacts, data_flags, item_flags, job_flags, ranker_training  # noqa: E402

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
item_flags.define()
job_flags.define_output_dir("/tmp/ranker_throughput", "Where the results go.")
FLAGS = flags.FLAGS


def build(scheme, dataset, encoder, proto):
  item_config = item_flags.item_config(scheme, FLAGS.table_rows)
  ranker_config = ranker_lib.RankerConfig(
    second_label_name=dataset.second_label_name,
    use_history=FLAGS.history == "on",
    history_length=FLAGS.history_length,
  )
  model = ranker_training.build_ranker(item_config, ranker_config, encoder, proto)
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
  return model


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
  h = FLAGS.history_length if FLAGS.history == "on" else None
  n_batches = FLAGS.steps + FLAGS.warmup_steps
  data = history.make_tf_dataset(dataset, split.train, FLAGS.batch_size, h, shuffle=True)
  batches = list(data.take(n_batches))
  if len(batches) < n_batches:
    raise app.UsageError(
      f"The training split has {len(batches)} batches of {FLAGS.batch_size}; need {n_batches}."
    )
  models = {}
  for scheme in FLAGS.schemes:
    encoder = semantic_id_encoder.SemanticIdEncoder.from_rqvae(rqvae, name="sid_encoder")
    models[scheme] = build(scheme, dataset, encoder, proto)
  timings = {s: [] for s in FLAGS.schemes}
  for repeat in range(FLAGS.repeats):
    for scheme, model in models.items():
      step = model.make_train_function()
      it = iter(tf.data.Dataset.from_tensor_slices(_stack(batches)).repeat())
      for _ in range(FLAGS.warmup_steps):
        step(it)
      start = time.perf_counter()
      for _ in range(FLAGS.steps):
        logs = step(it)
      float(logs["loss"])  # waits for the last step
      rate = FLAGS.steps * FLAGS.batch_size / (time.perf_counter() - start)
      timings[scheme].append(rate)
      print(f"repeat {repeat} {scheme:8s} {rate:9.0f} examples/s")
  hash_rate = statistics.median(timings["hash"]) if "hash" in timings else None
  results = {
    s: {
      "examples_per_s": statistics.median(v),
      "runs": v,
      "relative_to_hash": statistics.median(v) / hash_rate if hash_rate else None,
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
      *item_flags.NAMES,
    )
  }
  report = {"settings": settings, "data": data_flags.describe(), "results": results}
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  io_utils.write_json(os.path.join(FLAGS.output_dir, "throughput.json"), report)
  lines = ["| scheme | examples/s (median) | relative to hash |", "|---|---|---|"]
  for s, r in results.items():
    rel = f"{r['relative_to_hash']:.2f}x" if r["relative_to_hash"] else "-"
    lines.append(f"| {s} | {r['examples_per_s']:.0f} | {rel} |")
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
  app.run(main)
