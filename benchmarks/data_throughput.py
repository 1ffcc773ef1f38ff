"""Synthetic generation and tf.data throughput at scale (default 1M items / 10M interactions).

  .venv/bin/python -m benchmarks.data_throughput --output_dir=runs/bench_data

Measures: generation time of the items+embeddings and of the interactions (rows/s), the time to
split, the tf.data pipeline's examples/s over the training split (batches of --batch_size, content
embeddings gathered per batch), and the process's peak resident memory after each phase. Writes
results.json and results.md atomically.
"""

import os
import resource
import time

import pandas as pd
import tqdm
from absl import flags

from features import io_utils, pipeline, schema, splits, synthetic
from trainers import cli, job_flags

flags.DEFINE_integer("items", 1_000_000, "Synthetic items.")
flags.DEFINE_integer("users", 100_000, "Synthetic users.")
flags.DEFINE_integer("interactions", 10_000_000, "Synthetic interactions.")
flags.DEFINE_integer("dim", 128, "Embedding width D.")
flags.DEFINE_integer("batch_size", 4096, "tf.data batch size.")
flags.DEFINE_integer(
  "max_batches", 0, "Stop the tf.data pass after this many batches (0: whole split)."
)
job_flags.define_output_dir("runs/bench_data", "Where results.json/results.md go.")
FLAGS = flags.FLAGS


def _peak_rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _generate(cfg: synthetic.SyntheticConfig):
  t0 = time.perf_counter()
  world = synthetic._world(cfg)  # pylint: disable=protected-access
  items = pd.DataFrame(
    {"item_id": range(cfg.n_items), "first_seen": world.first_seen + cfg.start_time}
  )
  embeddings = synthetic._item_embeddings(cfg, world)  # pylint: disable=protected-access
  t_items = time.perf_counter() - t0
  chunks, t0 = [], time.perf_counter()
  n_chunks = -(-cfg.n_interactions // cfg.chunk_size)
  for chunk in tqdm.tqdm(
    synthetic.iter_interaction_chunks(cfg, world), total=n_chunks, desc="generate"
  ):
    chunks.append(chunk)
  inter = pd.concat(chunks, ignore_index=True).sort_values("timestamp", kind="stable")
  t_inter = time.perf_counter() - t0
  ds = schema.Dataset("synthetic", items, embeddings, inter.reset_index(drop=True), "engagement")
  return ds, t_items, t_inter


def main(argv):
  del argv
  cfg = synthetic.SyntheticConfig(
    n_items=FLAGS.items,
    n_users=FLAGS.users,
    n_interactions=FLAGS.interactions,
    embedding_dim=FLAGS.dim,
  )
  ds, t_items, t_inter = _generate(cfg)
  rss_generate = _peak_rss_gib()
  t0 = time.perf_counter()
  split = splits.split_dataset(ds, "global_time")
  t_split = time.perf_counter() - t0
  tf_ds = pipeline.make_tf_dataset(ds, split.train, FLAGS.batch_size, shuffle=True)
  n_batches = -(-len(split.train) // FLAGS.batch_size)
  if FLAGS.max_batches:
    tf_ds, n_batches = tf_ds.take(FLAGS.max_batches), min(n_batches, FLAGS.max_batches)
  examples, t0 = 0, time.perf_counter()
  for batch in tqdm.tqdm(tf_ds, total=n_batches, desc="tf.data"):
    examples += int(batch["click"].shape[0])
  t_pipe = time.perf_counter() - t0
  results = {
      "config": {"items": cfg.n_items, "users": cfg.n_users, "interactions": cfg.n_interactions,
                 "dim": cfg.embedding_dim, "batch_size": FLAGS.batch_size},
      "generate_items_s": t_items,
      "items_per_s": cfg.n_items / t_items,
      "generate_interactions_s": t_inter,
      "interactions_per_s": cfg.n_interactions / t_inter,
      "split_s": t_split,
      "tfdata_examples": examples,
      "tfdata_s": t_pipe,
      "tfdata_examples_per_s": examples / t_pipe,
      "peak_rss_gib_after_generation": rss_generate,
      "peak_rss_gib_total": _peak_rss_gib(),
      "cpu_count": os.cpu_count(),
  }  # fmt: skip
  rows = [
    f"| {k} | {v:,.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in results.items()
  ]
  md = "# Data throughput\n\n| measure | value |\n|---|---|\n" + "\n".join(rows) + "\n"
  io_utils.write_json(os.path.join(FLAGS.output_dir, "results.json"), results)
  io_utils.write_text(os.path.join(FLAGS.output_dir, "results.md"), md)
  print(md)


if __name__ == "__main__":
  cli.run(main)
