"""SID analyses, the paper's appendix: `python -m trainers.analyze_sids --output_dir=DIR`.

Trains (or reuses) three RQ-VAE versions on the data the flags name, with the SID flags:

  reference   every item, seed --seed                    cached in --cache_dir
  early       items first seen before the --early_quantile of the items' first_seen, seed --seed
                                                         cached in --cache_dir/early_q<quantile>
  seed<s>     every item, seed --other_seed (default --seed + 1)
                                                         cached in --cache_dir/seed<s>

Each is an `artifacts.SidArtifacts` cache, reused only when its identity (SID config and the
fingerprint of the items it was trained on) matches; --cache_dir defaults to DIR/sid_cache and may
be a pipeline's or an experiment's --output_dir, whose RQ-VAE is then the reference. Every version
assigns a SID to every item (the early one also to the items it never saw). Then:

- Stability (A.2): reference vs early (over all items, the items in the early window, and the
  items after it) and reference vs seed<s>: per prefix length, the share of item pairs sharing
  the prefix in one version that share it in the other (`model.sid_analysis.prefix_agreement`),
  and per level the mutual information between the versions' codes; and, with --rankers, one
  small ranker (--ranker_scheme, the ranker flags) trained and evaluated with each version's SIDs,
  its test AUC and cold-start GAUC, and the user-clustered bootstrap interval of each version's
  difference to the reference; with --ranker_noise_floor, also a second reference ranker with
  another ranker seed, whose difference is what ranker training alone moves.
- Hierarchy (A.3/A.4), per version: the prefix-similarity table (mean cosine of items sharing an
  n-prefix vs random pairs), sub-trie sizes per level, and agreement of the n-prefixes with known
  categories (MovieLens: the first genre movies.csv lists and the whole genre set; synthetic: the
  topic tree's top topic and second-level topic; none for --dataset=files).

Writes analysis.json, analysis.md and agreement.png, subtrie_sizes.png, prefix_similarity.png and
category_agreement.png (`trainers.analyze_sids_report`) under --output_dir; rankers run in
DIR/rankers/<version>/ (`trainers.run_dir`: a finished run is reused, others retrained).
"""

import dataclasses
import os
import time
from typing import Any, Dict, List, Tuple

import numpy as np
import pandas as pd
import tqdm
from absl import app, flags

from features import io_utils, movielens, schema, synthetic
from model import metrics as metrics_lib
from model import ranker as ranker_lib
from model import rqvae_metrics, schemes, sid_analysis
from trainers import (
  analyze_sids_report,
  artifacts,
  cli,
  data_flags,
  item_flags,
  job_flags,
  ranker_training,
)

REFERENCE, EARLY = "reference", "early"
RANKER_SCHEMES = [
  name
  for name in schemes.sid_scheme_names()
  if schemes.get(name).spm_budget(schemes.ItemRepresentationConfig(scheme=name)) is None
]
# (name, slice, metric) of the ranker differences to the reference version.
RANKER_DIFFS = (("auc_all", "all", "auc"), ("gauc_cold", "cold", "gauc"))

data_flags.define()
job_flags.define_output_dir(help_text="Where analysis.json, analysis.md, the PNGs and runs go.")
job_flags.define_sid()
job_flags.define_ranker_train()
job_flags.define_ranker_model(table_rows_default=4000)
item_flags.define()
flags.DEFINE_string("cache_dir", None, "RQ-VAE cache of the reference version (DIR/sid_cache).")
flags.DEFINE_float("early_quantile", 0.8, "early: train on items first seen before this quantile.")
flags.DEFINE_integer("other_seed", None, "Seed of the second-seed version (default --seed + 1).")
flags.DEFINE_bool("rankers", True, "Train one ranker per version (stability of the ranker's AUC).")
flags.DEFINE_enum("ranker_scheme", "unigram", RANKER_SCHEMES, "Item representation of the rankers.")
flags.DEFINE_bool("ranker_history", True, "Rankers use the history feature.")
flags.DEFINE_bool(
  "ranker_noise_floor", True, "Also train a reference ranker with another seed (the noise floor)."
)
flags.DEFINE_integer("bootstrap", 200, "Bootstrap resamples of every interval.")
flags.DEFINE_integer("permutations", 5, "Label shuffles behind each chance level of MI and NMI.")
FLAGS = flags.FLAGS


@dataclasses.dataclass
class Version:
  """One RQ-VAE version: its name, what it was trained on, and its cache."""

  name: str
  description: str
  cache: artifacts.SidArtifacts
  seed: int


def check_flags(argv: List[str]) -> None:
  """Raises app.UsageError naming the first bad flag."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.output_dir:
    raise app.UsageError("--output_dir is required.")
  if not 0.0 < FLAGS.early_quantile < 1.0:
    raise app.UsageError(
      f"--early_quantile must be in (0, 1). Received: --early_quantile={FLAGS.early_quantile}"
    )
  if FLAGS.other_seed is not None and FLAGS.other_seed == FLAGS.seed:
    raise app.UsageError(
      f"--other_seed must differ from --seed. Received: --other_seed={FLAGS.other_seed}"
    )
  job_flags.check_positive(("bootstrap", "permutations", "table_rows", "embedding_dim"))


def early_mask(dataset: schema.Dataset, quantile: float) -> np.ndarray:
  """bool[n_items]: items first seen before the `quantile` of the items' first_seen."""
  first_seen = dataset.items["first_seen"].to_numpy()
  return first_seen < np.quantile(first_seen, quantile)


def item_subset(dataset: schema.Dataset, mask: np.ndarray) -> schema.Dataset:
  """The items of `mask`, their embeddings and interactions (what the early RQ-VAE sees)."""
  items = dataset.items.loc[mask].reset_index(drop=True)
  keep = dataset.interactions["item_id"].isin(items["item_id"]).to_numpy()
  return dataclasses.replace(
    dataset,
    items=items,
    embeddings=dataset.embeddings[mask],
    interactions=dataset.interactions.loc[keep].reset_index(drop=True),
  )


def make_versions(dataset: schema.Dataset, split, in_window: np.ndarray) -> Dict[str, Version]:
  """The three RQ-VAE versions (module docstring), each with its own identity-checked cache."""
  cache_dir = FLAGS.cache_dir or os.path.join(FLAGS.output_dir, "sid_cache")
  reference = artifacts.SidArtifacts(
    dataset, split, cache_dir, job_flags.sid_config(FLAGS.seed), FLAGS.rqvae_dir, verbose=0
  )
  config = reference.config
  if FLAGS.rqvae_dir:  # The other versions copy the given RQ-VAE's shape.
    rq = reference.rqvae.config
    config = dataclasses.replace(
      config,
      num_levels=rq.num_levels,
      codebook_size=rq.codebook_size,
      latent_dim=rq.latent_dim,
      reset_interpolation=rq.reset_interpolation,
    )
  if in_window.sum() < config.codebook_size:
    raise ValueError(
      f"--early_quantile={FLAGS.early_quantile}: the early window holds {int(in_window.sum())} "
      f"of {len(in_window)} items; the RQ-VAE needs at least K={config.codebook_size}."
    )
  other = FLAGS.seed + 1 if FLAGS.other_seed is None else FLAGS.other_seed
  early_dir = os.path.join(cache_dir, f"early_q{FLAGS.early_quantile:g}")
  seed_dir = os.path.join(cache_dir, f"seed{other}")
  subset = item_subset(dataset, in_window)
  return {
    REFERENCE: Version(REFERENCE, "every item", reference, FLAGS.seed),
    EARLY: Version(
      EARLY,
      f"{int(in_window.sum()):,} items first seen before the {FLAGS.early_quantile:g} quantile",
      artifacts.SidArtifacts(subset, split, early_dir, config, verbose=0),
      FLAGS.seed,
    ),
    f"seed{other}": Version(
      f"seed{other}",
      f"every item, seed {other}",
      artifacts.SidArtifacts(
        dataset, split, seed_dir, dataclasses.replace(config, seed=other), verbose=0
      ),
      other,
    ),
  }


def categories(dataset: schema.Dataset) -> Dict[str, np.ndarray]:
  """{name: int[n_items] category per item (-1: unknown)} for the datasets that have them."""
  if dataset.name == "synthetic":
    path = synthetic.item_topic_path(data_flags.synthetic_config())
    rows = dataset.items["item_id"].to_numpy()
    return {"topic_level_1": path[rows, 0], "topic_level_2": path[rows, 1]}
  if dataset.name == "movielens":
    return movielens_genres(dataset, FLAGS.data_dir or movielens.default_dir())
  return {}


def movielens_genres(dataset: schema.Dataset, data_dir: str) -> Dict[str, np.ndarray]:
  """The first genre movies.csv lists (its lists are alphabetical) and the whole genre set."""
  path = os.path.join(data_dir, "movies.csv")
  if not os.path.exists(path):
    raise FileNotFoundError(f"MovieLens genres not found: {path} (pass --data_dir).")
  movies = pd.read_csv(path)
  if not {"movieId", "genres"} <= set(movies.columns):
    raise schema.SchemaError(
      f"{path} lacks columns movieId and genres; has {list(movies.columns)}."
    )
  genres = dataset.items["item_id"].map(movies.set_index("movieId")["genres"])
  genres = genres.where(genres != "(no genres listed)")
  out = {}
  for name, values in (("first_genre", genres.str.split("|").str[0]), ("genre_set", genres)):
    codes, _ = pd.factorize(values)  # NaN (unknown) -> -1.
    out[name] = codes.astype(np.int64)
  return out


def stability(codes: Dict[str, np.ndarray], in_window: np.ndarray) -> Dict[str, Any]:
  """Agreement and mutual information of the reference version with each other version."""
  out = {}
  for name in codes:
    if name == REFERENCE:
      continue
    subsets = {"all": np.ones(len(in_window), bool)}
    if name == EARLY:
      subsets.update(in_window=in_window, after_window=~in_window)
    parts = {}
    for subset, mask in subsets.items():
      a, b = codes[REFERENCE][mask], codes[name][mask]
      parts[subset] = {
        "items": int(mask.sum()),
        "agreement": sid_analysis.prefix_agreement(a, b, FLAGS.bootstrap, FLAGS.seed),
        "mutual_information": sid_analysis.level_mutual_information(
          a, b, FLAGS.bootstrap, FLAGS.seed, FLAGS.permutations
        ),
      }
    out[f"{REFERENCE}_vs_{name}"] = {"a": REFERENCE, "b": name, "subsets": parts}
  return out


def hierarchy(codes: np.ndarray, dataset: schema.Dataset, labels) -> Dict[str, Any]:
  b, s = FLAGS.bootstrap, FLAGS.seed
  return {
    "prefix_similarity": sid_analysis.prefix_similarity(codes, dataset.embeddings, b, s),
    "subtrie_sizes": sid_analysis.subtrie_sizes(codes),
    "categories": {
      name: sid_analysis.category_agreement(codes, values, b, s, FLAGS.permutations)
      for name, values in labels.items()
    },
  }


def ranker_plan(versions: Dict[str, Version]) -> List[Tuple[str, Version, int]]:
  """(run name, version, ranker seed): one ranker per version, plus, with --ranker_noise_floor, a
  second one on the reference SIDs with another ranker seed (the spread of ranker training alone,
  to read the versions' differences against)."""
  plan = [(name, version, FLAGS.seed) for name, version in versions.items()]
  if FLAGS.ranker_noise_floor:
    plan.append((f"{REFERENCE}_ranker_seed{FLAGS.seed + 1}", versions[REFERENCE], FLAGS.seed + 1))
  return plan


def train_ranker(dataset, split, name: str, version: Version, seed: int) -> Dict[str, Any]:
  """One ranker with `version`'s SIDs and ranker seed `seed` (DIR/rankers/<name>/); returns its
  test metrics."""
  folder = os.path.join(FLAGS.output_dir, "rankers", name)
  item_config = item_flags.item_config(FLAGS.ranker_scheme, FLAGS.table_rows, FLAGS.embedding_dim)
  ranker_config = ranker_lib.RankerConfig(
    second_label_name=dataset.second_label_name,
    user_embedding_dim=FLAGS.embedding_dim,
    use_history=FLAGS.ranker_history,
    history_length=FLAGS.history_length,
  )
  result = ranker_training.fit_and_evaluate(
    dataset,
    split,
    item_config,
    ranker_config,
    job_flags.train_config(seed, verbose=0),
    folder,
    sid_encoder=version.cache.encoder(),
    data_description=data_flags.describe(),
    save_model=False,
    on_mismatch="replace",  # A cache: a run made with other settings is trained again.
  )
  return {
    "folder": folder,
    "sids": version.name,
    "ranker_seed": seed,
    "scheme": FLAGS.ranker_scheme,
    "table_rows": result["table_rows"],
    "epochs_run": result["epochs_run"],
    "train_time_s": result["train_time_s"],
    "test": result["test"],
  }


def _predictions(folder: str) -> Dict[str, np.ndarray]:
  with np.load(os.path.join(folder, "predictions.npz")) as f:
    return {k: f[k] for k in f.files}


def ranker_differences(rankers: Dict[str, Dict[str, Any]]) -> None:
  """Adds `vs_reference` (user-clustered bootstrap of the difference) to each non-reference run."""
  ref = _predictions(rankers[REFERENCE]["folder"])
  for name, run in rankers.items():
    if name == REFERENCE:
      continue
    mine = _predictions(run["folder"])
    run["vs_reference"] = {}
    for key, slice_name, metric in RANKER_DIFFS:
      mask = np.ones(len(ref["click"]), bool) if slice_name == "all" else ref["cold"]
      run["vs_reference"][key] = metrics_lib.bootstrap_difference(
        ref["click"][mask],
        ref["user_id"][mask],
        [mine["ctr"][mask]],
        [ref["ctr"][mask]],
        metric=metric,
        n_resamples=FLAGS.bootstrap,
        seed=FLAGS.seed,
      )


def settings() -> Dict[str, Any]:
  names = (
    "sid_levels", "sid_codebook_size", "rqvae_epochs", "rqvae_dir", "cache_dir", "early_quantile",
    "other_seed", "rankers", "ranker_scheme", "ranker_history", "ranker_noise_floor", "table_rows",
    "embedding_dim", "history_length", "epochs", "batch_size", "learning_rate", "patience",
    "bootstrap", "permutations", *item_flags.NAMES,
  )  # fmt: skip
  return {name: FLAGS[name].value for name in names}


def main(argv):
  check_flags(argv)
  start = time.perf_counter()
  dataset = data_flags.load()
  split = data_flags.split(dataset)
  in_window = early_mask(dataset, FLAGS.early_quantile)
  versions = make_versions(dataset, split, in_window)
  codes, described = {}, {}
  for name, version in tqdm.tqdm(versions.items(), desc="RQ-VAE versions", unit="version"):
    codes[name] = version.cache.rqvae.assign_codes(dataset.embeddings)
    stats = rqvae_metrics.sid_stats(codes[name], version.cache.codebook_size)
    described[name] = {
      "description": version.description,
      "seed": version.seed,
      "trained_on_items": int(version.cache.dataset.n_items),
      "cache": version.cache.directory,
      "fingerprint": version.cache.fingerprint,
      "num_levels": version.cache.num_levels,
      "codebook_size": version.cache.codebook_size,
      **stats,
    }
  labels = categories(dataset)
  results = {
    "data": {"flags": data_flags.describe(), "counts": split.counts(), "n_items": dataset.n_items},
    "settings": settings(),
    "versions": described,
    "stability": stability(codes, in_window),
    "hierarchy": {
      name: hierarchy(c, dataset, labels)
      for name, c in tqdm.tqdm(codes.items(), desc="hierarchy", unit="version")
    },
    "rankers": {},
  }
  if FLAGS.rankers:
    for name, version, seed in tqdm.tqdm(ranker_plan(versions), desc="rankers", unit="ranker"):
      run = train_ranker(dataset, split, name, version, seed)
      results["rankers"][name] = run
      test = run["test"]
      tqdm.tqdm.write(
        f"ranker with {version.name} SIDs, seed {seed}: AUC {test['all']['auc']:.4f}, cold GAUC "
        f"{analyze_sids_report.gauc_text(test['cold'])} ({run['train_time_s']:.0f}s)"
      )
    ranker_differences(results["rankers"])
  results["findings"] = analyze_sids_report.findings(results)
  results["wall_time_s"] = time.perf_counter() - start
  out = FLAGS.output_dir
  io_utils.write_json(os.path.join(out, "analysis.json"), results)
  text = analyze_sids_report.markdown(results)
  io_utils.write_text(os.path.join(out, "analysis.md"), text)
  analyze_sids_report.plots(results, out)
  print(text)
  print(f"wrote {out}/analysis.json, analysis.md and {', '.join(analyze_sids_report.PLOTS)}")


if __name__ == "__main__":
  cli.run(main)
