"""The ceiling of the synthetic data: AUC and GAUC of the generator's own click logit, per slice.

  .venv/bin/python -m benchmarks.synthetic_oracle --output_dir=runs/synthetic_oracle [data flags]

Scores each evaluation row with what the generator knows and no model can see: the user-topic
affinity plus the item's hidden quality (the click logit without its noise), and with each part
alone. A ranker's AUC on the synthetic default should be read against these numbers. Writes
results.json and results.md atomically.
"""

import os

from absl import app, flags

from features import io_utils, splits, synthetic
from model import metrics
from trainers import cli, data_flags, job_flags

data_flags.define()
job_flags.define_output_dir("runs/synthetic_oracle", "Where results.json/results.md go.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  if FLAGS.dataset != "synthetic":
    raise app.UsageError(
      f"The oracle exists only for --dataset=synthetic. Received: {FLAGS.dataset}"
    )
  cfg = data_flags.synthetic_config()
  split = splits.split_dataset(synthetic.generate(cfg), FLAGS.split, **data_flags.split_params())
  evaluation = split.eval
  labels = evaluation["click"].to_numpy()
  users = evaluation["user_id"].to_numpy()
  masks = metrics.slice_masks(evaluation["cold"].to_numpy())
  results = {"data": data_flags.describe(), "scores": {}}
  rows = ["| score | " + " | ".join(f"AUC {s} | GAUC {s}" for s in masks) + " |",
          "|---|" + "---|---|" * len(masks)]  # fmt: skip
  for name, score in synthetic.oracle_scores(cfg, evaluation).items():
    entry = {}
    for slice_name, mask in masks.items():
      entry[slice_name] = {
        "auc": metrics.auc(labels[mask], score[mask]),
        "gauc": metrics.gauc(labels[mask], score[mask], users[mask]),
      }
    results["scores"][name] = entry
    cells = " | ".join(f"{v['auc']:.4f} | {v['gauc']:.4f}" for v in entry.values())
    rows.append(f"| {name} | {cells} |")
  md = "# Synthetic oracle (noiseless click logit)\n\n" + "\n".join(rows) + "\n"
  io_utils.write_json(os.path.join(FLAGS.output_dir, "results.json"), results)
  io_utils.write_text(os.path.join(FLAGS.output_dir, "results.md"), md)
  print(md)


if __name__ == "__main__":
  cli.run(main)
