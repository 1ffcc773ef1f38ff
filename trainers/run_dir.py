"""A training run's folder: what made it (`run.json`), whether it is finished, and resuming it.

Every training job (`trainers.train_ranker`, `trainers.experiment`, `trainers.pipeline` for their
ranker runs) writes `run.json` (the run's identity: configs, data flags, fingerprints of the data
and of the artifacts it used) before training starts, and `metrics.json` (with the same identity)
only when it has finished. So a folder is in one of four states:

  empty             -> train.
  same identity, finished  -> reuse `metrics.json`; nothing to do.
  same identity, unfinished -> resume from `backup/` (Keras BackupAndRestore); a backup that
                      cannot be restored (truncated by a kill) is discarded and training restarts.
  other identity    -> `RunMismatchError` naming the settings that differ (a job the user pointed
                      at a folder), or the folder is cleared and retrained (a cache: the
                      experiment's and the pipeline's runs).

`EpochLog` keeps the per-epoch history in `history.json`, so a resumed run reports every epoch,
and `RaiseOnNonFinite` stops training with an error on a NaN or Inf loss (nothing is saved as done).
"""

import json
import math
import os
from typing import Any, Dict, List, Optional

import tensorflow as tf

from features import io_utils

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.json"
BACKUP_DIR = "backup"
# What a run folder may hold; `clear` removes exactly these.
OUTPUTS = (
  RUN_FILE,
  METRICS_FILE,
  HISTORY_FILE,
  BACKUP_DIR,
  "predictions.npz",
  "checkpoint",
  "assets",
  "logs",
  "ranker_config.json",
)


class RunMismatchError(ValueError):
  """The folder holds a run made with other settings."""


class NonFiniteLossError(ValueError):
  """Training produced a NaN or Inf loss."""


def canonical(obj: Any) -> Any:
  """`obj` as plain JSON values (tuples -> lists, keys sorted), for comparison with a file."""
  return json.loads(json.dumps(obj, sort_keys=True, default=str))


def differences(old: Any, new: Any, prefix: str = "") -> List[str]:
  """Dotted paths of the values that differ between two JSON-like trees (first 10)."""
  if isinstance(old, dict) and isinstance(new, dict):
    out = []
    for key in sorted(set(old) | set(new)):
      out += differences(old.get(key), new.get(key), f"{prefix}{key}.")
    return out[:10]
  return [] if old == new else [f"{prefix[:-1] or '(root)'}: {old!r} -> {new!r}"]


def _read_json(path: str) -> Optional[Dict[str, Any]]:
  """The JSON in `path`, or None when it is missing or unreadable (a truncated write)."""
  try:
    with tf.io.gfile.GFile(path) as f:
      return json.load(f)
  except (tf.errors.NotFoundError, json.JSONDecodeError, UnicodeDecodeError):
    return None


def clear(output_dir: str) -> None:
  """Removes a run's outputs (and nothing else) from `output_dir`."""
  for name in OUTPUTS:
    io_utils.remove(os.path.join(output_dir, name))


def prepare(output_dir: str, identity: Dict[str, Any], on_mismatch: str) -> Optional[Dict]:
  """Makes `output_dir` ready for the run `identity`; returns its finished metrics, if any.

  Args:
    output_dir: str. The run folder.
    identity: dict. What makes the run (JSON-able).
    on_mismatch: "refuse" (raise RunMismatchError) or "replace" (clear the folder and retrain).

  Returns:
    The metrics dict when the folder already holds this finished run, else None (train).

  Raises:
    RunMismatchError: with `on_mismatch="refuse"`, when the folder holds another run.
  """
  identity = canonical(identity)
  previous = _read_json(os.path.join(output_dir, RUN_FILE))
  if previous is not None and previous != identity:
    if on_mismatch == "refuse":
      changed = "; ".join(differences(previous, identity))
      raise RunMismatchError(
        f"{output_dir} holds a run with other settings ({changed}). Use another --output_dir, "
        "or --overwrite to discard it."
      )
    print(f"{output_dir}: made with other settings; training it again")
    clear(output_dir)
  elif previous is None and tf.io.gfile.exists(os.path.join(output_dir, METRICS_FILE)):
    clear(output_dir)  # Outputs without a readable run.json: from an older version or corrupt.
  metrics = _read_json(os.path.join(output_dir, METRICS_FILE))
  if metrics is not None and canonical(metrics.get("identity")) == identity:
    return metrics
  tf.io.gfile.makedirs(output_dir)
  io_utils.write_json(os.path.join(output_dir, RUN_FILE), identity)
  return None


def previous_epochs(output_dir: str) -> List[Dict[str, float]]:
  """Per-epoch logs of the epochs a backup holds (empty without a backup)."""
  if not tf.io.gfile.exists(os.path.join(output_dir, BACKUP_DIR)):
    return []
  return list((_read_json(os.path.join(output_dir, HISTORY_FILE)) or {}).get("epochs", []))


def discard_backup(output_dir: str) -> None:
  """Removes the Keras backup and the epoch log of an unfinished run."""
  for name in (BACKUP_DIR, HISTORY_FILE):
    io_utils.remove(os.path.join(output_dir, name))


class EpochLog(tf.keras.callbacks.Callback):
  """Appends each finished epoch's logs to `history.json` (atomically), after earlier epochs."""

  def __init__(self, output_dir: str, earlier: List[Dict[str, float]]):
    super().__init__()
    self.path = os.path.join(output_dir, HISTORY_FILE)
    self.epochs = list(earlier)

  def on_epoch_end(self, epoch, logs=None):
    self.epochs.append({k: float(v) for k, v in (logs or {}).items()})
    io_utils.write_json(self.path, {"epochs": self.epochs})

  def history(self) -> Dict[str, List[float]]:
    """Keras-style history: metric -> one value per epoch, earlier epochs included."""
    keys = dict.fromkeys(k for e in self.epochs for k in e)
    return {k: [e.get(k, float("nan")) for e in self.epochs] for k in keys}


class RaiseOnNonFinite(tf.keras.callbacks.Callback):
  """Raises NonFiniteLossError at the first batch whose loss is NaN or Inf."""

  def on_train_batch_end(self, batch, logs=None):
    loss = (logs or {}).get("loss")
    if loss is not None and not math.isfinite(float(loss)):
      raise NonFiniteLossError(
        f"The training loss became {float(loss)} at batch {batch}; nothing was saved as done. "
        "Lower --learning_rate or check the data for extreme values."
      )


class ExitAfterEpoch(tf.keras.callbacks.Callback):
  """Ends the process with status 3 right after epoch `epoch` (1-based) has been backed up, as a
  kill at that point would (no clean-up runs): how tests interrupt a job at a known point."""

  def __init__(self, epoch: int):
    super().__init__()
    self.epoch = epoch

  def on_epoch_end(self, epoch, logs=None):
    if epoch + 1 >= self.epoch:
      print(f"interrupted after epoch {epoch + 1} (--interrupt_after_epoch)", flush=True)
      os._exit(3)


def finite_positive(name: str, value: float) -> None:
  """Raises ValueError unless `value` is a finite number > 0, naming the setting."""
  if value is None or not math.isfinite(value) or value <= 0:
    raise ValueError(f"`{name}` must be a finite positive number. Received: {name}={value}")
