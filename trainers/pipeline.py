"""The end-to-end job on the built-in default data: `python -m trainers.pipeline --output_dir=DIR`.

Stages (each skipped when its output is already there, so a killed run resumes where it stopped):
  1. data      load the dataset the data flags name (synthetic by default), split it, write
               DIR/data_summary.json.
  2. rqvae     train a small RQ-VAE on every item's content embedding -> DIR/rqvae/.
  3. sids      assign each item's semantic ID -> DIR/sids.npz (SID table with manifest).
  4. spm       train the SentencePiece model over the SIDs of training impressions, vocabulary
               = the table budget -> DIR/spm/.
  5. rankers   train one ranker per --schemes (hash, dense and the SID schemes; SID token dropout
               --token_dropout, hybrid = hash + --hybrid_sid_scheme with --id_dropout, tables
               starting at --table_initializer; trainers.item_flags' defaults) with history ->
               DIR/rankers/<scheme>/ (metrics.json, saved_model/, ...; see trainers.train_ranker).
  6. compare   DIR/comparison.md and DIR/comparison.json (test AUC/GAUC per slice, user-clustered
               bootstrap intervals vs hashing) and DIR/comparison.png.
The defaults finish in a few minutes on 2 cores. Export any ranker for TF Serving afterwards with
`python -m export.export_model --ranker_dir=DIR/rankers/spm --output_dir=...`.
"""

import os
import time

from absl import app, flags

from features import io_utils, sid_table
from model import item_representation as item_rep_lib
from model import ranker as ranker_lib
from model import rqvae as rqvae_lib
from model import semantic_id_encoder
from trainers import data_flags, describe_data, experiment_report, item_flags, ranker_training

data_flags.define()
flags.DEFINE_string("output_dir", "runs/pipeline", "Folder for every artifact of the run.")
flags.DEFINE_list(
  "schemes",
  ["hash", "dense", "unigram", "bigram", "prefix", "spm", "hybrid"],
  "Item representations to train (hash is always included: it is the reference).",
)
flags.DEFINE_integer("table_rows", 4000, "Embedding-table budget (rows) of every scheme.")
flags.DEFINE_integer("sid_levels", 3, "RQ-VAE levels L.")
flags.DEFINE_integer("sid_codebook_size", 64, "RQ-VAE codes per level K.")
flags.DEFINE_integer("rqvae_epochs", 20, "RQ-VAE training epochs (as trainers.experiment).")
flags.DEFINE_integer(
  "ranker_epochs", 3, "Most ranker epochs, early stopping on validation (as trainers.experiment)."
)
flags.DEFINE_integer("batch_size", 1024, "Ranker batch size.")
flags.DEFINE_integer("bootstrap", 100, "Bootstrap resamples for the comparison.")
item_flags.define()
FLAGS = flags.FLAGS


def _stage(name: str) -> float:
  print(f"\n=== {name} ===", flush=True)
  return time.perf_counter()


def rqvae_stage(dataset, directory: str) -> rqvae_lib.RQVAE:
  if os.path.isdir(directory):
    print(f"reusing {directory}")
    return rqvae_lib.load_rqvae(directory)
  config = ranker_training.SidConfig(
    FLAGS.sid_levels, FLAGS.sid_codebook_size, epochs=FLAGS.rqvae_epochs, seed=FLAGS.seed
  )
  model = ranker_training.train_rqvae(dataset, config, verbose=2)
  rqvae_lib.save_rqvae(model, directory)
  return model


def sids_stage(dataset, rqvae, path: str):
  codes = rqvae.assign_codes(dataset.embeddings)
  table = sid_table.make_table(
    dataset.items["item_id"].to_numpy(),
    codes,
    fingerprint=rqvae_lib.fingerprint(rqvae),
    codebook_size=rqvae.config.codebook_size,
  )
  sid_table.write_sid_table(path, table)
  unique = len({tuple(c) for c in codes.tolist()}) / max(len(codes), 1)
  print(f"{len(codes)} items, unique-SID fraction {unique:.3f}; wrote {path}")
  return codes


def spm_stage(dataset, split, codes, directory: str, vocab_size: int) -> bytes:
  """The SPM model with `vocab_size` pieces, trained on the fit split's impressions (cached)."""
  path = os.path.join(directory, f"spm_{vocab_size}.model")
  if not os.path.isfile(path):
    weights = ranker_training.impressions_per_item(
      dataset, ranker_training.validation_split(split).train
    )
    proto = ranker_training.train_spm(codes, weights, FLAGS.sid_codebook_size, vocab_size)
    with io_utils.atomic_path(path) as tmp, open(tmp, "wb") as f:
      f.write(proto)
    print(f"wrote {path}")
  with open(path, "rb") as f:
    return f.read()


def ranker_stage(dataset, split, rqvae, spm_protos, directory: str):
  runs, results = [], {}
  for scheme in dict.fromkeys(["hash"] + list(FLAGS.schemes)):
    run = experiment_report.Run("on", scheme, FLAGS.table_rows, 0)
    run_dir = os.path.join(directory, scheme)
    runs.append(run)
    metrics_path = os.path.join(run_dir, "metrics.json")
    if os.path.isfile(metrics_path):
      import json  # noqa: PLC0415

      with open(metrics_path) as f:
        results[run.key] = json.load(f)
      print(f"{scheme}: reusing {run_dir}")
      continue
    print(f"\n--- ranker: {scheme} ---", flush=True)
    item_config = item_flags.item_config(scheme, FLAGS.table_rows)
    ranker_config = ranker_lib.RankerConfig(second_label_name=dataset.second_label_name)
    train_config = ranker_training.TrainConfig(
      epochs=FLAGS.ranker_epochs, batch_size=FLAGS.batch_size, seed=FLAGS.seed, verbose=1
    )
    encoder = None
    if item_config.scheme.uses_sid:
      encoder = semantic_id_encoder.SemanticIdEncoder.from_rqvae(rqvae, name="sid_encoder")
    results[run.key] = ranker_training.fit_and_evaluate(
      dataset,
      split,
      item_config,
      ranker_config,
      train_config,
      run_dir,
      sid_encoder=encoder,
      spm_model_proto=spm_protos.get(scheme),
      data_description=data_flags.describe(),
    )
    print(ranker_training.format_metrics(results[run.key]))
  return runs, results


def compare_stage(runs, results, directory: str, output_dir: str):
  import numpy as np  # noqa: PLC0415

  def load(run):
    with np.load(os.path.join(directory, run.scheme, "predictions.npz")) as f:
      return {k: f[k] for k in f.files}

  summary = experiment_report.summarize(
    runs, results, load, [FLAGS.table_rows], lambda s, r: [r], FLAGS.bootstrap
  )
  io_utils.write_json(os.path.join(output_dir, "comparison.json"), summary)
  text = experiment_report.markdown(summary)
  io_utils.write_text(os.path.join(output_dir, "comparison.md"), text)
  experiment_report.bar_plot(summary, os.path.join(output_dir, "comparison.png"))
  print(text)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  bad = [s for s in FLAGS.schemes if s not in [x.value for x in item_rep_lib.Scheme]]
  if bad:
    raise app.UsageError(
      f"--schemes: unknown {bad}; choose from hash, dense, unigram, bigram, prefix, spm, hybrid."
    )
  out = FLAGS.output_dir
  os.makedirs(out, exist_ok=True)
  start = _stage("1/6 data")
  dataset = data_flags.load()
  split = data_flags.split(dataset)
  summary = describe_data.summarize(dataset, split)
  print(describe_data.format_summary(summary))
  io_utils.write_json(os.path.join(out, "data_summary.json"), summary)
  _stage("2/6 RQ-VAE")
  rqvae = rqvae_stage(dataset, os.path.join(out, "rqvae"))
  _stage("3/6 semantic IDs")
  codes = sids_stage(dataset, rqvae, os.path.join(out, "sids.npz"))
  _stage("4/6 SentencePiece over SIDs")
  spm_dir = os.path.join(out, "spm")
  protos = {"spm": spm_stage(dataset, split, codes, spm_dir, FLAGS.table_rows)}
  if FLAGS.hybrid_sid_scheme == "spm" and "hybrid" in FLAGS.schemes:  # The SID part's share.
    share = FLAGS.table_rows - int(round(FLAGS.table_rows * 0.5))
    protos["hybrid"] = spm_stage(dataset, split, codes, spm_dir, share)
  _stage("5/6 rankers")
  runs, results = ranker_stage(dataset, split, rqvae, protos, os.path.join(out, "rankers"))
  _stage("6/6 comparison")
  compare_stage(runs, results, os.path.join(out, "rankers"), out)
  print(f"done in {time.perf_counter() - start:.0f}s; outputs in {out}")


if __name__ == "__main__":
  app.run(main)
