"""Runs trainers.train_rqvae as a user would: a tiny run, a re-run, a resume, bad flags."""

import json
import os
import sys

import tensorflow as tf

from model import rqvae
from tests import base

ROOT = base.ROOT
TINY = [
  "--dataset=synthetic",
  "--synthetic_items=300",
  "--synthetic_users=20",
  "--synthetic_interactions=500",
  "--synthetic_dim=16",
  "--num_levels=2",
  "--codebook_size=8",
  "--latent_dim=8",
  "--batch_size=64",
  "--verbose=2",
]


def _command(*flags):
  return [sys.executable, "-m", "trainers.train_rqvae", *TINY, *flags]


def _run(*flags, check=True):
  return base.run_module("trainers.train_rqvae", *TINY, *flags, check=check)


class TrainRqvaeTest(base.TestCase):
  def test_trains_writes_outputs_and_skips_a_finished_rerun(self):
    out = os.path.join(self.get_temp_dir(), "run")
    result = _run(f"--output_dir={out}", "--epochs=2")
    self.assertIn("Epoch 2/2", result.stdout)
    with open(os.path.join(out, "metrics.json")) as f:
      metrics = json.load(f)
    self.assertTrue(metrics["completed"])
    self.assertEqual([r["epoch"] for r in metrics["epochs"]], [1, 2])
    for key in ("utilization", "perplexity", "item_utilization"):
      self.assertLen(metrics["epochs"][-1][key], 2)
    for key in ("reconstruction_loss", "commitment_loss", "codebook_loss"):
      self.assertIn(key, metrics["epochs"][-1])
    final = metrics["final"]
    self.assertBetween(final["unique_sid_fraction"], 0.0, 1.0)
    self.assertGreaterEqual(final["max_items_per_sid"], 1)
    self.assertEqual(final["n_items"], 300)
    self.assertTrue(os.path.getsize(os.path.join(out, "utilization.png")) > 1000)
    self.assertFalse(os.path.exists(os.path.join(out, "backup")))
    model = rqvae.load_rqvae(os.path.join(out, "model"))
    self.assertEqual(rqvae.fingerprint(model), metrics["fingerprint"])
    self.assertEqual(model.config.codebook_size, 8)
    again = _run(f"--output_dir={out}", "--epochs=2")
    self.assertIn("nothing to do", again.stdout)
    other = _run(f"--output_dir={out}", "--epochs=3", check=False)
    self.assertNotEqual(other.returncode, 0)
    self.assertIn("holds a run with other settings", other.stderr)

  def test_resumes_after_interruption(self):
    out = os.path.join(self.get_temp_dir(), "run")
    flags = (f"--output_dir={out}", "--epochs=4")
    # Ends the process like a kill, right after epoch 2 is backed up: a known point, no timer.
    killed = _run(*flags, "--interrupt_after_epoch=2", check=False)
    self.assertEqual(killed.returncode, 3, killed.stderr[-2000:])
    metrics_path = os.path.join(out, "metrics.json")
    with open(metrics_path) as f:
      self.assertEqual(len(json.load(f)["epochs"]), 2)
    result = _run(*flags)
    self.assertNotIn("Epoch 1/4", result.stdout)  # Restored from the backup, not from scratch.
    self.assertIn("Epoch 3/4", result.stdout)
    with open(metrics_path) as f:
      metrics = json.load(f)
    self.assertTrue(metrics["completed"])
    self.assertEqual([r["epoch"] for r in metrics["epochs"]], [1, 2, 3, 4])

  def test_bad_flags(self):
    result = _run(f"--output_dir={self.get_temp_dir()}/x", "--codebook_size=0", check=False)
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("--codebook_size must be positive. Received: --codebook_size=0", result.stderr)


if __name__ == "__main__":
  tf.test.main()
