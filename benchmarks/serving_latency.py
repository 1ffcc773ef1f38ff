r"""Serving latency per request of the exported rankers, every scheme against hash in the same run.

Each ranker is built from the registry (`model.schemes`) with the weights it starts with (latency
does not depend on their values), wrapped by `export.export_model.keras_serving_module` (the graph
`export_model.export` writes) and saved; the SavedModel is loaded with `tf.saved_model.load` and a
signature is run with one user's request (N candidates sharing one user id and history) in each
`--runtime`: `session`, the SavedModel's MetaGraph in a TF1 `Session` and one `Session.run` per
request, the path `tensorflow_model_server` takes (`tensorflow::LoadSavedModel`, then
`Session::Run` of the SignatureDef's tensors), and `eager`, `tf.saved_model.load` and a signature
call from Python (a Python batch job). Exports and runtimes are timed round robin per
repetition, so drift on a shared machine hits all alike; with several runtimes each row's tag
reads "(history on, session)".
Reports median and p99 per request, each scheme's ratio to hash (target: median <= 1.3x at 100
and 1,000 candidates), and the median CPU time of this process per request (all threads; on a
machine shared with other jobs it moves much less than the wall clock).

With `--catalogue_cache` (the default) every SID export holds its catalogue's tokens in the graph
(`model.sid_item.cache_catalogue`: served rows equal to a catalogue item skip the encoder and the
tokenizer), and each SID row is timed with two kinds of request (`--request_items`): `catalogue`
items (candidates and the user's history drawn from the cached catalogue: cache hits) and `new`
items (random content embeddings, as every request was before the cache: all misses).

Suites (`--suite`), each a few minutes on two cores:
  * `experiment`: hash, prefix, unigram, spm, hybrid (`--schemes`) at the experiment scale (an
    RQ-VAE with L=3, K=64, d=64 trained briefly on the synthetic catalogue, D=128; an SPM model over
    its SIDs), history on and off, through `serving_default` (raw content embeddings) and, for the
    SID schemes, `predict_codes` (`--codes_rows`).
  * `paper`: SPM at the paper's scale (L=8, K=2048, d=256, D=384; a random frozen encoder and an SPM
    model over prefix-sharing SIDs) through `serving_default` and `predict_codes` (precomputed SIDs,
    made by the export's `semantic_id` outside the timed call), with hash at the same D.
  * `profile`: where the time of one SPM request (`--profile_candidates`, history on) goes, op by
    op (`RunOptions(trace_level=FULL_TRACE)` step stats of a TF1 session on the SavedModel, summed
    per component by op name scope), for `serving_default` (catalogue and new items) and
    `predict_codes`, for the hash export (the reference), and for the export of the previous
    code (`--head_tree`) when given.
`--head_tree=DIR` (a checkout of the previous code, e.g. `git archive HEAD | tar -x -C DIR`) also
adds that code's SPM export ("spm@head", timed with new items) to the `experiment` and `paper`
suites.

Usage:
  nice python -m benchmarks.serving_latency --suite=experiment --output_dir=runs/serving_latency
  nice python -m benchmarks.serving_latency --suite=paper --output_dir=runs/serving_latency
  nice python -m benchmarks.serving_latency --suite=profile --output_dir=runs/serving_latency
  (each with --head_tree=DIR for the previous code's SPM export in the same run)

Writes <suite>.json, <suite>.md and <suite>.png (the ratios to hash, or the profile, as a figure)
under --output_dir.
"""

import itertools  # noqa: I001  (project packages before TensorFlow: they select Keras 2)
import json
import os
import platform
import re
import subprocess
import sys
import time

from benchmarks import latency_figures, latency_timing
from export import export_model, serving_assets, signatures
from features import feature_spec, io_utils, spm_training
from model import ranker as ranker_lib
from model import catalogue_cache, schemes, semantic_id_encoder, sid_item
from trainers import artifacts, cli, data_flags, job_flags, ranker_training

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (loads the TF Text kernels of the previous code's export)
from absl import app, flags

TARGET_RATIO = 1.3
HISTORY_LENGTH = 10
EMBEDDING_DIM = 32
PAPER = {"num_levels": 8, "codebook_size": 2048, "latent_dim": 256, "content_dim": 384}

FLAGS = flags.FLAGS
data_flags.define()
job_flags.define_output_dir(None, "Where the JSON and markdown go.")
flags.DEFINE_enum("suite", "experiment", ["experiment", "paper", "profile"], "What to measure.")
flags.DEFINE_list("schemes", ["hash", "prefix", "unigram", "spm", "hybrid"], "experiment: schemes.")
flags.DEFINE_list("history", ["on", "off"], "History feature settings to measure.")
flags.DEFINE_list("candidates", ["1", "100", "1000"], "Candidates per request.")
flags.DEFINE_list(
  "runtime",
  list(latency_timing.RUNTIMES),
  "How requests are run (timed round robin in one run): session (the MetaGraph in a TF1 Session, "
  "one Session.run per request: what tensorflow_model_server runs) and/or eager "
  "(tf.saved_model.load and a signature call from Python, as a Python batch job would).",
)
flags.DEFINE_integer("repetitions", 150, "Timed requests per export and size.")
flags.DEFINE_integer("warmup", 15, "Untimed requests per export and size first.")
flags.DEFINE_integer("table_rows", 4000, "Table budget of every scheme (SPM: its vocabulary).")
flags.DEFINE_string("hybrid_sid_scheme", "unigram", "SID part of hybrid (as in the experiments).")
flags.DEFINE_integer("paper_vocab_size", 24_576, "paper: SPM vocabulary (>= L*K + 1 = 16,385).")
flags.DEFINE_integer("paper_items", 5000, "paper: catalogue SIDs the SPM model is trained on.")
flags.DEFINE_integer("profile_candidates", 1000, "profile: candidates of the profiled request.")
flags.DEFINE_integer("profile_runs", 20, "profile: traced requests (the median per component).")
flags.DEFINE_string("head_tree", None, "A checkout of the previous code (TF Text SPM), optional.")
flags.DEFINE_bool("codes_rows", True, "experiment: also time each SID scheme's predict_codes.")
flags.DEFINE_bool(
  "catalogue_cache", True, "SID exports cache their catalogue's tokens (sid_item.cache_catalogue)."
)
flags.DEFINE_list(
  "catalogue_match",
  [catalogue_cache.DEFAULT_MATCH],
  "How cached exports match a served content row (model.catalogue_cache.MATCHES: fingerprint, "
  "exact); several: one export per match, timed in the same run, rows marked [match].",
)
flags.DEFINE_enum(
  "history_rows",
  "repeated",
  ["repeated", "once"],
  "How a request carries the user's history: repeated on every candidate row (a plain batch; "
  "the signature passes it on once when the rows are bit-identical), or once, one row for all "
  "candidates (`export.signatures.ServingContract.shared_keys`).",
)
flags.DEFINE_list(
  "request_items",
  ["catalogue", "new"],
  "SID rows: requests of catalogue items (candidates and history from the cached catalogue) "
  "and/or new items (random content embeddings).",
)


# ---------------------------------------------------------------------------------------------
# Building the exports.


class SidSetup:
  """A frozen SID encoder's weights, an SPM model over its catalogue's SIDs, and the catalogue:
  content embeddings float32[N, D] and optionally more SIDs int[M, L] that exports cache."""

  def __init__(self, config, kernel, bias, codebooks, proto, content_dim, catalogue, codes=None):
    self.config, self.proto, self.content_dim = config, proto, content_dim
    self.weights = (kernel, bias, codebooks)
    self.catalogue = np.asarray(catalogue, np.float32)
    self.codes = codes

  def encoder(self) -> semantic_id_encoder.SemanticIdEncoder:
    kernel, bias, codebooks = self.weights
    layer = semantic_id_encoder.SemanticIdEncoder(
      codebooks.shape[0], codebooks.shape[1], kernel.shape[0], kernel.shape[1], name="sid_encoder"
    )
    layer.build(tf.TensorShape([None, kernel.shape[0]]))
    layer.encoder_kernel.assign(kernel)
    layer.encoder_bias.assign(bias)
    layer.codebooks.assign(codebooks)
    return layer


def experiment_setup() -> SidSetup:
  """The experiments' RQ-VAE (L=3, K=64, d=64), trained briefly on the data flags' catalogue."""
  dataset = data_flags.load()
  split = data_flags.split(dataset)
  config = artifacts.SidConfig(epochs=2)
  rqvae = artifacts.train_rqvae(dataset, config)
  codes = rqvae.assign_codes(dataset.embeddings)
  impressions = artifacts.impressions_per_item(dataset, split.train)
  proto = artifacts.train_spm(codes, impressions, config.codebook_size, FLAGS.table_rows)
  kernel, bias, codebooks = rqvae.sid_weights()
  return SidSetup(
    config, kernel, bias, np.stack(codebooks), proto, dataset.embedding_dim, dataset.embeddings
  )


def paper_setup() -> SidSetup:
  """A random frozen encoder at the paper's scale, an SPM model over prefix-sharing SIDs, and a
  catalogue: those SIDs and `paper_items` random content embeddings."""
  rng = np.random.default_rng(0)
  levels, k, d, dim = (
    PAPER[key] for key in ("num_levels", "codebook_size", "latent_dim", "content_dim")
  )
  kernel = (rng.normal(size=(dim, d)) / np.sqrt(dim)).astype(np.float32)
  codebooks = (rng.normal(size=(levels, k, d)) / np.sqrt(d)).astype(np.float32)
  codes = np.zeros((FLAGS.paper_items, levels), np.int64)
  codes[:, 0] = np.minimum(rng.zipf(1.2, FLAGS.paper_items) - 1, k - 1)
  for level in range(1, levels):
    step = np.minimum(rng.zipf(1.2, FLAGS.paper_items) - 1, k - 1)
    codes[:, level] = (codes[:, level - 1] * 7919 + step) % k
  impressions = np.minimum(rng.zipf(1.6, FLAGS.paper_items), 100_000)
  config = spm_training.SpmTrainingConfig(vocab_size=FLAGS.paper_vocab_size)
  proto = spm_training.train_sid_spm(codes, impressions, k, config)
  catalogue = (rng.normal(size=(FLAGS.paper_items, dim)) / np.sqrt(dim)).astype(np.float32)
  return SidSetup(PAPER, kernel, np.zeros(d, np.float32), codebooks, proto, dim, catalogue, codes)


def item_config(scheme: str, table_rows: int) -> schemes.ItemRepresentationConfig:
  return schemes.ItemRepresentationConfig(
    scheme=scheme,
    embedding_dim=EMBEDDING_DIM,
    table_rows=table_rows,
    hybrid_sid_scheme=FLAGS.hybrid_sid_scheme,
  )


def export(
  scheme: str, setup: SidSetup, history: bool, path: str, match: str = catalogue_cache.DEFAULT_MATCH
) -> str:
  """Builds the `scheme` ranker, wraps it as `export_model.export` does and saves it to `path`."""
  config = item_config(scheme, FLAGS.table_rows)
  encoder = setup.encoder() if config.spec.uses_sid else None
  proto = setup.proto if config.spec.spm_budget(config) is not None else None
  representation = schemes.create(config, sid_encoder=encoder, spm_model_proto=proto)
  ranker_config = ranker_lib.RankerConfig(use_history=history, history_length=HISTORY_LENGTH)
  ranker = ranker_lib.build_ranker(representation, ranker_config)
  ranker(ranker_training.sample_features(ranker, setup.content_dim))
  if FLAGS.catalogue_cache:
    sid_item.cache_catalogue(representation, setup.catalogue, setup.codes, match=match)
  module = export_model.keras_serving_module(ranker, setup.content_dim, 10_000)
  tf.io.gfile.rmtree(path) if tf.io.gfile.exists(path) else None
  module.save(path)
  return path


# Runs under --head_tree (the previous code, TF Text SPM tokenizer): builds its SPM export.
_HEAD_SCRIPT = r"""
import json, os, sys
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import numpy as np
import tensorflow as tf
from export import export_model
from model import ranker as ranker_lib
from model import schemes, semantic_id_encoder
from trainers import ranker_training

args = json.loads(sys.argv[1])
weights = np.load(args["weights"])
kernel, codebooks = weights["kernel"], weights["codebooks"]
encoder = semantic_id_encoder.SemanticIdEncoder(
  codebooks.shape[0], codebooks.shape[1], kernel.shape[0], kernel.shape[1], name="sid_encoder"
)
encoder.build(tf.TensorShape([None, kernel.shape[0]]))
encoder.encoder_kernel.assign(kernel)
encoder.encoder_bias.assign(weights["bias"])
encoder.codebooks.assign(codebooks)
with open(args["proto"], "rb") as f:
  proto = f.read()
config = schemes.ItemRepresentationConfig("spm", embedding_dim=args["dim"], table_rows=args["rows"])
representation = schemes.create(config, sid_encoder=encoder, spm_model_proto=proto)
ranker = ranker_lib.build_ranker(
  representation, ranker_lib.RankerConfig(use_history=args["history"], history_length=args["h"])
)
ranker(ranker_training.sample_features(ranker, kernel.shape[0]))
export_model.keras_serving_module(ranker, kernel.shape[0], 10_000).save(args["out"])
"""


def head_export(setup: SidSetup, history: bool, path: str) -> str:
  """The previous code's SPM export (same encoder weights and SPM model), built in a subprocess."""
  path = os.path.abspath(path)
  work = os.path.dirname(path)
  weights, proto = os.path.join(work, "head_weights.npz"), os.path.join(work, "head_spm.model")
  kernel, bias, codebooks = setup.weights
  np.savez(weights, kernel=kernel, bias=bias, codebooks=codebooks)
  with open(proto, "wb") as f:
    f.write(setup.proto)
  tree = os.path.abspath(FLAGS.head_tree)
  args = {"weights": weights, "proto": proto, "dim": EMBEDDING_DIM, "rows": FLAGS.table_rows}
  args.update(history=history, h=HISTORY_LENGTH, out=path)
  env = dict(os.environ, PYTHONPATH=tree, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
  tf.io.gfile.rmtree(path) if tf.io.gfile.exists(path) else None
  subprocess.run(
    [sys.executable, "-c", _HEAD_SCRIPT, json.dumps(args)], cwd=tree, env=env, check=True
  )
  return path


# ---------------------------------------------------------------------------------------------
# Timing.


def one_user_request(specs, candidates: int, seed: int = 0, catalogue=None):
  """`candidates` rows of one user (same id and history): random candidate embeddings, or with a
  `catalogue` float32[N, D], candidates and the user's history items drawn from it."""
  inputs = serving_assets.sample_inputs(specs, max(candidates, 3), seed=seed)
  for name, value in inputs.items():
    if name == "user_id" or name.startswith("history"):
      inputs[name] = np.repeat(value[2:3], candidates, axis=0)
    else:
      inputs[name] = value[:candidates]
  if catalogue is not None:
    rng = np.random.default_rng(seed)
    for name in ("content_embedding", "history_content_embedding"):
      if name in inputs:
        history = name.startswith("history")
        drawn = catalogue[rng.integers(0, len(catalogue), inputs[name].shape[int(history)])]
        inputs[name] = np.repeat(drawn[None], candidates, axis=0) if history else drawn
  return _history_once(inputs) if FLAGS.history_rows == "once" else inputs


def _history_once(inputs: dict) -> dict:
  """The request with each history input sent once (its first row) instead of on every row."""
  return {k: v[:1] if k.startswith(feature_spec.HISTORY_PREFIX) else v for k, v in inputs.items()}


def requests_for(loaded, signature: str, candidates: int, catalogue=None, codes=None) -> dict:
  """A `signature` request of one user (see `one_user_request`); `predict_codes` gets the codes
  of the same rows, or with catalogue `codes` int[M, L], SIDs drawn from those."""
  specs = loaded.signatures[signatures.SIGNATURE_DEFAULT].structured_input_signature[1]
  inputs = one_user_request(specs, candidates, catalogue=catalogue)
  if signature == signatures.SIGNATURE_CODES:
    inputs = serving_assets.codes_inputs(loaded, inputs)
    if codes is not None:
      rng = np.random.default_rng(1)
      inputs["codes"] = codes[rng.integers(0, len(codes), candidates)].astype(np.int32)
      if "history_codes" in inputs:
        drawn = codes[rng.integers(0, len(codes), inputs["history_codes"].shape[1])]
        inputs["history_codes"] = np.repeat(drawn[None].astype(np.int32), candidates, axis=0)
    if FLAGS.history_rows == "once":
      inputs = _history_once(inputs)
  return {name: tf.constant(value) for name, value in inputs.items()}


def latency_table(exports: dict, setup: SidSetup) -> dict:
  """exports: name -> (export dir, signature, request items: "catalogue" or "new"; catalogue
  requests draw from `setup`'s catalogue). Returns "<name>" or, with several `--runtime`s,
  "<name> (<tag>, <runtime>)" -> candidates -> stats; every runtime's calls are timed round robin
  in one loop per size, so drift hits every runtime and export alike."""
  loaded = {name: tf.saved_model.load(path) for name, (path, _, _) in exports.items()}
  several = len(FLAGS.runtime) > 1
  callers = {}
  for runtime, (name, (path, sig, _)) in itertools.product(FLAGS.runtime, exports.items()):
    row = f"{name[:-1]}, {runtime})" if several else name
    callers[row] = (name, *latency_timing.caller(runtime, loaded[name], path, sig))
  results = {row: {} for row in callers}
  for candidates in (int(c) for c in FLAGS.candidates):
    requests = {
      name: requests_for(loaded[name], sig, candidates, *_catalogue(setup, items))
      for name, (_, sig, items) in exports.items()
    }
    functions = {row: call for row, (_, call, _) in callers.items()}
    fed = {row: prepare(requests[name]) for row, (name, _, prepare) in callers.items()}
    times = latency_timing.time_requests(functions, fed, FLAGS.repetitions, FLAGS.warmup)
    for row, (wall, cpu) in times.items():
      results[row][candidates] = {
        "median_ms": float(np.median(wall)),
        "p99_ms": float(np.percentile(wall, 99)),
        "cpu_median_ms": float(np.median(cpu)),
      }
  for _, call, _ in callers.values():
    if isinstance(call, latency_timing.SessionSignature):
      call.close()
  return results


# ---------------------------------------------------------------------------------------------
# Op-level profile.

# (component, pattern over the op's name scope), first match wins; "history:" = inside the user
# tower (the history items), "candidates:" = the candidates' item representation.
_TOKENIZER = r"(sid_sentence_piece|segmenter|sentencepiece|token_table|sid_prefix_ngram|sid_ngram)"
_CACHE = r"(content_index|codes_index)/"
_COMPONENTS = (
  ("input validation", r"(assert|IsFinite|VerifyFinite|CheckNumerics|all_finite/)"),
  ("history: once-per-request check", r"shared_inputs/"),
  ("history: catalogue cache", r"user_tower/.*" + _CACHE),
  ("history: SID encoder", r"user_tower/.*sid_encoder/"),
  ("history: SID tokenizer", r"user_tower/.*" + _TOKENIZER),
  ("history: pooling + hash", r"user_tower/.*_(item|part)/"),
  ("user tower: id, once-per-user check, mean", r"user_tower/"),
  ("candidates: catalogue cache", _CACHE),
  ("candidates: SID encoder", r"sid_encoder/"),
  ("candidates: SID tokenizer", _TOKENIZER),
  ("candidates: pooling + hash", r"_(item|part)/"),
  ("DCN cross + MLP + heads", r"(cross_|shared_mlp|click_head|second_head|Sigmoid)"),
)


def _component(node_name: str) -> str:
  for name, pattern in _COMPONENTS:
    if re.search(pattern, node_name, re.IGNORECASE):
      return name
  return "other (concat, cond, casts, outputs)"


def profile(export_dir: str, signature: str, candidates: int, catalogue=None, codes=None) -> dict:
  """Op time per component (ms, median over traced runs) of one request, and its wall time."""
  loaded = tf.saved_model.load(export_dir)
  request = requests_for(loaded, signature, candidates, catalogue, codes)
  inputs = {k: v.numpy() for k, v in request.items()}
  per_run, walls = [], []
  session = latency_timing.SessionSignature(export_dir, signature)
  feeds = session.feeds(inputs)
  for _ in range(5):
    session(feeds)
  options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
  for _ in range(FLAGS.profile_runs):
    metadata = tf.compat.v1.RunMetadata()
    start = time.perf_counter()
    session(feeds, options=options, run_metadata=metadata)
    walls.append((time.perf_counter() - start) * 1e3)
    totals = {}
    for device in metadata.step_stats.dev_stats:
      for node in device.node_stats:
        key = _component(node.node_name)
        totals[key] = totals.get(key, 0.0) + node.all_end_rel_micros / 1e3
    per_run.append(totals)
  session.close()
  names = sorted({k for run in per_run for k in run})
  ops = {k: float(np.median([run.get(k, 0.0) for run in per_run])) for k in names}
  return {"wall_ms": float(np.median(walls)), "op_ms": ops}


# ---------------------------------------------------------------------------------------------
# Suites.


def _history_settings():
  return [setting == "on" for setting in FLAGS.history]


def _catalogue(setup: SidSetup, items: str) -> tuple:
  """(content embeddings, SIDs) that requests of `items` draw from: the setup's for "catalogue"
  (SIDs None: those of the embeddings), none for "new"."""
  return (setup.catalogue, setup.codes) if items == "catalogue" else (None, None)


def _sid_exports(exports: dict, scheme: str, setup, history: bool, work: str, codes: bool):
  """Exports `scheme` once per `--catalogue_match` and adds its rows (`_sid_rows`); with several
  matches each row's scheme reads "scheme [match]", and only the first times predict_codes (the
  SID index is exact whatever the match)."""
  tag = "history on" if history else "history off"
  for i, match in enumerate(FLAGS.catalogue_match):
    several = len(FLAGS.catalogue_match) > 1
    folder = f"{scheme}_{match}_{int(history)}" if several else f"{scheme}_{int(history)}"
    path = export(scheme, setup, history, os.path.join(work, folder), match)
    label = f"{scheme} [{match}]" if several else scheme
    _sid_rows(exports, label, path, tag, codes and i == 0)


def _sid_rows(exports: dict, scheme: str, path: str, tag: str, codes: bool) -> None:
  """The rows of one SID export: serving_default (and `codes`: predict_codes) per request kind."""
  for items in FLAGS.request_items:
    exports[f"{scheme}, {items} items ({tag})"] = (path, signatures.SIGNATURE_DEFAULT, items)
    if codes:
      exports[f"{scheme} predict_codes, {items} items ({tag})"] = (
        path, signatures.SIGNATURE_CODES, items,
      )  # fmt: skip


def _sizes(exports: dict) -> dict:
  """Bytes on disk of each export folder (by folder name)."""
  paths = {path for path, _, _ in exports.values()}
  return {os.path.basename(p): export_model.directory_size(p) for p in sorted(paths)}


def run_experiment(work: str) -> dict:
  setup = experiment_setup()
  exports = {}
  for history in _history_settings():
    tag = "history on" if history else "history off"
    for scheme in FLAGS.schemes:
      if schemes.get(scheme).uses_sid:
        _sid_exports(exports, scheme, setup, history, work, FLAGS.codes_rows)
      else:
        path = export(scheme, setup, history, os.path.join(work, f"{scheme}_{int(history)}"))
        exports[f"{scheme} ({tag})"] = (path, signatures.SIGNATURE_DEFAULT, "new")
    if FLAGS.head_tree:
      path = head_export(setup, history, os.path.join(work, f"spm_head_{int(history)}"))
      exports[f"spm@head ({tag})"] = (path, signatures.SIGNATURE_DEFAULT, "new")
  return {
    "latency": latency_table(exports, setup),
    "scale": {"L": 3, "K": 64, "d": 64, "D": setup.content_dim},
    "catalogue_items": len(setup.catalogue),
    "export_bytes": _sizes(exports),
  }


def run_paper(work: str) -> dict:
  setup = paper_setup()
  exports = {}
  for history in _history_settings():
    tag = "history on" if history else "history off"
    hash_dir = export("hash", setup, history, os.path.join(work, f"paper_hash_{int(history)}"))
    exports[f"hash ({tag})"] = (hash_dir, signatures.SIGNATURE_DEFAULT, "new")
    _sid_exports(exports, "spm", setup, history, os.path.join(work, "paper"), True)
    if FLAGS.head_tree:
      path = head_export(setup, history, os.path.join(work, f"paper_spm_head_{int(history)}"))
      exports[f"spm@head ({tag})"] = (path, signatures.SIGNATURE_DEFAULT, "new")
      exports[f"spm@head predict_codes ({tag})"] = (path, signatures.SIGNATURE_CODES, "new")
  return {
    "latency": latency_table(exports, setup),
    "scale": PAPER,
    "catalogue_items": len(setup.catalogue),
    "export_bytes": _sizes(exports),
  }


def run_profile(work: str) -> dict:
  setup = experiment_setup()
  spm_dir = export("spm", setup, True, os.path.join(work, "profile_spm"))
  hash_dir = export("hash", setup, True, os.path.join(work, "profile_hash"))
  default, codes = signatures.SIGNATURE_DEFAULT, signatures.SIGNATURE_CODES
  cases = {
    "hash: serving_default": (hash_dir, default, "new"),
    "after: serving_default, catalogue items": (spm_dir, default, "catalogue"),
    "after: serving_default, new items": (spm_dir, default, "new"),
    "after: predict_codes": (spm_dir, codes, "catalogue"),
  }
  if FLAGS.head_tree:
    head_dir = head_export(setup, True, os.path.join(work, "profile_spm_head"))
    before = {"before (--head_tree): serving_default": (head_dir, default, "new")}
    if codes in tf.saved_model.load(head_dir).signatures:  # Older trees have no codes signature.
      before["before (--head_tree): predict_codes"] = (head_dir, codes, "new")
    cases = {**before, **cases}
  candidates = FLAGS.profile_candidates
  return {
    "profile": {
      name: profile(path, sig, candidates, *_catalogue(setup, items))
      for name, (path, sig, items) in cases.items()
    },
    "candidates": candidates,
  }


# ---------------------------------------------------------------------------------------------
# Reports.


def latency_markdown(result: dict) -> list:
  sizes = [int(c) for c in FLAGS.candidates]
  header = "| export | " + " | ".join(f"{c} cand. median / p99 ms (x hash)" for c in sizes)
  header += " | CPU ms per request, " + " / ".join(f"{c}" for c in sizes) + " cand. (x hash) |"
  lines = [header, "|---|" + "---:|" * (len(sizes) + 1)]
  latency = result["latency"]
  for name, cells in latency.items():
    parts, cpu = [], []
    for c in sizes:
      cell = cells[c]
      base = latency.get(latency_figures.hash_row(name), {}).get(c)
      ratio = f" ({cell['median_ms'] / base['median_ms']:.2f}x)" if base else ""
      parts.append(f"{cell['median_ms']:.2f} / {cell['p99_ms']:.2f}{ratio}")
      cpu_ratio = f" ({cell['cpu_median_ms'] / base['cpu_median_ms']:.2f}x)" if base else ""
      cpu.append(f"{cell['cpu_median_ms']:.2f}{cpu_ratio}")
    lines.append(f"| {name} | " + " | ".join(parts) + " | " + " / ".join(cpu) + " |")
  return lines


def verdict(result: dict, names) -> str:
  latency, failed = result["latency"], []
  for name in names:
    for c in (100, 1000):
      base = latency.get(latency_figures.hash_row(name), {}).get(c)
      if (
        base
        and c in latency[name]
        and latency[name][c]["median_ms"] > TARGET_RATIO * base["median_ms"]
      ):
        failed.append(f"{name} at {c}")
  return "met" if not failed else "NOT met: " + ", ".join(failed)


def markdown(suite: str, result: dict) -> str:
  machine = result["machine"]
  lines = [
    f"# Serving latency: {suite}",
    "",
    f"{result['method']}; history {FLAGS.history_rows} per request; "
    + (
      f"{FLAGS.profile_runs} traced requests per case; "
      if suite == "profile"
      else f"{FLAGS.repetitions} timed requests per cell; "
    )
    + f"{machine['cpus']} CPUs, TF {machine['tf']}; scale {result.get('scale')}.",
    "",
  ]
  if suite in ("experiment", "paper"):
    lines += latency_markdown(result)
    names = [n for n in result["latency"] if not n.startswith(("hash", "spm@head"))]
    lines.append("")
    matches = [f" [{m}]" for m in FLAGS.catalogue_match] if len(FLAGS.catalogue_match) > 1 else [""]
    runtimes = [f", {r})" for r in FLAGS.runtime] if len(FLAGS.runtime) > 1 else [")"]
    for runtime, label, match, items in itertools.product(
      runtimes, ("serving_default", "predict_codes"), matches, FLAGS.request_items
    ):
      group = [
        n
        for n in names
        if ("predict_codes" in n) == (label == "predict_codes")
        and f", {items} items" in n
        and match in n
        and n.endswith(runtime)
      ]
      if group:
        where = f" ({runtime[2:-1]})" if len(runtimes) > 1 else ""
        lines.append(
          f"Target median <= {TARGET_RATIO}x hash at 100 and 1,000 candidates{where}, "
          f"{label}{match}, {items} items: {verdict(result, group)}."
        )
    sizes = result.get("export_bytes", {})
    lines += [
      "",
      f"Catalogue cache: {'on' if FLAGS.catalogue_cache else 'off'} "
      f"({result.get('catalogue_items')} catalogue items). Export sizes, MB: "
      + ", ".join(f"{name} {size / 1e6:.1f}" for name, size in sizes.items())
      + ".",
    ]
  else:
    cases = result["profile"]
    names = sorted({k for case in cases.values() for k in case["op_ms"]})
    lines += [
      f"One SPM request of {result['candidates']} candidates (history on): op time per component, "
      "ms (median of traced runs; ops on parallel threads add up to more than the wall time).",
      "",
      "| component | " + " | ".join(cases) + " |",
      "|---|" + "---:|" * len(cases),
    ]
    for name in names:
      lines.append(
        f"| {name} | "
        + " | ".join(f"{c['op_ms'].get(name, 0.0):.2f}" for c in cases.values())
        + " |"
      )
    lines.append(
      "| **sum of op times** | "
      + " | ".join(f"{sum(c['op_ms'].values()):.2f}" for c in cases.values())
      + " |"
    )
    lines.append(
      "| **wall time (traced)** | "
      + " | ".join(f"{c['wall_ms']:.2f}" for c in cases.values())
      + " |"
    )
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.output_dir:
    raise app.UsageError("--output_dir is required")
  if FLAGS.repetitions < 1 or FLAGS.warmup < 0:
    raise app.UsageError(
      f"--repetitions must be positive and --warmup non-negative. Received: "
      f"{FLAGS.repetitions}, {FLAGS.warmup}"
    )
  unknown = sorted(set(FLAGS.catalogue_match) - set(catalogue_cache.MATCHES))
  if unknown or not FLAGS.catalogue_match:
    raise app.UsageError(
      f"--catalogue_match must name one or more of {sorted(catalogue_cache.MATCHES)}. "
      f"Received: --catalogue_match={','.join(FLAGS.catalogue_match)}"
    )
  bad = sorted(set(FLAGS.runtime) - set(latency_timing.RUNTIMES))
  if bad or not FLAGS.runtime:
    raise app.UsageError(
      "--runtime must name session, eager or both. Received: --runtime=" + ",".join(FLAGS.runtime)
    )
  if FLAGS.head_tree and not os.path.isdir(os.path.join(FLAGS.head_tree, "features")):
    raise app.UsageError(f"--head_tree={FLAGS.head_tree!r} is not a checkout of this project")
  work = os.path.join(FLAGS.output_dir, "work")
  os.makedirs(work, exist_ok=True)
  run = {"experiment": run_experiment, "paper": run_paper, "profile": run_profile}[FLAGS.suite]
  result = run(work)
  result["machine"] = {
    "platform": platform.platform(),
    "cpus": os.cpu_count(),
    "tf": tf.__version__,
  }
  result["runtimes"] = ["session"] if FLAGS.suite == "profile" else list(FLAGS.runtime)
  result["method"] = (
    "session: the SavedModel's MetaGraph in a TF1 Session, step stats of Session.run with "
    "FULL_TRACE, one user per request"
    if FLAGS.suite == "profile"
    else "; ".join(latency_timing.RUNTIMES[r] for r in FLAGS.runtime)
    + "; one user per request, exports and runtimes round robin"
  )
  base = os.path.join(FLAGS.output_dir, FLAGS.suite)
  text = markdown(FLAGS.suite, result)
  io_utils.write_json(base + ".json", json.loads(json.dumps(result, default=str)))
  io_utils.write_text(base + ".md", text)
  latency_figures.plot(FLAGS.suite, result, base + ".png", TARGET_RATIO)
  print(text)
  print(f"wrote {base}.json, {base}.md and {base}.png")


if __name__ == "__main__":
  cli.run(main)
