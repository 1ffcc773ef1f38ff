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
Each run lives in DIR/runs/<history>/<scheme>_<rows>/seed<k>/ with its run.json, metrics.json and
predictions.npz; a rerun reuses a finished run only when it was made with the same settings and data
(`trainers.run_dir`), resumes an unfinished one and retrains the others, so a killed experiment
resumes and a changed flag never reports an old result. Schemes whose
table does not depend on the budget (dense; unigram once the budget exceeds L*K) are trained once
and shown at every budget.
"""

import itertools
import os
import time
from typing import Any, Dict, List

import numpy as np
import tensorflow as tf
import tqdm
from absl import app, flags

from features import io_utils
from model import metrics as metrics_lib
from model import ranker as ranker_lib
from model import schemes
from trainers import (
  artifacts,
  cli,
  data_flags,
  experiment_report,
  item_flags,
  job_flags,
  ranker_training,
)

SLICE_KEYS = ("all", "warm", "cold", "cold_known_user", "cold_new_user")

data_flags.define()
job_flags.define_output_dir(help_text="Where results and runs go.")
flags.DEFINE_list(
  "schemes", list(schemes.comparison_names()), "Item representations to compare with hashing."
)
flags.DEFINE_list("table_rows", ["1000", "4000", "16000"], "Table budgets (rows), at least three.")
flags.DEFINE_integer("seeds", 2, "Training seeds per configuration.")
flags.DEFINE_list("history", ["on", "off"], "History settings to run.")
job_flags.define_ranker_model(table_rows_default=None)
job_flags.define_ranker_train()
job_flags.define_sid()
item_flags.define()
flags.DEFINE_integer("bootstrap", 200, "User-clustered bootstrap resamples.")
flags.DEFINE_bool("user_only_floor", True, "Also train the user-only model (no item feature).")
FLAGS = flags.FLAGS


def plan(levels: int, k: int) -> List[experiment_report.Run]:
  budgets = sorted(int(r) for r in FLAGS.table_rows)
  runs, seen = [], set()
  names = list(dict.fromkeys([schemes.HASH] + list(FLAGS.schemes)))
  for history, scheme, budget in itertools.product(FLAGS.history, names, budgets):
    eff = schemes.get(scheme).rows(budget, levels, k)
    if (history, scheme, eff) in seen:
      continue
    seen.add((history, scheme, eff))
    runs += [experiment_report.Run(history, scheme, budget, s) for s in range(FLAGS.seeds)]
  if FLAGS.user_only_floor:
    runs += [experiment_report.Run("off", schemes.NONE, 0, s) for s in range(FLAGS.seeds)]
  return runs


def shown_at(run_scheme: str, run_rows: int, budgets, levels, k):
  """The budgets a run's results stand for (itself, plus budgets with the same effective rows)."""
  rows = schemes.get(run_scheme).rows
  eff = rows(run_rows, levels, k)
  return [b for b in budgets if rows(b, levels, k) == eff]


def run_one(
  run: experiment_report.Run, dataset, split, cache: artifacts.SidArtifacts
) -> Dict[str, Any]:
  folder = os.path.join(FLAGS.output_dir, "runs", run.key)
  tf.keras.backend.clear_session()
  item_config = item_flags.item_config(run.scheme, max(run.rows, 1), FLAGS.embedding_dim)
  ranker_config = ranker_lib.RankerConfig(
    second_label_name=dataset.second_label_name,
    user_embedding_dim=FLAGS.embedding_dim,
    use_history=run.history == "on" and run.scheme != schemes.NONE,
    history_length=FLAGS.history_length,
  )
  train_config = job_flags.train_config(run.seed, verbose=0)
  encoder, proto = cache.for_config(item_config)
  return ranker_training.fit_and_evaluate(
    dataset,
    split,
    item_config,
    ranker_config,
    train_config,
    folder,
    sid_encoder=encoder,
    spm_model_proto=proto,
    data_description=data_flags.describe(),
    save_model=False,
    on_mismatch="replace",  # A cache: runs made with other settings are trained again.
  )


def load_predictions(run: experiment_report.Run) -> Dict[str, np.ndarray]:
  with np.load(os.path.join(FLAGS.output_dir, "runs", run.key, "predictions.npz")) as f:
    return {k: f[k] for k in f.files}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.output_dir:
    raise app.UsageError("--output_dir is required.")
  try:
    budgets = sorted({int(r) for r in FLAGS.table_rows})
  except ValueError:
    budgets = []
  if len(budgets) < 3 or budgets[0] <= 0:
    raise app.UsageError(
      "--table_rows must be at least three different positive integers (the x axis of the "
      f"table-size plots). Received: --table_rows={','.join(FLAGS.table_rows)}"
    )
  bad = [s for s in FLAGS.schemes if s not in schemes.names()]
  if bad:
    raise app.UsageError(f"--schemes must be among {list(schemes.names())}. Received: {bad}")
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
  cache = artifacts.SidArtifacts(
    dataset, split, FLAGS.output_dir, job_flags.sid_config(seed=0), rqvae_dir=FLAGS.rqvae_dir
  )
  levels, k = FLAGS.sid_levels, FLAGS.sid_codebook_size
  if FLAGS.rqvae_dir:
    levels, k = cache.num_levels, cache.codebook_size
  runs = plan(levels, k)
  print(f"{len(runs)} runs")
  start = time.perf_counter()
  results = {}
  for run in tqdm.tqdm(runs, desc="experiment", unit="run"):
    results[run.key] = run_one(run, dataset, split, cache)
    m = results[run.key]["test"]
    tqdm.tqdm.write(
      f"{run.key:32s} AUC {m['all']['auc']:.4f}  cold GAUC {metrics_lib.format_gauc(m['cold'])}  "
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
  if FLAGS.dataset == "synthetic":
    summary["oracle"] = experiment_report.oracle_reference(
      data_flags.synthetic_config(), split.eval
    )
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
  cli.run(main)
