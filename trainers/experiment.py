"""The paper's comparison: `python -m trainers.experiment --dataset=... --split=...
--output_dir=DIR`.

For each history setting (on/off), item representation and table budget, trains `--seeds` rankers
(training seeds 0..n-1 on the same data and the same RQ-VAE) with
`trainers.ranker_training.fit_and_evaluate`, then writes:
  results.json  every run's metrics, the per-configuration mean/std over seeds, user-clustered
  bootstrap intervals
                of each scheme's difference to hashing at the same budget (overall AUC and GAUC,
                cold GAUC, cold AUC), and the configuration chosen on the validation slice (never
                the test slice).
  results.md    the tables.
  auc_vs_table_size_history_{on,off}.png   overall AUC / cold GAUC against table rows per scheme
  (paper
                Figs. 2 and 3), with dense input and the user-only floor as horizontal lines.
Each run lives in DIR/runs/<history>/<scheme>_<rows>/seed<k>/ with its metrics.json and
predictions.npz; a rerun skips runs already there, so a killed experiment resumes. Schemes whose
table does not depend on the budget (dense; unigram once the budget exceeds L*K) are trained once
and shown at every budget.
"""

import itertools
import json
import os
import time
from typing import Any, Dict, List

import numpy as np
import tensorflow as tf
from absl import app, flags

from features import io_utils
from model import item_representation as item_rep_lib
from model import ranker as ranker_lib
from model import semantic_id_encoder
from trainers import data_flags, experiment_report, item_flags, ranker_training

Scheme = item_rep_lib.Scheme
ALL_SCHEMES = ("hash", "dense", "unigram", "bigram", "prefix", "spm", "hybrid")
SLICE_KEYS = ("all", "warm", "cold", "cold_known_user", "cold_new_user")

data_flags.define()
flags.DEFINE_string("output_dir", None, "Where results and runs go.")
flags.DEFINE_list("schemes", list(ALL_SCHEMES), "Item representations to compare with hashing.")
flags.DEFINE_list("table_rows", ["1000", "4000", "16000"], "Table budgets (rows), at least three.")
flags.DEFINE_integer("seeds", 2, "Training seeds per configuration.")
flags.DEFINE_list("history", ["on", "off"], "History settings to run.")
flags.DEFINE_integer("history_length", 10, "H.")
flags.DEFINE_integer("embedding_dim", 32, "Embedding width.")
flags.DEFINE_integer("epochs", 3, "Most epochs per run (early stopping on validation AUC).")
flags.DEFINE_integer("batch_size", 1024, "Batch size.")
flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate.")
flags.DEFINE_integer("sid_levels", 3, "RQ-VAE levels L.")
flags.DEFINE_integer("sid_codebook_size", 64, "RQ-VAE codes per level K.")
flags.DEFINE_integer("rqvae_epochs", 20, "RQ-VAE training epochs.")
flags.DEFINE_string("rqvae_dir", None, "Use this trained RQ-VAE instead of training one.")
item_flags.define()
flags.DEFINE_integer("bootstrap", 200, "User-clustered bootstrap resamples.")
flags.DEFINE_bool("user_only_floor", True, "Also train the user-only model (no item feature).")
FLAGS = flags.FLAGS


def plan(levels: int, k: int) -> List[experiment_report.Run]:
  budgets = sorted(int(r) for r in FLAGS.table_rows)
  runs, seen = [], set()
  schemes = list(dict.fromkeys(["hash"] + list(FLAGS.schemes)))
  for history, scheme, budget in itertools.product(FLAGS.history, schemes, budgets):
    eff = experiment_report.effective_rows(scheme, budget, levels, k)
    if (history, scheme, eff) in seen:
      continue
    seen.add((history, scheme, eff))
    runs += [experiment_report.Run(history, scheme, budget, s) for s in range(FLAGS.seeds)]
  if FLAGS.user_only_floor:
    runs += [experiment_report.Run("off", "none", 0, s) for s in range(FLAGS.seeds)]
  return runs


def shown_at(run_scheme: str, run_rows: int, budgets, levels, k):
  """The budgets a run's results stand for (itself, plus budgets with the same effective rows)."""
  eff = experiment_report.effective_rows(run_scheme, run_rows, levels, k)
  return [b for b in budgets if experiment_report.effective_rows(run_scheme, b, levels, k) == eff]


class Artifacts:
  """The RQ-VAE (trained once) and one SPM model per budget (trained on the fit split's
  impressions)."""

  def __init__(self, dataset, split, output_dir):
    self.dataset, self.split, self.output_dir = dataset, split, output_dir
    self._rqvae = None
    self._spm = {}

  @property
  def rqvae(self):
    if self._rqvae is None:
      from model import rqvae as rqvae_lib  # noqa: PLC0415

      path = FLAGS.rqvae_dir or os.path.join(self.output_dir, "rqvae")
      if os.path.isdir(path):
        self._rqvae = rqvae_lib.load_rqvae(path)
      else:
        print("training the RQ-VAE ...")
        config = ranker_training.SidConfig(
          FLAGS.sid_levels, FLAGS.sid_codebook_size, epochs=FLAGS.rqvae_epochs
        )
        self._rqvae = ranker_training.train_rqvae(self.dataset, config, verbose=2)
        rqvae_lib.save_rqvae(self._rqvae, path)
      self.codes = self._rqvae.assign_codes(self.dataset.embeddings)
    return self._rqvae

  def encoder(self):
    return semantic_id_encoder.SemanticIdEncoder.from_rqvae(self.rqvae, name="sid_encoder")

  def spm(self, budget: int) -> bytes:
    if budget not in self._spm:
      path = os.path.join(self.output_dir, "spm", f"spm_{budget}.model")
      if not os.path.isfile(path):
        rqvae = self.rqvae
        weights = ranker_training.impressions_per_item(
          self.dataset, ranker_training.validation_split(self.split).train
        )
        proto = ranker_training.train_spm(self.codes, weights, rqvae.config.codebook_size, budget)
        with io_utils.atomic_path(path) as tmp, open(tmp, "wb") as f:
          f.write(proto)
      with open(path, "rb") as f:
        self._spm[budget] = f.read()
    return self._spm[budget]


def run_one(run: experiment_report.Run, dataset, split, artifacts: Artifacts) -> Dict[str, Any]:
  run_dir = os.path.join(FLAGS.output_dir, "runs", run.key)
  done = os.path.join(run_dir, "metrics.json")
  if os.path.isfile(done) and os.path.isfile(os.path.join(run_dir, "predictions.npz")):
    with open(done) as f:
      return json.load(f)
  tf.keras.backend.clear_session()
  item_config = item_flags.item_config(run.scheme, max(run.rows, 1), FLAGS.embedding_dim)
  ranker_config = ranker_lib.RankerConfig(
    second_label_name=dataset.second_label_name,
    user_embedding_dim=FLAGS.embedding_dim,
    use_history=run.history == "on" and run.scheme != "none",
    history_length=FLAGS.history_length,
  )
  train_config = ranker_training.TrainConfig(
    epochs=FLAGS.epochs,
    batch_size=FLAGS.batch_size,
    learning_rate=FLAGS.learning_rate,
    seed=run.seed,
    verbose=0,
  )
  encoder = proto = None
  if item_config.scheme.uses_sid:
    encoder = artifacts.encoder()
    if ranker_training.uses_spm(item_config):
      spm_rows = item_config.table_rows
      if item_config.scheme is Scheme.HYBRID:
        spm_rows = item_config.table_rows - round(
          item_config.table_rows * item_config.hybrid_hash_fraction
        )
      proto = artifacts.spm(
        experiment_report.effective_rows("spm", spm_rows, encoder.num_levels, encoder.codebook_size)
      )
  return ranker_training.fit_and_evaluate(
    dataset,
    split,
    item_config,
    ranker_config,
    train_config,
    run_dir,
    sid_encoder=encoder,
    spm_model_proto=proto,
    data_description=data_flags.describe(),
    save_model=False,
  )


def load_predictions(run: experiment_report.Run) -> Dict[str, np.ndarray]:
  with np.load(os.path.join(FLAGS.output_dir, "runs", run.key, "predictions.npz")) as f:
    return {k: f[k] for k in f.files}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.output_dir:
    raise app.UsageError("--output_dir is required.")
  if len(FLAGS.table_rows) < 1 or any(int(r) <= 0 for r in FLAGS.table_rows):
    raise app.UsageError(f"--table_rows must be positive integers. Received: {FLAGS.table_rows}")
  bad = [s for s in FLAGS.schemes if s not in ALL_SCHEMES]
  if bad:
    raise app.UsageError(f"--schemes must be among {ALL_SCHEMES}. Received unknown: {bad}")
  bad = [h for h in FLAGS.history if h not in ("on", "off")]
  if bad or FLAGS.seeds <= 0:
    raise app.UsageError(
      f"--history takes on/off and --seeds > 0. Received: {FLAGS.history}, {FLAGS.seeds}"
    )
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  dataset = data_flags.load()
  split = data_flags.split(dataset)
  counts = split.counts()
  print(f"data: {counts}")
  artifacts = Artifacts(dataset, split, FLAGS.output_dir)
  levels, k = FLAGS.sid_levels, FLAGS.sid_codebook_size
  if FLAGS.rqvae_dir:
    levels, k = artifacts.rqvae.config.num_levels, artifacts.rqvae.config.codebook_size
  runs = plan(levels, k)
  print(f"{len(runs)} runs")
  start = time.perf_counter()
  results = {}
  from tqdm import tqdm  # noqa: PLC0415

  for run in tqdm(runs, desc="experiment", unit="run"):
    results[run.key] = run_one(run, dataset, split, artifacts)
    m = results[run.key]["test"]
    tqdm.write(
      f"{run.key:32s} AUC {m['all']['auc']:.4f}  cold GAUC {m['cold']['gauc']:.4f}  "
      f"({results[run.key]['train_time_s']:.0f}s)"
    )
  summary = experiment_report.summarize(
    runs,
    results,
    load_predictions,
    sorted(int(r) for r in FLAGS.table_rows),
    lambda s, r: shown_at(s, r, sorted(int(x) for x in FLAGS.table_rows), levels, k),
    FLAGS.bootstrap,
  )
  summary["data"] = {"flags": data_flags.describe(), "counts": counts}
  summary["settings"] = {
    k_: FLAGS[k_].value
    for k_ in (
      "schemes",
      "table_rows",
      "seeds",
      "history",
      "history_length",
      "embedding_dim",
      "epochs",
      "batch_size",
      "learning_rate",
      "sid_levels",
      "sid_codebook_size",
      *item_flags.NAMES,
      "bootstrap",
    )
  }
  summary["wall_time_s"] = time.perf_counter() - start
  io_utils.write_json(os.path.join(FLAGS.output_dir, "results.json"), summary)
  io_utils.write_text(
    os.path.join(FLAGS.output_dir, "results.md"), experiment_report.markdown(summary)
  )
  for history in FLAGS.history:
    experiment_report.plot(
      summary, history, os.path.join(FLAGS.output_dir, f"auc_vs_table_size_history_{history}.png")
    )
  print(experiment_report.markdown(summary))
  print(f"wrote {FLAGS.output_dir}/results.json, results.md and plots")


if __name__ == "__main__":
  app.run(main)
