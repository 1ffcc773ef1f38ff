"""Tests for the describe_data CLI (run as a subprocess, as a user would; the bad-flag runs share
one interpreter, `base.run_module_probes`)."""

import json
import os

import tensorflow as tf

from tests import base

_SMALL = ["--synthetic_items=300", "--synthetic_users=40", "--synthetic_interactions=3000"]


run_job = base.run_module


class DescribeDataTest(base.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # Both bad-flag runs fail before any work: one interpreter runs them.
    cls.bad_split, cls.bad_fraction = base.run_module_probes(
      "trainers.describe_data",
      ("--split=random",),
      (*_SMALL, "--split=new_items", "--cold_item_fraction=2"),
    )

  def test_writes_the_summary_json(self):
    out = os.path.join(self.get_temp_dir(), "sub", "summary.json")
    proc = run_job("trainers.describe_data", *_SMALL, "--split=global_time", f"--output_json={out}")
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    with open(out) as f:
      summary = json.load(f)
    for key in ("n_items", "n_users", "n_interactions", "n_train", "n_eval", "n_cold_eval",
                "n_cold_items", "n_eval_rows_unknown_user"):  # fmt: skip
      self.assertIn(key, summary)
    self.assertEqual(summary["n_interactions"], 3000)
    self.assertEqual(summary["n_train"] + summary["n_eval"], 3000)
    self.assertIn("split global_time", proc.stdout)

  def test_bad_flag_value_is_named(self):
    proc = self.bad_split
    self.assertNotEqual(proc.returncode, 0)
    self.assertIn("flag --split=random", proc.stderr)

  def test_bad_fraction_is_named(self):
    proc = self.bad_fraction
    self.assertNotEqual(proc.returncode, 0)
    self.assertIn("cold_item_fraction=2", proc.stderr)


if __name__ == "__main__":
  tf.test.main()
