"""One entry point for every data source: `load_dataset(name, ...)` -> a validated Dataset."""

import enum
import sys
from typing import Optional

from features import movielens, schema, synthetic, user_files


class DatasetName(enum.Enum):
  SYNTHETIC = "synthetic"
  MOVIELENS = "movielens"
  FILES = "files"


def parse_name(name: str) -> DatasetName:
  try:
    return DatasetName(name)
  except ValueError:
    choices = [d.value for d in DatasetName]
    raise ValueError(f"`dataset` must be one of {choices}. Received: dataset={name!r}") from None


def load_dataset(
  name: str,
  data_dir: Optional[str] = None,
  *,
  drop_invalid: bool = False,
  synthetic_config: Optional[synthetic.SyntheticConfig] = None,
  click_threshold: float = 4.0,
  second_label_column: Optional[str] = None,
  verbose: bool = False,
) -> schema.Dataset:
  """Loads and validates a dataset.

  Args:
    name: str. "synthetic" (built-in default), "movielens" (ml-latest-small) or "files" (your own).
    data_dir: Optional str. Folder for movielens/files. Defaults to the shared MovieLens copy for
    movielens. drop_invalid: bool. Drop invalid rows (reported by kind on stderr) instead of
    failing. Defaults to False. synthetic_config: Optional SyntheticConfig. Sizes and seed of the
    synthetic data. Defaults to the default. click_threshold: float. MovieLens rating counted as a
    click. Defaults to 4.0. second_label_column: Optional str. For files: column of the second
    label. Defaults to "second_label". verbose: bool. Print the validation summary even when nothing
    was dropped. Defaults to False.

  Returns:
    The validated `schema.Dataset`.

  Raises:
    ValueError: unknown name. FileNotFoundError: missing files. schema.SchemaError: invalid data.
  """
  kind = parse_name(name)
  if kind is DatasetName.SYNTHETIC:
    raw = synthetic.generate(synthetic_config or synthetic.SyntheticConfig())
  elif kind is DatasetName.MOVIELENS:
    raw = movielens.load(data_dir, click_threshold=click_threshold)
  else:
    raw = user_files.load(data_dir, second_label_column=second_label_column)
  dataset, report = schema.validate(raw, drop_invalid=drop_invalid)
  if report.dropped or verbose:
    print(f"[{dataset.name}] {report.summary()}", file=sys.stderr)
  return dataset
