"""The end-to-end job on the built-in default data: `python -m trainers.pipeline --output_dir=DIR`.

Stage 1 (data): loads the dataset the data flags name (synthetic by default), splits it and writes
`DIR/data_summary.json`. Later stages (RQ-VAE, SIDs, SentencePiece, rankers, comparison) build on
it.
"""

import os

from absl import app, flags

from features import io_utils
from trainers import data_flags, describe_data

data_flags.define()
flags.DEFINE_string("output_dir", "runs/pipeline", "Folder for every artifact of the run.")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  dataset = data_flags.load()
  summary = describe_data.summarize(dataset, data_flags.split(dataset))
  print(describe_data.format_summary(summary))
  io_utils.write_json(os.path.join(FLAGS.output_dir, "data_summary.json"), summary)
  print(f"wrote {os.path.join(FLAGS.output_dir, 'data_summary.json')}")


if __name__ == "__main__":
  app.run(main)
