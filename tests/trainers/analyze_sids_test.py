"""Runs trainers.analyze_sids as a user would, on tiny synthetic data and a tiny MovieLens copy."""

import json
import os

import numpy as np
import pandas as pd

from features import datasets, synthetic
from tests import base
from tests.base import tf

TINY = synthetic.SyntheticConfig(n_items=300, n_users=20, n_interactions=2000, embedding_dim=16)
DATA = (
  f"--synthetic_items={TINY.n_items}",
  f"--synthetic_users={TINY.n_users}",
  f"--synthetic_interactions={TINY.n_interactions}",
  f"--synthetic_dim={TINY.embedding_dim}",
)
SMALL = (
  "--sid_levels=2",
  "--sid_codebook_size=4",
  "--rqvae_epochs=1",
  "--epochs=1",
  "--bootstrap=20",
  "--permutations=2",
)
OUTPUTS = ("analysis.json", "analysis.md", "agreement.png", "subtrie_sizes.png")
OUTPUTS += ("prefix_similarity.png", "category_agreement.png")


def _run(*flags, check=True):
  return base.run_module("trainers.analyze_sids", *flags, check=check)


def _read_json(path):
  with open(path) as f:
    return json.load(f)


class AnalyzeSidsTest(base.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.out = os.path.join(tf.compat.v1.test.get_temp_dir(), "analysis")
    cls.result = _run(f"--output_dir={cls.out}", *DATA, *SMALL, "--noranker_history")
    cls.analysis = _read_json(os.path.join(cls.out, "analysis.json"))

  def test_writes_every_output(self):
    for name in OUTPUTS:
      with open(os.path.join(self.out, name), "rb") as f:
        head = f.read(8)
      if name.endswith(".png"):
        self.assertEqual(head, b"\x89PNG\r\n\x1a\n", name)
    self.assertIn("## Findings", self.result.stdout)
    self.assertIn("RQ-VAE versions", self.result.stderr)  # tqdm progress.

  def test_versions_and_stability(self):
    a = self.analysis
    self.assertCountEqual(a["versions"], ["reference", "early", "seed1"])
    self.assertEqual(a["versions"]["reference"]["trained_on_items"], TINY.n_items)
    self.assertEqual(a["versions"]["early"]["trained_on_items"], 240)  # first_seen before q=0.8
    early = a["stability"]["reference_vs_early"]["subsets"]
    self.assertEqual({k: v["items"] for k, v in early.items()}, {"all": 300, "in_window": 240,
                                                                 "after_window": 60})  # fmt: skip
    seed = a["stability"]["reference_vs_seed1"]["subsets"]["all"]
    self.assertLen(seed["agreement"], 2)
    self.assertLen(seed["mutual_information"], 2)
    for row in seed["agreement"]:
      interval = row["agreement"]
      self.assertLessEqual(interval["low"], interval["value"])
      self.assertLessEqual(interval["value"], interval["high"])
      self.assertLessEqual(0.0, row["chance"])

  def test_rankers_with_each_version(self):
    rankers = self.analysis["rankers"]
    self.assertCountEqual(rankers, ["reference", "early", "seed1", "reference_ranker_seed1"])
    self.assertNotIn("vs_reference", rankers["reference"])
    self.assertEqual(rankers["reference_ranker_seed1"]["sids"], "reference")
    self.assertEqual(rankers["reference_ranker_seed1"]["ranker_seed"], 1)
    self.assertEqual(rankers["seed1"]["ranker_seed"], 0)
    for name in ("early", "seed1", "reference_ranker_seed1"):
      diff = rankers[name]["vs_reference"]["auc_all"]
      self.assertLessEqual(diff["low"], diff["high"])
      self.assertTrue(os.path.exists(os.path.join(self.out, "rankers", name, "predictions.npz")))
    self.assertEqual(rankers["reference"]["table_rows"], 2 * 4)  # unigram: L x K

  def test_hierarchy_and_topic_categories(self):
    hier = self.analysis["hierarchy"]["reference"]
    self.assertEqual([r["prefix_length"] for r in hier["prefix_similarity"]], [1, 2])
    sizes = hier["subtrie_sizes"]
    self.assertEqual(sum(sizes[0]["histogram"]["items"]), TINY.n_items)
    self.assertEqual(sorted(hier["categories"]), ["topic_level_1", "topic_level_2"])
    self.assertEqual(hier["categories"]["topic_level_1"][0]["items"], TINY.n_items)

  def test_rerun_reuses_the_rqvaes_and_retrains_on_other_settings(self):
    again = _run(f"--output_dir={self.out}", *DATA, *SMALL, "--norankers")
    self.assertEqual(again.stdout.count("reusing"), 3, again.stdout)
    self.assertNotIn("training the RQ-VAE", again.stdout)
    other = [f if f != "--rqvae_epochs=1" else "--rqvae_epochs=2" for f in SMALL]
    changed = _run(f"--output_dir={self.out}", *DATA, *other, "--norankers")
    self.assertEqual(changed.stdout.count("made from other data or settings"), 3, changed.stdout)
    self.assertEqual(_read_json(os.path.join(self.out, "analysis.json"))["rankers"], {})

  def test_bad_flags(self):
    out = f"--output_dir={self.get_temp_dir()}"
    probes = (
      ((out, "--early_quantile=1.5"), "--early_quantile must be in (0, 1). Received: "),
      ((out, "--other_seed=0"), "--other_seed must differ from --seed. Received: --other_seed=0"),
      (("--bootstrap=5",), "--output_dir is required."),
      (
        (out, *DATA, "--early_quantile=0.001", "--sid_codebook_size=8"),
        "--early_quantile=0.001: the early window holds 1 of 300 items; the RQ-VAE needs at "
        "least K=8.",
      ),
    )
    results = base.run_module_probes("trainers.analyze_sids", *(flags for flags, _ in probes))
    for (flags, message), result in zip(probes, results):
      with self.subTest(flags=flags):
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn(message, result.stderr)
        self.assertNotIn("Traceback", result.stderr)


class TopicPathTest(base.TestCase):
  def test_topic_path_follows_the_tree(self):
    path = synthetic.item_topic_path(TINY)
    b1, b2, b3 = TINY.branching
    self.assertEqual(path.shape, (TINY.n_items, 3))
    self.assertAllEqual(path[:, 0], path[:, 1] // b2)
    self.assertAllEqual(path[:, 1], path[:, 2] // b3)
    self.assertLess(path[:, 0].max(), b1)
    # Items under one top topic are closer than items under different ones.
    emb = datasets.load_dataset("synthetic", synthetic_config=TINY).embeddings
    cos = emb @ emb.T
    same = path[:, :1] == path[:, 0]
    off = ~np.eye(len(emb), dtype=bool)
    self.assertGreater(cos[same & off].mean(), cos[~same].mean() + 0.2)


class MovieLensGenresTest(base.TestCase):
  def test_genres_of_a_tiny_movielens_folder(self):
    folder = self.get_temp_dir()
    rng = np.random.default_rng(0)
    n_movies, genres = 40, ["Comedy", "Drama|Romance", "Action|Comedy", "(no genres listed)"]
    movies = pd.DataFrame(
      {
        "movieId": np.arange(1, n_movies + 1),
        "title": [f"m{i}" for i in range(n_movies)],
        "genres": [genres[i % 4] for i in range(n_movies)],
      }
    )
    movies.to_csv(os.path.join(folder, "movies.csv"), index=False)
    ratings = pd.DataFrame(
      {
        "userId": rng.integers(1, 31, 600),
        "movieId": rng.integers(1, n_movies + 1, 600),
        "rating": rng.integers(1, 11, 600) / 2.0,
        "timestamp": np.sort(rng.integers(1_000_000_000, 1_100_000_000, 600)),
      }
    )
    ratings.to_csv(os.path.join(folder, "ratings.csv"), index=False)
    emb = rng.normal(size=(n_movies, 8)).astype(np.float32)
    np.savez(
      os.path.join(folder, "content_embeddings_minilm_l6.npz"),
      item_id=np.arange(1, n_movies + 1),
      embedding=emb,
    )
    out = os.path.join(folder, "out")
    _run(
      "--dataset=movielens", f"--data_dir={folder}", f"--output_dir={out}", *SMALL, "--norankers"
    )
    cats = _read_json(os.path.join(out, "analysis.json"))["hierarchy"]["reference"]["categories"]
    self.assertEqual(sorted(cats), ["first_genre", "genre_set"])
    self.assertEqual(cats["first_genre"][0]["items"], 30)  # every 4th movie has no genres


if __name__ == "__main__":
  tf.test.main()
