"""Describes a dataset and its split.

  python -m trainers.describe_data --dataset=... --output_json=PATH


Prints a human summary and writes JSON with n_items, n_users, n_interactions, n_train, n_eval,
n_cold_eval, n_cold_items, n_eval_rows_unknown_user (and more: click rate, embedding width, time
range).
"""

import datetime
from typing import Any, Dict

from absl import app, flags

from features import io_utils, schema, splits
from trainers import cli, data_flags

data_flags.define()
flags.DEFINE_string("output_json", None, "Where to write the JSON summary (written atomically).")
FLAGS = flags.FLAGS


def summarize(dataset: schema.Dataset, split: splits.Split) -> Dict[str, Any]:
  """Counts and rates of `dataset` and `split`, as a JSON-ready dict."""
  inter = dataset.interactions
  out = {"dataset": dataset.name, "split": split.method.value, "split_params": split.params}
  out.update(split.counts())
  out.update(
    {
      "n_items": dataset.n_items,
      "n_items_with_interactions": int(inter["item_id"].nunique()),
      "embedding_dim": dataset.embedding_dim,
      "click_rate": float(inter["click"].mean()),
      "second_label_name": dataset.second_label_name,
      "second_label_mean": float(inter["second_label"].mean()),
      "time_min": int(inter["timestamp"].min()),
      "time_max": int(inter["timestamp"].max()),
    }
  )
  return out


def _day(ts: int) -> str:
  return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d")


def format_summary(s: Dict[str, Any]) -> str:
  return "\n".join(
    [
      f"dataset {s['dataset']}: {s['n_items']:,} items (D={s['embedding_dim']}), "
      f"{s['n_users']:,} users, "
      f"{s['n_interactions']:,} interactions from {_day(s['time_min'])} to {_day(s['time_max'])}",
      f"  click rate {s['click_rate']:.3f}; second label '{s['second_label_name']}' mean "
      f"{s['second_label_mean']:.3f}",
      f"split {s['split']} {s['split_params']}: train {s['n_train']:,} rows, "
      f"eval {s['n_eval']:,} rows "
      f"({s['n_warm_eval']:,} warm, {s['n_cold_eval']:,} cold on {s['n_cold_items']:,} new items); "
      f"{s['n_eval_rows_unknown_user']:,} eval rows from users without training data",
    ]
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  dataset = data_flags.load()
  summary = summarize(dataset, data_flags.split(dataset))
  print(format_summary(summary))
  if FLAGS.output_json:
    io_utils.write_json(FLAGS.output_json, summary)
    print(f"wrote {FLAGS.output_json}")


if __name__ == "__main__":
  cli.run(main)
