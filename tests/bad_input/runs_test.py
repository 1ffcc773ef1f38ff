"""Bad-input probes of training runs and artifacts: re-runs with the same or other settings, kills,
truncated backups and files, NaN losses, corrupt RQ-VAE / SentencePiece / checkpoint files. Each
must either do the right thing (reuse, resume, retrain) or fail with one clear message."""

import json
import os
import re

from features import datasets, splits, synthetic
from model import ranker, rqvae, schemes
from tests import base
from tests.base import tf
from trainers import artifacts, ranker_training, run_dir, train_ranker

_DATA = {}
# The data flags of the command-line probes (D = 8, as `_data()`).
TINY = (
  "--synthetic_items=300",
  "--synthetic_users=30",
  "--synthetic_interactions=2000",
  "--synthetic_dim=8",
)


def _data():
  if not _DATA:
    data = datasets.load_dataset(
      "synthetic",
      synthetic_config=synthetic.SyntheticConfig(
        n_items=200, n_users=40, n_interactions=2000, embedding_dim=8, seed=3
      ),
    )
    _DATA.update(data=data, split=splits.split_dataset(data, "new_items"))
  return _DATA["data"], _DATA["split"]


class _Killed(Exception):
  pass


class KillAfterEpoch(tf.keras.callbacks.Callback):
  """Raises after epoch 1's backup and history are written, as a kill at that point would."""

  def on_epoch_end(self, epoch, logs=None):
    if epoch == 0:
      raise _Killed()


def _fit(out, scheme="hash", epochs=3, lr=3e-3, on_mismatch="refuse", callbacks=()):
  data, split = _data()
  return ranker_training.fit_and_evaluate(
    data,
    split,
    schemes.ItemRepresentationConfig(scheme, embedding_dim=4, table_rows=50),
    ranker.RankerConfig(second_label_name=data.second_label_name, history_length=3),
    ranker_training.TrainConfig(epochs=epochs, batch_size=256, learning_rate=lr, patience=5,
                                verbose=0),
    out,
    on_mismatch=on_mismatch,
    callbacks=callbacks,
  )  # fmt: skip


class RunProbesTest(base.TestCase):
  def test_rerun_reuses_and_other_settings_refuse_or_replace(self):
    out = os.path.join(self.get_temp_dir(), "run")
    first = _fit(out, epochs=1)
    again = _fit(out, epochs=1)
    self.assertEqual(again["train_time_s"], first["train_time_s"])  # Reused, not retrained.
    with self.assertRaisesRegex(
      run_dir.RunMismatchError, r"other settings \(train\.epochs: 1 -> 2\).*--overwrite"
    ):
      _fit(out, epochs=2)
    with self.assertRaisesRegex(run_dir.RunMismatchError, r"item_representation\.scheme"):
      _fit(out, scheme="dense", epochs=1)
    replaced = _fit(out, epochs=2, on_mismatch="replace")
    self.assertEqual(replaced["identity"]["train"]["epochs"], 2)

  def test_killed_run_resumes_with_every_epoch_in_its_metrics(self):
    out = os.path.join(self.get_temp_dir(), "killed")
    with self.assertRaises(_Killed):
      _fit(out, callbacks=[KillAfterEpoch()])
    self.assertTrue(os.path.isdir(os.path.join(out, "backup")))
    self.assertFalse(os.path.exists(os.path.join(out, "metrics.json")))
    result = _fit(out)
    self.assertEqual(result["epochs_run"], 3)
    self.assertLen(result["history"]["loss"], 3)
    self.assertFalse(os.path.exists(os.path.join(out, "backup")))

  def test_truncated_backup_restarts_training(self):
    out = os.path.join(self.get_temp_dir(), "truncated")
    with self.assertRaises(_Killed):
      _fit(out, callbacks=[KillAfterEpoch()])
    for root, _, files in os.walk(os.path.join(out, "backup")):
      for name in files:
        if "data" in name:
          path = os.path.join(root, name)
          with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    result = _fit(out)
    self.assertEqual(result["epochs_run"], 3)

  def test_truncated_metrics_or_run_file_is_not_trusted(self):
    out = os.path.join(self.get_temp_dir(), "files")
    _fit(out, epochs=1)
    with open(os.path.join(out, "metrics.json"), "r+") as f:
      f.truncate(20)
    result = _fit(out, epochs=1)  # Retrained: a truncated metrics.json is not a finished run.
    self.assertIn("test", result)
    with open(os.path.join(out, "run.json"), "w") as f:
      f.write("{")
    self.assertIn("test", _fit(out, epochs=1))

  def test_nan_loss_stops_with_an_error_and_saves_nothing_as_done(self):
    out = os.path.join(self.get_temp_dir(), "nan")
    with self.assertRaisesRegex(run_dir.NonFiniteLossError, r"loss became (nan|inf) at batch"):
      _fit(out, lr=1e30, epochs=2)
    self.assertFalse(os.path.exists(os.path.join(out, "metrics.json")))
    with self.assertRaisesRegex(ValueError, r"`learning_rate` must be a finite positive number"):
      ranker_training.TrainConfig(learning_rate=float("nan"))
    with self.assertRaisesRegex(ValueError, r"Received: learning_rate=-1"):
      ranker_training.TrainConfig(learning_rate=-1)


class ArtifactProbesTest(base.TestCase):
  def test_truncated_rqvae_weights(self):
    data, _ = _data()
    model = artifacts.train_rqvae(
      data, artifacts.SidConfig(num_levels=2, codebook_size=4, latent_dim=8, epochs=1)
    )
    path = os.path.join(self.get_temp_dir(), "rqvae")
    rqvae.save_rqvae(model, path)
    for name in os.listdir(path):
      if "data" in name:
        with open(os.path.join(path, name), "r+b") as f:
          f.truncate(10)
    with self.assertRaisesRegex(rqvae.RQVAEFormatError, r"Cannot read the RQ-VAE weights in"):
      rqvae.load_rqvae(path)

  def test_corrupt_spm_model(self):
    with self.assertRaisesRegex(ValueError, r"m.model is not a readable SentencePiece model"):
      artifacts.check_spm_proto(b"\x00garbage", "m.model")

  def test_corrupt_spm_cache_entry_is_recomputed(self):
    data, split = _data()
    folder = os.path.join(self.get_temp_dir(), "cache")
    config = artifacts.SidConfig(num_levels=2, codebook_size=4, latent_dim=8, epochs=1)
    proto = artifacts.SidArtifacts(data, split, folder, config, verbose=0).spm(20)
    with open(os.path.join(folder, "spm", "spm_20.model"), "r+b") as f:
      f.truncate(30)
    again = artifacts.SidArtifacts(data, split, folder, config, verbose=0).spm(20)
    self.assertEqual(again, proto)

  def test_changed_settings_retrain_the_cached_rqvae(self):
    data, split = _data()
    folder = os.path.join(self.get_temp_dir(), "cache2")
    small = artifacts.SidConfig(num_levels=2, codebook_size=4, latent_dim=8, epochs=1)
    a = artifacts.SidArtifacts(data, split, folder, small, verbose=0).fingerprint
    same = artifacts.SidArtifacts(data, split, folder, small, verbose=0).fingerprint
    self.assertEqual(a, same)
    other = artifacts.SidConfig(num_levels=2, codebook_size=4, latent_dim=8, epochs=1, seed=5)
    b = artifacts.SidArtifacts(data, split, folder, other, verbose=0).fingerprint
    self.assertNotEqual(a, b)
    with open(os.path.join(folder, "rqvae.identity.json")) as f:
      self.assertEqual(json.load(f)["sid_config"]["seed"], 5)

  def test_spm_model_of_another_rqvae_is_refused(self):
    """train_ranker --spm_model=M with M trained (train_spm) on the SIDs of RQ-VAE A, and
    --rqvae_dir=B: refused before training, naming both RQ-VAEs."""
    data, _ = _data()
    folder = self.get_temp_dir()
    dirs, prints = {}, {}
    for name, seed in (("a", 1), ("b", 2)):
      config = artifacts.SidConfig(num_levels=2, codebook_size=4, latent_dim=8, epochs=1, seed=seed)
      dirs[name] = os.path.join(folder, f"rqvae_{name}")
      rqvae.save_rqvae(artifacts.train_rqvae(data, config), dirs[name])
      prints[name] = rqvae.fingerprint(rqvae.load_rqvae(dirs[name]))
    self.assertNotEqual(prints["a"], prints["b"])
    sids, spm_model = os.path.join(folder, "sids_a.npz"), os.path.join(folder, "spm_a.model")
    base.run_module(
      "trainers.assign_sids", f"--rqvae_dir={dirs['a']}", f"--output={sids}", *TINY, check=True
    )
    base.run_module(
      "trainers.train_spm", f"--sids={sids}", "--vocab_size=12", f"--output={spm_model}", *TINY,
      check=True,
    )  # fmt: skip
    result = base.run_module(
      "trainers.train_ranker",
      "--item_representation=spm",
      f"--rqvae_dir={dirs['b']}",
      f"--spm_model={spm_model}",
      f"--output_dir={os.path.join(folder, 'ranker')}",
      *TINY,
    )
    self.assertEqual(result.returncode, 2, result.stderr[-2000:])
    self.assertEqual(
      result.stderr.strip().splitlines()[-1],
      f"error: ValueError: --spm_model={spm_model} was trained on SIDs of RQ-VAE "
      f"{prints['a'][:12]}, but this ranker uses RQ-VAE {prints['b'][:12]} "
      f"(--rqvae_dir={dirs['b']}): pass the RQ-VAE it was made with, or train a SentencePiece "
      "model on this one's SIDs.",
    )
    self.assertNotIn("Traceback", result.stderr)
    self.assertFalse(os.path.exists(os.path.join(folder, "ranker", "metrics.json")))
    os.remove(spm_model + ".stats.json")  # A model with no record of its RQ-VAE is refused too.
    with self.assertRaises(ValueError) as raised:
      train_ranker.check_spm_model(spm_model, prints["a"])
    self.assertRegex(
      str(raised.exception),
      rf"^--spm_model={re.escape(spm_model)}: cannot tell which RQ-VAE its SIDs came from "
      rf"\({re.escape(spm_model)}\.stats\.json: .*No such file.*\); train it with "
      r"trainers\.train_spm, which records it\.$",
    )

  def test_truncated_ranker_checkpoint(self):
    out = os.path.join(self.get_temp_dir(), "saved")
    _fit(out, epochs=1)
    for name in os.listdir(os.path.join(out, "checkpoint")):
      if "data" in name:
        with open(os.path.join(out, "checkpoint", name), "r+b") as f:
          f.truncate(10)
    with self.assertRaisesRegex(ValueError, r"Cannot restore the ranker weights in .*checkpoint"):
      ranker_training.load_ranker(out)
    with open(os.path.join(out, "ranker_config.json"), "w") as f:
      f.write('{"format_')
    with self.assertRaisesRegex(ValueError, r"ranker_config.json is not readable JSON"):
      ranker_training.load_ranker(out)


if __name__ == "__main__":
  tf.test.main()
