"""End-to-end test of `trainers.pipeline` and `trainers.experiment` on tiny synthetic data."""

import json
import os

from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import tf

TINY = [
  "--synthetic_items=300",
  "--synthetic_users=60",
  "--synthetic_interactions=3000",
  "--synthetic_dim=8",
  "--sid_codebook_size=4",
  "--sid_levels=2",
  "--bootstrap=10",
]


def _run(module, *args):
  return base.run_module(module, *TINY, *args)


class PipelineTest(base.TestCase):
  def test_pipeline_runs_end_to_end_and_resumes(self):
    out = os.path.join(self.get_temp_dir(), "pipeline")
    args = (
      "--schemes=hash,spm,hybrid",
      "--hybrid_sid_scheme=spm",  # Needs its own SPM model at the SID part's share (20 rows).
      "--table_rows=40",
      "--rqvae_epochs=1",
      "--epochs=1",
      f"--output_dir={out}",
    )
    done = _run("trainers.pipeline", *args)
    self.assertEqual(done.returncode, 0, done.stderr[-3000:])
    for name in (
      "data_summary.json",
      "sids.npz",
      "comparison.md",
      "comparison.png",
      "rankers/spm/ranker_config.json",
      "rankers/spm/checkpoint",
      "rqvae.identity.json",
      "spm/spm_20.model.identity.json",
      "rankers/hash/metrics.json",
      "rankers/hybrid/metrics.json",
      "spm/spm_20.model",
    ):
      self.assertTrue(os.path.exists(os.path.join(out, name)), name)
    with open(os.path.join(out, "comparison.json")) as f:
      schemes = [e["scheme"] for e in json.load(f)["entries"]]
    self.assertEqual(schemes, ["hash", "hybrid", "spm"])  # hash first, then by name.
    again = _run("trainers.pipeline", *args)
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    self.assertIn(f"{out}/rankers/spm already holds this finished run", again.stdout)
    self.assertIn(f"reusing {out}/rqvae", again.stdout)

  def test_experiment_cli(self):
    out = os.path.join(self.get_temp_dir(), "experiment")
    done = _run(
      "trainers.experiment",
      "--schemes=unigram",
      "--table_rows=10,20,40",
      "--seeds=1",
      "--history=on",
      "--epochs=1",
      "--rqvae_epochs=1",
      f"--output_dir={out}",
    )
    self.assertEqual(done.returncode, 0, done.stderr[-3000:])
    with open(os.path.join(out, "results.json")) as f:
      results = json.load(f)
    # hash at 3 budgets, unigram once (its 8 rows fit every budget) shown at 3, the floor.
    self.assertEqual(len(results["runs"]), 5)
    self.assertEqual(len(results["entries"]), 7)
    self.assertTrue(os.path.isfile(os.path.join(out, "auc_vs_table_size_history_on.png")))
    bad = _run("trainers.experiment", "--schemes=nope", f"--output_dir={out}")
    self.assertNotEqual(bad.returncode, 0)
    self.assertIn("nope", bad.stderr)


if __name__ == "__main__":
  tf.test.main()
