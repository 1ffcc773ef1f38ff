"""The data flags every job shares, so one dataset is named the same way everywhere.

Usage in a job module:

  from trainers import data_flags
  data_flags.define()
  ...
  def main(argv):
    dataset = data_flags.load()
    split = data_flags.split(dataset)
"""

from absl import flags

from features import datasets, schema, splits, synthetic

FLAGS = flags.FLAGS


def define() -> None:
  """Defines the shared data flags once (safe to call from several modules)."""
  if "dataset" in FLAGS:
    return
  flags.DEFINE_enum("dataset", "synthetic", [d.value for d in datasets.DatasetName], "Data source.")
  flags.DEFINE_string(
    "data_dir",
    None,
    "Folder for --dataset=movielens (default: ../shared/data/ml-latest-small) or files.",
  )
  flags.DEFINE_enum(
    "split", "new_items", [m.value for m in splits.SplitMethod], "Train/eval split."
  )
  flags.DEFINE_float("time_quantile", 0.8, "global_time: cut at this quantile of timestamps.")
  flags.DEFINE_integer(
    "split_time", None, "global_time: cut at this Unix time instead of a quantile."
  )
  flags.DEFINE_float(
    "cold_item_fraction", 0.2, "new_items: newest fraction of items held out (cold)."
  )
  flags.DEFINE_float(
    "warm_holdout_fraction", 0.1, "new_items: each user's latest warm fraction held out."
  )
  flags.DEFINE_integer("seed", 0, "Seed of the synthetic data and of training.")
  flags.DEFINE_bool(
    "drop_invalid", False, "Drop invalid rows (reported by kind) instead of failing."
  )
  flags.DEFINE_float("click_threshold", 4.0, "movielens: a rating at or above this is a click.")
  flags.DEFINE_string("second_label_column", None, "files: column holding the second task's label.")
  flags.DEFINE_integer("synthetic_items", synthetic.SyntheticConfig.n_items, "synthetic: items.")
  flags.DEFINE_integer("synthetic_users", synthetic.SyntheticConfig.n_users, "synthetic: users.")
  flags.DEFINE_integer(
    "synthetic_interactions", synthetic.SyntheticConfig.n_interactions, "synthetic: impressions."
  )
  flags.DEFINE_integer("synthetic_dim", synthetic.SyntheticConfig.embedding_dim, "synthetic: D.")


def synthetic_config() -> synthetic.SyntheticConfig:
  return synthetic.SyntheticConfig(
    n_items=FLAGS.synthetic_items,
    n_users=FLAGS.synthetic_users,
    n_interactions=FLAGS.synthetic_interactions,
    embedding_dim=FLAGS.synthetic_dim,
    seed=FLAGS.seed,
  )


def load() -> schema.Dataset:
  """Loads and validates the dataset the flags name."""
  return datasets.load_dataset(
    FLAGS.dataset,
    FLAGS.data_dir,
    drop_invalid=FLAGS.drop_invalid,
    synthetic_config=synthetic_config(),
    click_threshold=FLAGS.click_threshold,
    second_label_column=FLAGS.second_label_column,
  )


def split_params() -> dict:
  if splits.parse_method(FLAGS.split) is splits.SplitMethod.GLOBAL_TIME:
    return {"time_quantile": FLAGS.time_quantile, "split_time": FLAGS.split_time}
  return {
    "cold_item_fraction": FLAGS.cold_item_fraction,
    "warm_holdout_fraction": FLAGS.warm_holdout_fraction,
  }


def split(dataset: schema.Dataset) -> splits.Split:
  """Splits `dataset` as the flags say."""
  return splits.split_dataset(dataset, FLAGS.split, **split_params())


def describe() -> dict:
  """The data flags as a dict, for metrics files and manifests."""
  keys = ("dataset", "data_dir", "split", "seed", "drop_invalid")
  out = {k: FLAGS[k].value for k in keys}
  out.update(split_params())
  if FLAGS.dataset == "synthetic":
    out["synthetic"] = {
      "n_items": FLAGS.synthetic_items,
      "n_users": FLAGS.synthetic_users,
      "n_interactions": FLAGS.synthetic_interactions,
      "embedding_dim": FLAGS.synthetic_dim,
    }
  return out
