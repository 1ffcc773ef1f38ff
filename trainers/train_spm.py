"""Trains the SentencePiece model over semantic IDs (SPM-SID) on training-period impressions.

  python -m trainers.train_spm --sids=runs/sids.npz --vocab_size=32768 --output=runs/sid_spm.model \
      --dataset=movielens --split=new_items

The SID table (`features.sid_table`, from `trainers.assign_sids`) gives every item's codes; the
impressions are the training-period interactions of the dataset and split named by the data flags
(every row counts once, clicked or not). Each impressed item's SID, weighted by its impression
count, is one training sentence (`features.spm_training` documents the SentencePiece options and
why).
`--vocab_size` is the budget of the embedding table and must be at least L*K + 1.

Writes, atomically:
  OUTPUT              the SentencePiece model proto, for `SidSentencePiece.from_file(OUTPUT, L, K)`
  OUTPUT.stats.json   vocabulary size, piece lengths, tokens per item (mean, max, by decile)
  OUTPUT.deciles.png  tokens per item by item-popularity decile (the paper's Fig. 4)
Re-running with the same inputs rewrites byte-identical files.
"""

import os
from typing import Any, Dict, List, Sequence

import matplotlib
import numpy as np
import tqdm
from absl import app, flags

from features import io_utils, sid_spm, sid_table, spm_training
from trainers import cli, data_flags

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

data_flags.define()
flags.DEFINE_string("sids", None, "SID table (.npz) written by trainers.assign_sids.")
flags.DEFINE_integer("vocab_size", None, "Vocabulary budget (embedding rows); at least L*K + 1.")
flags.DEFINE_string("output", None, "Where to write the SentencePiece model.")
flags.DEFINE_enum(
  "model_type",
  spm_training.ModelType.UNIGRAM.value,
  [t.value for t in spm_training.ModelType],
  "SentencePiece model type.",
)
flags.DEFINE_integer("max_piece_length", None, "Longest piece in levels (default: L, a whole SID).")
flags.DEFINE_integer("max_seed_pieces", 1_000_000, "Unigram: seed pieces kept before EM pruning.")
flags.DEFINE_integer("num_threads", 1, "SentencePiece trainer threads.")
FLAGS = flags.FLAGS


def summarize(
  proto: bytes, table: sid_table.SidTable, impressions: np.ndarray, codebook_size: int
) -> Dict[str, Any]:
  """Vocabulary and tokens-per-item statistics of a trained model over all items of `table`."""
  lengths = sid_spm.piece_lengths(proto)
  tokens = spm_training.tokens_per_item(proto, table.codes, codebook_size)
  impressed = impressions > 0
  return {
    "num_rows": int(len(lengths)),
    "piece_length_histogram": np.bincount(lengths[lengths > 0]).tolist(),
    "n_items": int(len(tokens)),
    "n_impressed_items": int(impressed.sum()),
    "n_impressions": int(impressions.sum()),
    "tokens_per_item_mean": float(tokens.mean()),
    "tokens_per_item_max": int(tokens.max()),
    "tokens_per_impressed_item_mean": float(tokens[impressed].mean()),
    "tokens_per_unimpressed_item_mean": float(tokens[~impressed].mean())
    if (~impressed).any()
    else None,
    "tokens_by_popularity_decile": spm_training.by_popularity_decile(tokens, impressions),
  }


def plot_deciles(path: str, series: Dict[str, Sequence[float]], title: str) -> None:
  """PNG of tokens per item by popularity decile (1 = most impressed), one line per scheme."""
  fig, ax = plt.subplots(figsize=(7, 4))
  styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", "-"), ("x", "--")]
  for index, (name, values) in enumerate(series.items()):
    marker, line = styles[index % len(styles)]
    ax.plot(range(1, len(values) + 1), values, marker=marker, linestyle=line, label=name)
  ax.set_xlabel("item popularity decile (1 = most impressed)")
  ax.set_ylabel("tokens per item")
  ax.set_xticks(range(1, 11))
  ax.set_ylim(bottom=0)
  ax.set_title(title)
  ax.legend(fontsize="small")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  with io_utils.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=110)
  plt.close(fig)


def _check_flags() -> None:
  missing = [name for name in ("sids", "vocab_size", "output") if FLAGS[name].value is None]
  if missing:
    raise app.UsageError(f"Missing required flags: {', '.join('--' + m for m in missing)}.")
  for name in ("vocab_size", "max_seed_pieces", "num_threads"):
    if FLAGS[name].value <= 0:
      raise app.UsageError(f"--{name} must be positive. Received: --{name}={FLAGS[name].value}")
  if FLAGS.max_piece_length is not None and FLAGS.max_piece_length <= 0:
    raise app.UsageError(
      f"--max_piece_length must be positive (or unset for L). Received: "
      f"--max_piece_length={FLAGS.max_piece_length}"
    )


def _load_table(path: str) -> sid_table.SidTable:
  try:
    return sid_table.read_sid_table(path)
  except sid_table.SidTableError as e:
    raise app.UsageError(f"--sids={path}: {e}") from e


def _impressions(table: sid_table.SidTable) -> np.ndarray:
  dataset = data_flags.load()
  items = dataset.items["item_id"].to_numpy()
  found = table.lookup(items) >= 0
  if not found.all() or len(table.item_ids) != len(items):
    raise app.UsageError(
      f"--sids={FLAGS.sids} holds {len(table.item_ids):,} items and --dataset={FLAGS.dataset} "
      f"{len(items):,}, {int(found.sum()):,} in common: the table was made from another "
      "dataset (assign SIDs for this one with trainers.assign_sids)."
    )
  train = data_flags.split(dataset).train
  counts = spm_training.impression_counts(table.item_ids, train["item_id"].to_numpy())
  unknown = int((table.lookup(train["item_id"].to_numpy()) < 0).sum())
  if unknown:
    print(f"warning: {unknown:,} training impressions are of items without a SID; ignored.")
  if not counts.any():
    raise app.UsageError(
      f"No training-period impression of --dataset={FLAGS.dataset} matches an item of "
      f"--sids={FLAGS.sids}: was the table made from another dataset?"
    )
  return counts


def main(argv: List[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  _check_flags()
  with tqdm.tqdm(total=4, desc="train_spm", unit="step") as bar:
    bar.set_postfix_str("reading the SID table")
    table = _load_table(FLAGS.sids)
    codebook_size = int(table.manifest["codebook_size"])
    if (FLAGS.max_piece_length or 0) > table.num_levels:
      raise app.UsageError(
        f"--max_piece_length must be at most L={table.num_levels}. Received: "
        f"--max_piece_length={FLAGS.max_piece_length}"
      )
    if FLAGS.vocab_size < table.num_levels * codebook_size + 1:
      raise app.UsageError(
        f"--vocab_size must hold every (level, code) symbol plus <unk>: at least L*K + 1 = "
        f"{table.num_levels * codebook_size + 1} for L={table.num_levels}, K={codebook_size}. "
        f"Received: --vocab_size={FLAGS.vocab_size}"
      )
    bar.update()
    bar.set_postfix_str("counting impressions")
    impressions = _impressions(table)
    bar.update()
    bar.set_postfix_str(f"training {FLAGS.model_type} SentencePiece")
    config = spm_training.SpmTrainingConfig(
      vocab_size=FLAGS.vocab_size,
      model_type=spm_training.ModelType(FLAGS.model_type),
      max_piece_length=FLAGS.max_piece_length,
      max_seed_pieces=FLAGS.max_seed_pieces,
      num_threads=FLAGS.num_threads,
    )
    try:
      proto = spm_training.train_sid_spm(table.codes, impressions, codebook_size, config)
    except ValueError as e:
      raise app.UsageError(str(e)) from e
    bar.update()
    bar.set_postfix_str("writing")
    stats = summarize(proto, table, impressions, codebook_size)
    stats.update(
      vocab_size_budget=FLAGS.vocab_size,
      model_type=FLAGS.model_type,
      max_piece_length=FLAGS.max_piece_length or table.num_levels,
      num_levels=table.num_levels,
      codebook_size=codebook_size,
      sids=os.path.abspath(FLAGS.sids),
      sid_fingerprint=table.fingerprint,
      data=data_flags.describe(),
    )
    io_utils.write_bytes(FLAGS.output, proto)
    io_utils.write_json(FLAGS.output + ".stats.json", stats)
    plot_deciles(
      FLAGS.output + ".deciles.png",
      {
        f"SPM ({FLAGS.model_type}, {stats['num_rows']:,} rows)": stats[
          "tokens_by_popularity_decile"
        ]
      },
      f"SPM-SID tokens per item, L={table.num_levels}, K={codebook_size}",
    )
    bar.update()
  deciles = ", ".join(f"{v:.2f}" for v in stats["tokens_by_popularity_decile"])
  print(
    f"wrote {FLAGS.output}: {stats['num_rows']:,} pieces (budget {FLAGS.vocab_size:,}) from "
    f"{stats['n_impressed_items']:,} impressed items ({stats['n_impressions']:,} impressions); "
    f"tokens per item mean {stats['tokens_per_item_mean']:.2f}, "
    f"max {stats['tokens_per_item_max']}; "
    f"by popularity decile [{deciles}]; stats: {FLAGS.output}.stats.json"
  )


if __name__ == "__main__":
  cli.run(main)
