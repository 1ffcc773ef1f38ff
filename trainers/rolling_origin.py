"""Rolling-origin evaluation of new items: `python -m trainers.rolling_origin --dataset=movielens
--output_dir=DIR`.

One time split is a noisy estimate of a cold-start effect (a few hundred new items in one window
decide it), so this job repeats the split at several origins in time and pools what they say. The
protocol, fixed in code on 2026-12-01 before any test figure of it was produced (README):

  cuts       the 0.70, 0.80 and 0.90 quantiles of the interaction timestamps (`--cut_quantiles`).
  training   every interaction before the cut (an expanding window). Its last 20% in time (the rows
             at or after its 0.8 quantile) is the validation slice, for early stopping and for the
             choice below, carved as `trainers.experiment`'s default global_time split carves it.
  test       the interactions from the cut up to the timestamp quantile `--window_quantile` (0.10)
             further: about a tenth of the data per cut; the default windows tile the last 30%.
  new items  items without an interaction before the cut (first seen at or after it); their test
             rows are the cold rows.
  SIDs       per cut, an RQ-VAE trained on the content of the items seen before the cut only, and
             SentencePiece models on that cut's fit impressions (`trainers.artifacts.SidArtifacts`,
             cached in DIR/cuts/<cut>/); new items get their SIDs from the frozen encoder, as they
             would at serving time.
  rankers    hashing and every registered scheme with an item feature (`--schemes`) at one table
             budget (`--table_rows`, 4000), history on, `--seeds` (3) training seeds, the ranker
             jobs' training defaults (`trainers.job_flags`, `trainers.item_flags`).
  analysis   `trainers.rolling_origin_report`: per cut, AUC all/warm/cold and cold GAUC with
             user-clustered bootstrap intervals and each scheme's difference to hashing; pooled over
             the cuts, each scheme's difference to hashing in cold AUC and cold GAUC (and over all
             rows), resampling users so that a user's rows in every cut stay together.
  choice     on validation only (`trainers.experiment_report.select`): validation AUC not below
             hashing's, then the largest validation cold-GAUC gain, both averaged over the cuts; the
             chosen scheme's pooled test differences are reported as they come.

Outputs in DIR, each written atomically: results.json, results.md, per_cut.png, vs_hash.png. Each
run lives in DIR/cuts/<cut>/runs/<history>/<scheme>_<rows>/seed<k>/ (`trainers.run_dir`): a re-run
reuses the finished runs made with the same settings and data, resumes an unfinished one and
retrains the others. Results made with flags other than the protocol's defaults say so.
"""

import dataclasses
import os
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf
import tqdm
from absl import app, flags

from features import schema, splits
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
  rolling_origin_report,
)

PROTOCOL_DATE = "2026-12-01"
# The validation slice is the training window's rows at or after this quantile of its timestamps
# (`artifacts.validation_split` on a global_time split; `trainers.experiment`'s default).
VALIDATION_QUANTILE = 0.8
# The data flags that choose a split: this job makes its own splits.
SPLIT_FLAGS = (
  "split",
  "time_quantile",
  "split_time",
  "cold_item_fraction",
  "warm_holdout_fraction",
  "new_items_by",
)

data_flags.define()
job_flags.define_output_dir(help_text="Where results and runs go.")
flags.DEFINE_list(
  "cut_quantiles",
  ["0.7", "0.8", "0.9"],
  "Cuts: quantiles of the interaction timestamps, increasing, in (0, 1).",
)
flags.DEFINE_float(
  "window_quantile", 0.1, "Each cut's test window: from its quantile to this much further."
)
flags.DEFINE_list(
  "schemes", list(schemes.comparison_names()), "Item representations to compare with hashing."
)
flags.DEFINE_enum("history", "on", ["on", "off"], "The history feature.")
flags.DEFINE_integer("seeds", 3, "Training seeds per scheme and cut.")
job_flags.define_ranker_model(table_rows_default=4000)
job_flags.define_ranker_train()
job_flags.define_sid()
item_flags.define()
flags.DEFINE_integer("bootstrap", 1000, "User-clustered bootstrap resamples.")
FLAGS = flags.FLAGS
# The flags that make the protocol: a value other than its default is reported as a deviation.
PROTOCOL_FLAGS = (
  "cut_quantiles",
  "window_quantile",
  "schemes",
  "history",
  "seeds",
  "table_rows",
  "history_length",
  "embedding_dim",
  "epochs",
  "batch_size",
  "learning_rate",
  "patience",
  "sid_levels",
  "sid_codebook_size",
  "rqvae_epochs",
  *item_flags.NAMES,
  "bootstrap",
)


@dataclasses.dataclass(frozen=True)
class Cut:
  """One origin: train before `start`, test on [start, end) (`end` None: to the end of the data).

  Attributes:
    quantile: float. The quantile of the interaction timestamps `start` is.
    start: int. Unix seconds.
    end: Optional int. Unix seconds, or None.
  """

  quantile: float
  start: int
  end: Optional[int]

  @property
  def name(self) -> str:
    return f"q{self.quantile:g}"

  def describe(self) -> Dict[str, Any]:
    return {"name": self.name, "quantile": self.quantile, "start": self.start, "end": self.end}


def check_quantiles(quantiles: Sequence[float], window: float) -> None:
  """Raises ValueError unless `quantiles` increase strictly inside (0, 1) and `window` is in
  (0, 1) and ends the last cut's test window by quantile 1."""
  quantiles = [float(q) for q in quantiles]
  if (
    not quantiles
    or any(not 0.0 < q < 1.0 for q in quantiles)
    or quantiles != sorted(set(quantiles))
  ):
    raise ValueError(
      "--cut_quantiles must be strictly increasing numbers in (0, 1). "
      f"Received: --cut_quantiles={','.join(f'{q:g}' for q in quantiles)}"
    )
  if not 0.0 < window < 1.0 or round(quantiles[-1] + window, 9) > 1.0:
    raise ValueError(
      "--window_quantile must be in (0, 1) and end the last test window by quantile 1. "
      f"Received: --window_quantile={window:g} after a cut at {quantiles[-1]:g}"
    )


def make_cuts(timestamps: np.ndarray, quantiles: Sequence[float], window: float) -> List[Cut]:
  """The cuts at `quantiles` of `timestamps`, each with a test window `window` quantiles long
  (the last one open-ended when it reaches quantile 1).

  Raises:
    ValueError: see `check_quantiles`; or when two cuts fall on the same timestamp.
  """
  check_quantiles(quantiles, window)
  t = np.asarray(timestamps, np.int64)
  cuts = []
  for q in quantiles:
    end_q = round(q + window, 9)
    end = None if end_q >= 1.0 else int(np.quantile(t, end_q))
    cuts.append(Cut(q, int(np.quantile(t, q)), end))
  starts = [c.start for c in cuts]
  if len(set(starts)) < len(starts):
    raise ValueError(
      f"The cuts at quantiles {quantiles} fall on timestamps {starts}: some coincide (too few "
      "distinct timestamps). Choose quantiles further apart."
    )
  return cuts


def cut_split(interactions: pd.DataFrame, cut: Cut) -> splits.Split:
  """The global_time split at `cut.start` of the rows before `cut.end`: training before the cut,
  the test window after it, cold rows those of items without a training row. Its params carry
  `VALIDATION_QUANTILE`, so `artifacts.validation_split` carves the validation slice.

  Raises:
    ValueError: naming the cut, when training, test, fit or validation rows would be empty.
  """
  rows = interactions
  if cut.end is not None:
    rows = interactions.loc[interactions["timestamp"].to_numpy() < cut.end]
  try:
    split = splits.global_time_split(rows, VALIDATION_QUANTILE, split_time=cut.start)
    artifacts.validation_split(split)
  except ValueError as e:
    raise ValueError(
      f"The cut at quantile {cut.quantile:g} (test window [{cut.start}, {cut.end})) is unusable: "
      f"{e}"
    ) from None
  return split


def seen_items(dataset: schema.Dataset, train: pd.DataFrame) -> schema.Dataset:
  """`dataset` cut down to the items with a row in `train` and to `train`'s rows: all a cut's
  RQ-VAE and SentencePiece models may learn from."""
  keep = dataset.items["item_id"].isin(pd.Index(train["item_id"].unique())).to_numpy()
  return schema.Dataset(
    dataset.name,
    dataset.items.loc[keep].reset_index(drop=True),
    dataset.embeddings[keep],
    train.reset_index(drop=True),
    dataset.second_label_name,
  )


def split_counts(split: splits.Split) -> Dict[str, int]:
  """The split's counts plus its fit and validation rows."""
  val = artifacts.validation_split(split)
  return {
    **split.counts(),
    "n_fit": len(val.train),
    "n_validation": len(val.eval),
    "n_cold_users": int(split.eval.loc[split.eval["cold"], "user_id"].nunique()),
  }


def plan() -> List[experiment_report.Run]:
  names = list(dict.fromkeys([schemes.HASH] + list(FLAGS.schemes)))
  return [
    experiment_report.Run(FLAGS.history, scheme, FLAGS.table_rows, seed)
    for scheme in names
    for seed in range(FLAGS.seeds)
  ]


def data_description(cut: Cut) -> Dict[str, Any]:
  out = {k: v for k, v in data_flags.describe().items() if k not in SPLIT_FLAGS}
  out["protocol"] = "rolling_origin"
  out["cut"] = cut.describe()
  out["validation_quantile"] = VALIDATION_QUANTILE
  return out


def run_folder(cut: Cut, run: experiment_report.Run) -> str:
  return os.path.join(FLAGS.output_dir, "cuts", cut.name, "runs", run.key)


def run_one(
  cut: Cut, run: experiment_report.Run, dataset, split, cache: artifacts.SidArtifacts
) -> Dict[str, Any]:
  tf.keras.backend.clear_session()
  item_config = item_flags.item_config(run.scheme, run.rows, FLAGS.embedding_dim)
  ranker_config = ranker_lib.RankerConfig(
    second_label_name=dataset.second_label_name,
    user_embedding_dim=FLAGS.embedding_dim,
    use_history=run.history == "on",
    history_length=FLAGS.history_length,
  )
  encoder, proto = cache.for_config(item_config)
  return ranker_training.fit_and_evaluate(
    dataset,
    split,
    item_config,
    ranker_config,
    job_flags.train_config(run.seed, verbose=0),
    run_folder(cut, run),
    sid_encoder=encoder,
    spm_model_proto=proto,
    data_description=data_description(cut),
    save_model=False,
    on_mismatch="replace",  # A cache: runs made with other settings are trained again.
  )


def load_predictions(cut: Cut, run: experiment_report.Run) -> Dict[str, np.ndarray]:
  with np.load(os.path.join(run_folder(cut, run), "predictions.npz")) as f:
    return {k: f[k] for k in f.files}


def check_flags() -> List[float]:
  """Checks the job's flags; returns the cut quantiles.

  Raises:
    app.UsageError: naming the flag.
  """
  if not FLAGS.output_dir:
    raise app.UsageError("--output_dir is required.")
  for name in SPLIT_FLAGS:
    if FLAGS[name].present:
      raise app.UsageError(
        f"--{name} does not apply: this job makes its own splits (--cut_quantiles, "
        "--window_quantile)."
      )
  if FLAGS.rqvae_dir:
    raise app.UsageError(
      "--rqvae_dir does not apply: each cut trains its RQ-VAE on the items seen before the cut."
    )
  try:
    quantiles = [float(q) for q in FLAGS.cut_quantiles]
  except ValueError:
    raise app.UsageError(
      f"--cut_quantiles must be numbers. Received: --cut_quantiles={','.join(FLAGS.cut_quantiles)}"
    ) from None
  try:
    check_quantiles(quantiles, FLAGS.window_quantile)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  bad = [s for s in FLAGS.schemes if s not in schemes.comparison_names()]
  if bad:
    raise app.UsageError(
      f"--schemes must be among {list(schemes.comparison_names())}. Received: {bad}"
    )
  job_flags.check_positive(("seeds", "table_rows", "bootstrap"))
  return quantiles


def protocol() -> Dict[str, Any]:
  """What the protocol fixed, and where this run departs from it."""
  return {
    "fixed_on": PROTOCOL_DATE,
    "validation_quantile": VALIDATION_QUANTILE,
    "defaults": {name: FLAGS[name].default for name in PROTOCOL_FLAGS},
    "deviations": {
      name: FLAGS[name].value for name in PROTOCOL_FLAGS if FLAGS[name].value != FLAGS[name].default
    },
    "selection_rule": "validation AUC >= hashing's, then max validation cold-GAUC gain (each "
    "averaged over the cuts)",
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  quantiles = check_flags()
  dataset = data_flags.load()
  cuts = make_cuts(dataset.interactions["timestamp"].to_numpy(), quantiles, FLAGS.window_quantile)
  cut_splits = [
    cut_split(dataset.interactions, cut) for cut in cuts
  ]  # All checked before training.
  sid_config = job_flags.sid_config(seed=0)
  runs = plan()
  infos = []
  for cut, split in zip(cuts, cut_splits):
    infos.append({**cut.describe(), "counts": split_counts(split)})
    print(f"cut {cut.name}: {infos[-1]['counts']}")
  print(f"{len(cuts)} cuts x {len(runs)} runs")
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  start = time.perf_counter()
  results: Dict[str, Dict[str, Any]] = {}
  progress = tqdm.tqdm(total=len(cuts) * len(runs), desc="rolling origin", unit="run")
  for cut, split, info in zip(cuts, cut_splits, infos):
    known = seen_items(dataset, split.train)
    info["sid_items"] = known.n_items
    cut_dir = os.path.join(FLAGS.output_dir, "cuts", cut.name)
    cache = artifacts.SidArtifacts(known, split, cut_dir, sid_config)
    results[cut.name] = {}
    for run in runs:
      result = run_one(cut, run, dataset, split, cache)
      results[cut.name][run.key] = result
      m = result["test"]
      progress.write(
        f"{cut.name} {run.key:28s} AUC {m['all']['auc']:.4f}  cold GAUC "
        f"{metrics_lib.format_gauc(m['cold'])}  ({result['train_time_s']:.0f}s)"
      )
      progress.update()
  progress.close()
  summary = rolling_origin_report.summarize(
    infos,
    runs,
    results,
    lambda cut_index, run: load_predictions(cuts[cut_index], run),
    FLAGS.bootstrap,
  )
  summary["protocol"] = protocol()
  summary["data"] = {k: v for k, v in data_flags.describe().items() if k not in SPLIT_FLAGS}
  summary["settings"] = {name: FLAGS[name].value for name in PROTOCOL_FLAGS}
  summary["wall_time_s"] = time.perf_counter() - start
  rolling_origin_report.write(summary, FLAGS.output_dir)
  print(rolling_origin_report.markdown(summary))
  print(f"wrote {FLAGS.output_dir}/results.json, results.md, per_cut.png and vs_hash.png")


if __name__ == "__main__":
  cli.run(main)
