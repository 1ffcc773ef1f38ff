"""The end-to-end job on the built-in default data: `python -m trainers.pipeline --output_dir=DIR`.

Stages (each skipped when its output is already there, so a killed run resumes where it stopped):
  1. data      load the dataset the data flags name (synthetic by default), split it, write
               DIR/data_summary.json.
  2. rqvae     train a small RQ-VAE on every item's content embedding -> DIR/rqvae/ (or use
               --rqvae_dir).
  3. sids      assign each item's semantic ID -> DIR/sids.npz (SID table with manifest).
  4. spm       train the SentencePiece models the schemes need over the SIDs of training
               impressions, vocabulary = the table budget -> DIR/spm/.
  Stages 2-4 go through the same artifact cache as `trainers.experiment` (`trainers.artifacts`):
  an artifact is reused only when what made it (settings, data) matches.
  5. rankers   train one ranker per --schemes (hash, dense and the SID schemes; SID token dropout
               --token_dropout, hybrid = hash + --hybrid_sid_scheme with --id_dropout, tables
               starting at --table_initializer; trainers.item_flags' defaults) with history ->
               DIR/rankers/<scheme>/ (metrics.json, checkpoint/, ...; see trainers.train_ranker).
  6. compare   DIR/comparison.md and DIR/comparison.json (test AUC/GAUC per slice, user-clustered
               bootstrap intervals vs hashing) and DIR/comparison.png.
The defaults finish in a few minutes on 2 cores. Export any ranker for TF Serving afterwards with
`python -m export.export_model --ranker_dir=DIR/rankers/spm --output_dir=...`.
"""

import os
import time

import numpy as np
from absl import app, flags

from features import io_utils, sid_table
from model import ranker as ranker_lib
from model import schemes
from trainers import (
  artifacts,
  cli,
  data_flags,
  describe_data,
  experiment_report,
  item_flags,
  job_flags,
  ranker_training,
)

data_flags.define()
job_flags.define_output_dir("runs/pipeline", "Folder for every artifact of the run.")
flags.DEFINE_list(
  "schemes",
  list(schemes.comparison_names()),
  "Item representations to train (hash is always included: it is the reference).",
)
job_flags.define_ranker_model()
job_flags.define_sid()
job_flags.define_ranker_train()
flags.DEFINE_integer("bootstrap", 100, "Bootstrap resamples for the comparison.")
item_flags.define()
FLAGS = flags.FLAGS


def _stage(name: str) -> float:
  print(f"\n=== {name} ===", flush=True)
  return time.perf_counter()


def sids_stage(cache: artifacts.SidArtifacts, path: str) -> None:
  """Writes every item's SID as a SID table with manifest (`features.sid_table`)."""
  codes = cache.codes
  table = sid_table.make_table(
    cache.dataset.items["item_id"].to_numpy(),
    codes,
    fingerprint=cache.fingerprint,
    codebook_size=cache.codebook_size,
  )
  sid_table.write_sid_table(path, table)
  unique = len({tuple(c) for c in codes.tolist()}) / max(len(codes), 1)
  print(f"{len(codes)} items, unique-SID fraction {unique:.3f}; wrote {path}")


def ranker_stage(dataset, split, cache: artifacts.SidArtifacts, directory: str):
  runs, results = [], {}
  for scheme in dict.fromkeys([schemes.HASH] + list(FLAGS.schemes)):
    run = experiment_report.Run("on", scheme, FLAGS.table_rows, 0)
    run_dir = os.path.join(directory, scheme)
    runs.append(run)
    item_config = item_flags.item_config(scheme, FLAGS.table_rows, FLAGS.embedding_dim)
    ranker_config = ranker_lib.RankerConfig(
      second_label_name=dataset.second_label_name,
      user_embedding_dim=FLAGS.embedding_dim,
      history_length=FLAGS.history_length,
    )
    train_config = job_flags.train_config(FLAGS.seed, verbose=1)
    print(f"\n--- ranker: {scheme} ---", flush=True)
    encoder, proto = cache.for_config(item_config)
    results[run.key] = ranker_training.fit_and_evaluate(
      dataset,
      split,
      item_config,
      ranker_config,
      train_config,
      run_dir,
      sid_encoder=encoder,
      spm_model_proto=proto,
      data_description=data_flags.describe(),
      on_mismatch="replace",  # A cache: a run made with other settings is trained again.
    )
    print(ranker_training.format_metrics(results[run.key]))
  return runs, results


def compare_stage(runs, results, split, directory: str, output_dir: str):
  def load(run):
    with np.load(os.path.join(directory, run.scheme, "predictions.npz")) as f:
      return {k: f[k] for k in f.files}

  summary = experiment_report.summarize(
    runs, results, load, [FLAGS.table_rows], lambda s, r: [r], FLAGS.bootstrap
  )
  if FLAGS.dataset == "synthetic":
    summary["oracle"] = experiment_report.oracle_reference(
      data_flags.synthetic_config(), split.eval
    )
  io_utils.write_json(os.path.join(output_dir, "comparison.json"), summary)
  text = experiment_report.markdown(summary)
  io_utils.write_text(os.path.join(output_dir, "comparison.md"), text)
  experiment_report.bar_plot(summary, os.path.join(output_dir, "comparison.png"))
  print(text)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  bad = [s for s in FLAGS.schemes if s not in schemes.names()]
  if bad:
    raise app.UsageError(f"--schemes: unknown {bad}; choose from {list(schemes.names())}.")
  job_flags.check_positive(("table_rows", "history_length", "embedding_dim", "bootstrap"))
  out = FLAGS.output_dir
  os.makedirs(out, exist_ok=True)
  start = _stage("1/6 data")
  dataset = data_flags.load()
  split = data_flags.split(dataset)
  summary = describe_data.summarize(dataset, split)
  print(describe_data.format_summary(summary))
  io_utils.write_json(os.path.join(out, "data_summary.json"), summary)
  _stage("2/6 RQ-VAE")
  cache = artifacts.SidArtifacts(
    dataset, split, out, job_flags.sid_config(FLAGS.seed), rqvae_dir=FLAGS.rqvae_dir
  )
  cache.rqvae  # noqa: B018  (trains or loads it in this stage)
  _stage("3/6 semantic IDs")
  sids_stage(cache, os.path.join(out, "sids.npz"))
  _stage("4/6 SentencePiece over SIDs")
  for scheme in FLAGS.schemes:
    budget = schemes.get(scheme).spm_budget(item_flags.item_config(scheme, FLAGS.table_rows))
    if budget is not None:
      cache.spm(budget)
  _stage("5/6 rankers")
  runs, results = ranker_stage(dataset, split, cache, os.path.join(out, "rankers"))
  _stage("6/6 comparison")
  compare_stage(runs, results, split, os.path.join(out, "rankers"), out)
  print(f"done in {time.perf_counter() - start:.0f}s; outputs in {out}")


if __name__ == "__main__":
  cli.run(main)
