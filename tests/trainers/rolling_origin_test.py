"""Tests of the rolling-origin protocol: cuts on a hand-made table, the pooled user bootstrap, bad
flags, and one tiny end-to-end run (with its resumption) on synthetic data."""

import json
import os

import numpy as np
import pandas as pd

from features import schema
from model import metrics as metrics_lib
from tests import base
from tests.base import tf
from trainers import artifacts, rolling_origin, rolling_origin_report

TINY = (
  "--synthetic_items=300",
  "--synthetic_users=60",
  "--synthetic_interactions=3000",
  "--synthetic_dim=8",
)

# Eleven interactions 100 s apart, so quantile q of the timestamps is exactly 1000 * q.
#            t     user item click
_ROWS = [
  (0, "a", 1, 1),
  (100, "b", 1, 0),
  (200, "a", 2, 1),
  (300, "b", 2, 1),
  (400, "a", 1, 0),
  (500, "c", 3, 1),  # cut q0.5 starts here: item 3 is new
  (600, "a", 2, 0),
  (700, "b", 3, 0),  # cut q0.7 starts here: item 3 is now known
  (800, "a", 4, 1),  # item 4 is new
  (900, "c", 4, 0),  # after both windows (q0.7's ends at quantile 0.9 = 900, exclusive)
  (1000, "b", 5, 1),
]


def _interactions():
  t, user, item, click = zip(*_ROWS)
  return pd.DataFrame(
    {
      "user_id": list(user),
      "item_id": np.array(item, np.int64),
      "timestamp": np.array(t, np.int64),
      "click": np.array(click, np.int8),
      "second_label": np.zeros(len(t), np.float32),
    }
  )


def _times(frame):
  return frame["timestamp"].tolist()


class CutsTest(base.TestCase):
  def test_cuts_train_before_and_test_a_window_after(self):
    rows = _interactions()
    cuts = rolling_origin.make_cuts(rows["timestamp"], [0.5, 0.7], 0.2)
    self.assertEqual(
      [(c.name, c.start, c.end) for c in cuts], [("q0.5", 500, 700), ("q0.7", 700, 900)]
    )
    first, second = (rolling_origin.cut_split(rows, c) for c in cuts)
    self.assertEqual(_times(first.train), [0, 100, 200, 300, 400])
    self.assertEqual(_times(first.eval), [500, 600])
    self.assertEqual(first.eval["cold"].tolist(), [True, False])
    self.assertEqual(first.cold_item_ids.tolist(), [3])
    self.assertEqual(_times(second.train), [0, 100, 200, 300, 400, 500, 600])
    self.assertEqual(_times(second.eval), [700, 800])
    self.assertEqual(second.eval["cold"].tolist(), [False, True])  # item 3 was seen at t=500.
    # Validation: the training window's rows at or after its 0.8 quantile (320 and 480).
    val = artifacts.validation_split(first)
    self.assertEqual((_times(val.train), _times(val.eval)), ([0, 100, 200, 300], [400]))
    val = artifacts.validation_split(second)
    self.assertEqual((_times(val.train), _times(val.eval)), ([0, 100, 200, 300, 400], [500, 600]))
    self.assertEqual(val.eval["cold"].tolist(), [True, False])
    for split in (first, second):  # No test row is, or precedes, a training row.
      self.assertLess(split.train["timestamp"].max(), split.eval["timestamp"].min())

  def test_a_window_reaching_quantile_one_runs_to_the_end(self):
    rows = _interactions()
    (cut,) = rolling_origin.make_cuts(rows["timestamp"], [0.8], 0.2)
    self.assertEqual((cut.start, cut.end), (800, None))
    self.assertEqual(_times(rolling_origin.cut_split(rows, cut).eval), [800, 900, 1000])

  def test_sids_learn_only_from_items_seen_before_the_cut(self):
    rows = _interactions()
    items = pd.DataFrame({"item_id": np.arange(1, 6, dtype=np.int64), "first_seen": np.zeros(5)})
    embeddings = np.arange(10, dtype=np.float32).reshape(5, 2)
    dataset = schema.Dataset("toy", items, embeddings, rows)
    cut = rolling_origin.make_cuts(rows["timestamp"], [0.7], 0.2)[0]
    seen = rolling_origin.seen_items(dataset, rolling_origin.cut_split(rows, cut).train)
    self.assertEqual(seen.items["item_id"].tolist(), [1, 2, 3])
    self.assertAllEqual(seen.embeddings, embeddings[:3])
    self.assertEqual(seen.interactions["timestamp"].max(), 600)

  @base.parameterized.named_parameters(
    ("not_increasing", [0.7, 0.5], 0.1, "--cut_quantiles must be strictly increasing"),
    ("outside_0_1", [0.0, 0.5], 0.1, "--cut_quantiles must be strictly increasing"),
    ("window_past_the_end", [0.5, 0.9], 0.2, "--window_quantile must be in"),
  )
  def test_bad_quantiles(self, quantiles, window, message):
    with self.assertRaisesRegex(ValueError, message):
      rolling_origin.make_cuts(_interactions()["timestamp"], quantiles, window)

  def test_cuts_that_leave_nothing_to_train_or_test(self):
    rows = _interactions()
    (early,) = rolling_origin.make_cuts(rows["timestamp"], [0.05], 0.1)  # Training: one row.
    with self.assertRaisesRegex(ValueError, r"cut at quantile 0.05 .* unusable: .*leaves 0 train"):
      rolling_origin.cut_split(rows, early)
    (empty,) = rolling_origin.make_cuts(rows["timestamp"], [0.51], 0.02)  # Test window [510, 530).
    with self.assertRaisesRegex(ValueError, r"cut at quantile 0.51 .* 0 evaluation rows"):
      rolling_origin.cut_split(rows, empty)
    tied = rows.assign(timestamp=np.r_[np.zeros(6, np.int64), rows["timestamp"][6:]])
    with self.assertRaisesRegex(ValueError, "coincide"):
      rolling_origin.make_cuts(tied["timestamp"], [0.2, 0.4], 0.1)


class PooledBootstrapTest(base.TestCase):
  def test_resampling_draws_a_users_rows_together(self):
    clusters = np.array(["a", "b", "a", "c", "a", "b"])
    codes, draws = rolling_origin_report.resample_weights(clusters, 50, seed=1)
    self.assertEqual(codes.tolist(), [0, 1, 0, 2, 0, 1])
    self.assertEqual(draws.shape, (50, 3))
    self.assertAllEqual(draws.sum(axis=1), np.full(50, 3.0))
    rows = draws[:, codes]
    self.assertAllEqual(rows[:, 0], rows[:, 2])
    self.assertAllEqual(rows[:, 0], rows[:, 4])

  def test_weighted_auc_matches_the_metrics_auc(self):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    scores = rng.integers(0, 5, 50).astype(float)  # Many ties.
    clusters = rng.integers(0, 10, 50)
    weights = rng.integers(0, 3, (4, 10)).astype(float)
    expected = [metrics_lib.auc(labels, scores, w[clusters]) for w in weights]
    auc = rolling_origin_report.WeightedAuc(labels, scores, clusters)
    self.assertAllClose(auc(weights), expected)

  def test_pooled_differences_keep_users_together(self):
    # Users a and b, each with one positive and one negative row in each of two cuts. Scheme A
    # ranks a's cut-0 rows right and its cut-1 rows wrong; hashing the other way round; both rank
    # b right. Per user, over the cuts, A and hashing tie exactly, so a bootstrap that draws a
    # user's rows together gives 0 in every resample; one that splits them by cut does not.
    per_cut = []
    for cut in (0, 1):
      right, wrong = np.array([0.0, 1.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0, 1.0])
      common = {
        "click": np.array([0, 1, 0, 1], np.float32),
        "user_id": np.array(["a", "a", "b", "b"]),
        "cold": np.ones(4, bool),
      }
      scheme, hashing = (right, wrong) if cut == 0 else (wrong, right)
      per_cut.append(({**common, "ctr": scheme}, {**common, "ctr": hashing}))
    a = rolling_origin_report.pool([[p[0]] for p in per_cut])
    b = rolling_origin_report.pool([[p[1]] for p in per_cut])
    self.assertEqual(a["group"].tolist(), ["0:a", "0:a", "0:b", "0:b", "1:a", "1:a", "1:b", "1:b"])
    self.assertEqual(a["ctr"].shape, (1, 8))

    def bootstrap(clusters):
      return rolling_origin_report.clustered_bootstrap(
        a["click"], clusters, a["group"], list(a["ctr"]), list(b["ctr"]), "gauc", min_groups=1
      )

    together = bootstrap(a["user_id"])
    self.assertAllClose([together["value"], together["low"], together["high"]], [0, 0, 0])
    self.assertEqual(together["groups"], 4)
    split = bootstrap(a["group"])  # Resampling (cut, user) pairs instead: no longer zero.
    self.assertAllClose(split["value"], 0.0)
    self.assertLess(split["low"], -0.1)
    self.assertGreater(split["high"], 0.1)

  def test_gauc_too_small_and_groups_spanning_users(self):
    labels = np.array([0, 1, 0, 1], np.float64)
    scores = [np.array([0.0, 1.0, 0.0, 1.0])]
    users = np.array(["a", "a", "b", "b"])
    small = rolling_origin_report.clustered_bootstrap(labels, users, users, scores, None, "gauc")
    self.assertEqual((small["too_small"], small["value"], small["groups"]), (True, None, 2))
    auc = rolling_origin_report.clustered_bootstrap(labels, users, users, scores, None, "auc", 20)
    self.assertEqual((auc["value"], auc["low"], auc["high"]), (1.0, 1.0, 1.0))
    with self.assertRaisesRegex(ValueError, "inside one cluster"):
      rolling_origin_report.clustered_bootstrap(
        labels, users, np.array(["g"] * 4), scores, scores, "gauc", 5, min_groups=1
      )


def _error_lines(result):
  return [line for line in result.stderr.splitlines() if line.startswith("error:")]


class RollingOriginJobTest(base.TestCase):
  def test_bad_flags_give_one_line(self):
    out = os.path.join(self.get_temp_dir(), "never")
    probes = (
      (
        ("--cut_quantiles=0.8,0.7",),
        "--cut_quantiles must be strictly increasing numbers in (0, 1)",
      ),
      (("--split=new_items",), "--split does not apply: this job makes its own splits"),
      (
        ("--cut_quantiles=0.5", "--window_quantile=0.000001", *TINY),
        "The cut at quantile 0.5 (test window",
      ),
    )
    results = base.run_module_probes(
      "trainers.rolling_origin", *((f"--output_dir={out}", *args) for args, _ in probes)
    )
    for (args, message), result in zip(probes, results):
      with self.subTest(args=args):
        self.assertEqual(result.returncode, 2, result.stderr[-2000:])
        self.assertEqual(len(_error_lines(result)), 1, result.stderr[-2000:])
        self.assertIn(message, _error_lines(result)[0])
        self.assertNotIn("Traceback", result.stderr)

  def test_tiny_run_end_to_end_and_resumes(self):
    out = os.path.join(self.get_temp_dir(), "rolling")
    args = (
      *TINY,
      "--cut_quantiles=0.6,0.8",
      "--window_quantile=0.2",
      "--schemes=spm",
      "--table_rows=40",
      "--seeds=1",
      "--epochs=1",
      "--sid_levels=2",
      "--sid_codebook_size=4",
      "--rqvae_epochs=1",
      "--bootstrap=20",
      f"--output_dir={out}",
    )
    done = base.run_module("trainers.rolling_origin", *args, timeout=300)
    self.assertEqual(done.returncode, 0, done.stderr[-3000:])
    for name in ("results.json", "results.md", "per_cut.png", "vs_hash.png"):
      self.assertGreater(os.path.getsize(os.path.join(out, name)), 100, name)
    for cut in ("q0.6", "q0.8"):
      self.assertTrue(os.path.isdir(os.path.join(out, "cuts", cut, "rqvae")), cut)
      self.assertTrue(os.path.isfile(os.path.join(out, "cuts", cut, "spm", "spm_40.model")))
      run = os.path.join(out, "cuts", cut, "runs", "on", "spm_40", "seed0", "metrics.json")
      with open(run) as f:
        self.assertEqual(json.load(f)["data"]["cut"]["name"], cut)
    with open(os.path.join(out, "results.json")) as f:
      results = json.load(f)
    first, second = results["cuts"]
    self.assertEqual((first["name"], second["name"]), ("q0.6", "q0.8"))
    self.assertEqual(second["end"], None)
    self.assertLess(first["sid_items"], second["sid_items"])  # Only items seen before each cut.
    self.assertLess(second["sid_items"], 300)
    self.assertEqual(
      first["counts"]["n_train"] + first["counts"]["n_eval"], second["counts"]["n_train"]
    )
    pooled = results["pooled"]
    self.assertEqual(pooled["rows"], first["counts"]["n_eval"] + second["counts"]["n_eval"])
    self.assertEqual([e["scheme"] for e in pooled["entries"]], ["hash", "spm"])
    self.assertIn("gauc_cold", pooled["entries"][1]["vs_hash"])
    self.assertIn("seeds", results["protocol"]["deviations"])
    with open(os.path.join(out, "results.md")) as f:
      self.assertIn("This run departs from it: --bootstrap=20", f.read())
    again = base.run_module("trainers.rolling_origin", *args, timeout=300)
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    self.assertIn("q0.8/runs/on/spm_40/seed0 already holds this finished run", again.stdout)
    self.assertIn(f"reusing {out}/cuts/q0.6/rqvae", again.stdout)


if __name__ == "__main__":
  tf.test.main()
