"""Tests of the experiment's aggregation, validation choice and reports, on hand-made runs."""

import os

import numpy as np

from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import tf
from trainers import experiment_report

Run = experiment_report.Run


def _metrics(auc_all, gauc_cold):
  slices = {}
  for name in experiment_report.SLICES:
    slices[name] = {"auc": auc_all, "gauc": gauc_cold, "rows": 10}
  return {
    "test": slices,
    "validation": slices,
    "table_rows": 100,
    "train_examples_per_s": 1.0,
    "train_time_s": 1.0,
    "epochs_run": 1,
  }


def _predictions(seed, good):
  rng = np.random.default_rng(seed)
  n = 400
  users = np.repeat(np.arange(40), 10).astype(str)
  click = rng.integers(0, 2, n).astype(np.float32)
  noise = rng.normal(size=n)
  ctr = click * (2.0 if good else 0.0) + noise
  return {"click": click, "user_id": users, "cold": np.arange(n) % 2 == 0, "ctr": ctr}


class ExperimentReportTest(base.TestCase):
  def test_summary_choice_and_reports(self):
    runs = [Run("on", s, 100, seed) for s in ("hash", "spm", "dense") for seed in (0, 1)]
    quality = {"hash": (0.70, 0.55), "spm": (0.72, 0.65), "dense": (0.69, 0.70)}
    results = {r.key: _metrics(*quality[r.scheme]) for r in runs}
    preds = {r.key: _predictions(r.seed, good=r.scheme == "spm") for r in runs}
    summary = experiment_report.summarize(
      runs, results, lambda r: preds[r.key], [100], lambda s, r: [r], n_boot=30
    )
    by_scheme = {e["scheme"]: e for e in summary["entries"]}
    self.assertAlmostEqual(by_scheme["spm"]["test"]["all"]["auc"]["mean"], 0.72)
    self.assertAlmostEqual(by_scheme["spm"]["validation_vs_hash"]["gauc_cold"], 0.10)
    self.assertGreater(by_scheme["spm"]["vs_hash"]["auc_all"]["low"], 0.0)
    self.assertNotIn("vs_hash", by_scheme["hash"])
    # dense has the best validation cold GAUC but is below hashing's validation AUC: not chosen.
    self.assertEqual(summary["selection"]["chosen"]["scheme"], "spm")
    self.assertEqual(summary["selection_sid"]["chosen"]["scheme"], "spm")
    text = experiment_report.markdown(summary)
    self.assertIn("| spm | 100 | 100 |", text)
    self.assertIn("Chosen: spm", text)
    self.assertIn("Dense content input vs hashing (the paper's replication check)", text)
    path = os.path.join(self.get_temp_dir(), "plot.png")
    experiment_report.plot(summary, "on", path)
    experiment_report.bar_plot(summary, path + ".bar.png")
    self.assertGreater(os.path.getsize(path), 1000)


if __name__ == "__main__":
  tf.test.main()
