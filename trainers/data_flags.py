"""The data flags every job shares, so one dataset is named the same way everywhere.

Usage in a job module:

  from trainers import data_flags
  data_flags.define()
  ...
  def main(argv):
    dataset = data_flags.load()
    split = data_flags.split(dataset)
"""

from absl import app, flags

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
    "split",
    "global_time",
    [m.value for m in splits.SplitMethod],
    "Train/eval split (global_time: the paper's protocol, train before a time cut).",
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
  flags.DEFINE_enum(
    "new_items_by",
    "first_interaction",
    list(splits.NEW_ITEMS_BY),
    "new_items: order items by their first interaction, or by the items' first_seen (release "
    "dates in your items file).",
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
  flags.DEFINE_enum(
    "synthetic_profile",
    "production",
    sorted(synthetic.PROFILES),
    "synthetic: the generator (production: heavy-tailed popularity and a strong item effect, the "
    "default; topics_v1: the earlier, light-tailed one).",
  )


def synthetic_config() -> synthetic.SyntheticConfig:
  return synthetic.config_for_profile(
    FLAGS.synthetic_profile,
    n_items=FLAGS.synthetic_items,
    n_users=FLAGS.synthetic_users,
    n_interactions=FLAGS.synthetic_interactions,
    embedding_dim=FLAGS.synthetic_dim,
    seed=FLAGS.seed,
  )


# Flags that apply only to some datasets or splits.
_FOR_DATASET = {
  "synthetic_items": "synthetic",
  "synthetic_users": "synthetic",
  "synthetic_interactions": "synthetic",
  "synthetic_dim": "synthetic",
  "synthetic_profile": "synthetic",
  "click_threshold": "movielens",
  "second_label_column": "files",
}
_FOR_SPLIT = {
  "time_quantile": "global_time",
  "split_time": "global_time",
  "cold_item_fraction": "new_items",
  "warm_holdout_fraction": "new_items",
  "new_items_by": "new_items",
}


def check() -> None:
  """Refuses a data flag given on the command line that the chosen dataset or split ignores.

  Raises:
    app.UsageError: naming the flag and what it applies to.
  """
  for name, dataset in _FOR_DATASET.items():
    if FLAGS[name].present and FLAGS.dataset != dataset:
      raise app.UsageError(
        f"--{name} applies only to --dataset={dataset}. Received: --dataset={FLAGS.dataset}"
      )
  if FLAGS["data_dir"].present and FLAGS.dataset == "synthetic":
    raise app.UsageError("--data_dir does not apply to --dataset=synthetic (built-in data).")
  for name, method in _FOR_SPLIT.items():
    if FLAGS[name].present and FLAGS.split != method:
      raise app.UsageError(
        f"--{name} applies only to --split={method}. Received: --split={FLAGS.split}"
      )
  for name in ("time_quantile", "cold_item_fraction", "warm_holdout_fraction"):
    value = FLAGS[name].value
    if not 0.0 < value < 1.0:
      raise app.UsageError(f"--{name} must be in (0, 1). Received: --{name}={value}")
  for name in ("synthetic_items", "synthetic_users", "synthetic_interactions", "synthetic_dim"):
    if FLAGS[name].value <= 0:
      raise app.UsageError(f"--{name} must be positive. Received: --{name}={FLAGS[name].value}")


def load() -> schema.Dataset:
  """Checks the data flags (`check`), then loads and validates the dataset they name."""
  check()
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
  params = {
    "cold_item_fraction": FLAGS.cold_item_fraction,
    "warm_holdout_fraction": FLAGS.warm_holdout_fraction,
  }
  if FLAGS.new_items_by != "first_interaction":  # (Kept out otherwise: identities stay as before.)
    params["new_items_by"] = FLAGS.new_items_by
  return params


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
      "profile": FLAGS.synthetic_profile,
    }
  return out
