"""Every registered scheme, trained on cached SIDs and exported: core TF ops only, the same
predictions in a fresh `tensorflow`-only process and through TF Serving's C++ loader, and the same
predictions from the cached training path, the exported raw-embedding path and `predict_codes`.

One class builds every ranker once (a tiny catalogue, a frozen random SID encoder, a SentencePiece
model over its SIDs, one short `fit` on cached subword ids) and exports each: about a minute on two
cores. The C++ checks compile the loader once (skipped without g++).
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd

from export import contract_check, export_model, serving_assets, signatures
from features import history, schema, spm_training
from model import ranker as ranker_lib
from model import schemes, semantic_id_encoder, sid_item
from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import TestCase, tf
from trainers import ranker_training

D, L, K, H = 8, 3, 8, 4
N_ITEMS, N_USERS, N_ROWS = 60, 12, 480


def _dataset() -> schema.Dataset:
  rng = np.random.default_rng(0)
  items = pd.DataFrame({"item_id": np.arange(100, 100 + N_ITEMS), "first_seen": 0})
  interactions = pd.DataFrame(
    {
      "user_id": rng.integers(0, N_USERS, N_ROWS),
      "item_id": rng.integers(100, 100 + N_ITEMS, N_ROWS),
      "timestamp": np.sort(rng.integers(0, 10_000, N_ROWS)),
      "click": rng.integers(0, 2, N_ROWS).astype(np.int8),
      "second_label": rng.normal(size=N_ROWS).astype(np.float32),
    }
  )
  embeddings = rng.normal(size=(N_ITEMS, D)).astype(np.float32)
  return schema.Dataset("tiny", items, embeddings, interactions, "rating")


def _encoder() -> semantic_id_encoder.SemanticIdEncoder:
  """A frozen encoder with random weights (SID quality is irrelevant here)."""
  rng = np.random.default_rng(1)
  encoder = semantic_id_encoder.SemanticIdEncoder(L, K, D, D, name="sid_encoder")
  encoder.build(tf.TensorShape([None, D]))
  encoder.encoder_kernel.assign(rng.normal(size=(D, D)).astype(np.float32))
  encoder.codebooks.assign(rng.normal(size=(L, K, D)).astype(np.float32))
  return encoder


def _item_config(scheme: str) -> schemes.ItemRepresentationConfig:
  return schemes.ItemRepresentationConfig(
    scheme=scheme,
    embedding_dim=8,
    table_rows=L * K + 1 + 20,
    hybrid_sid_scheme="spm",
    token_dropout=0.5 if schemes.get(scheme).uses_sid else 0.0,
    id_dropout=0.5 if scheme == schemes.HYBRID else 0.0,
  )


RANKER = ranker_lib.RankerConfig(
  second_label_name="rating", user_buckets=50, history_length=H, hidden_units=(8,)
)


class SchemeExportsTest(TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.work = os.path.join(tf.compat.v1.test.get_temp_dir(), "scheme_exports")
    cls.dataset = data = _dataset()
    encoder = _encoder()
    codes = encoder.assign_codes(data.embeddings)
    config = spm_training.SpmTrainingConfig(vocab_size=L * K + 1 + 10)
    cls.proto = spm_training.train_sid_spm(codes, np.arange(N_ITEMS) % 7 + 1, K, config)
    cls.exports, cls.cached, cls.caches, cls.cache_exports = {}, {}, {}, {}
    for scheme in schemes.comparison_names():
      tf.keras.backend.clear_session()
      tf.keras.utils.set_random_seed(0)
      cls._train_and_export(scheme, encoder)

  @classmethod
  def _train_and_export(cls, scheme, encoder):
    data, item_config = cls.dataset, _item_config(scheme)
    proto = cls.proto if item_config.spec.spm_budget(item_config) is not None else None
    sid_encoder = encoder if item_config.spec.uses_sid else None
    cache = ranker_training.catalogue_cache(data, item_config, sid_encoder, proto)
    model = ranker_training.build_ranker(item_config, RANKER, sid_encoder, proto)
    model = ranker_training.read_cache(model, cache)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    frame = data.interactions
    model.fit(
      ranker_training.make_dataset(data, frame, RANKER, 64, True, 0, cache), epochs=1, verbose=0
    )
    scored = ranker_training.make_dataset(data, frame, RANKER, 128, item_cache=cache)
    cls.cached[scheme] = ranker_training.predict(model, scored)
    cls.caches[scheme] = cache
    run_dir = os.path.join(cls.work, "runs", scheme)
    ranker_training.save_ranker(model, run_dir, item_config, D, proto)
    cls.exports[scheme] = export_model.export(run_dir, os.path.join(cls.work, "serving", scheme))
    if item_config.spec.uses_sid:  # The same trained ranker with the catalogue cached in its graph.
      reloaded = ranker_training.load_ranker(run_dir)
      sid_item.cache_catalogue(reloaded.item_representation, data.embeddings)
      path = os.path.join(cls.work, "cached", scheme)
      export_model.keras_serving_module(reloaded, D, 10_000).save(path)
      cls.cache_exports[scheme] = path

  def test_sid_schemes_train_on_cached_subword_ids(self):
    for scheme in schemes.comparison_names():
      cache = self.caches[scheme]
      if schemes.get(scheme).uses_sid:
        self.assertEqual(list(cache), [sid_item.TOKENS])
        self.assertEqual(len(cache[sid_item.TOKENS]), N_ITEMS)
        self.assertLessEqual(cache[sid_item.TOKENS].shape[1], L)  # bigram: 2 tokens.
      else:
        self.assertEqual(cache, {})
    frame = self.dataset.interactions
    cached = ranker_training.make_dataset(
      self.dataset, frame, RANKER, 4, item_cache=self.caches["spm"]
    )
    batch = next(iter(cached))
    self.assertIn("history_sid_tokens", batch)
    self.assertNotIn("content_embedding", batch)
    self.assertNotIn("history_content_embedding", batch)

  def test_cached_training_path_matches_the_exported_raw_embedding_path(self):
    raw = next(iter(history.make_tf_dataset(self.dataset, self.dataset.interactions, N_ROWS, H)))
    for scheme, export_dir in self.exports.items():
      with self.subTest(scheme):
        loaded = tf.saved_model.load(export_dir)
        serve = loaded.signatures[signatures.SIGNATURE_DEFAULT]
        inputs = {k: raw[k] for k in serve.structured_input_signature[1]}
        served = serve(**inputs)
        for name in ("ctr", "rating"):
          self.assertAllClose(served[name], self.cached[scheme][name], atol=1e-5, rtol=0)
        if schemes.get(scheme).uses_sid:
          self.assertIn(signatures.SIGNATURE_CODES, loaded.signatures)
        else:
          self.assertNotIn(signatures.SIGNATURE_CODES, loaded.signatures)

  def _cache_requests(self, loaded):
    """serving_default requests: catalogue rows (the interactions: catalogue candidates and
    histories, zero padding), new rows (random embeddings), and both mixed row by row."""
    raw = next(iter(history.make_tf_dataset(self.dataset, self.dataset.interactions, 64, H)))
    serve = loaded.signatures[signatures.SIGNATURE_DEFAULT]
    catalogue = {k: raw[k].numpy() for k in serve.structured_input_signature[1]}
    rng = np.random.default_rng(7)
    new = dict(catalogue)
    for key in ("content_embedding", "history_content_embedding"):
      new[key] = rng.normal(size=catalogue[key].shape).astype(np.float32)
    mixed = dict(catalogue)
    for key in ("content_embedding", "history_content_embedding"):
      pick = (np.arange(64) % 3 == 0).reshape((64,) + (1,) * (catalogue[key].ndim - 1))
      mixed[key] = np.where(pick, new[key], catalogue[key])
    return {"catalogue": catalogue, "new": new, "mixed": mixed}

  def test_catalogue_cache_export_matches_the_uncached_export(self):
    for scheme, cached_dir in self.cache_exports.items():
      plain = tf.saved_model.load(self.exports[scheme])
      cached = tf.saved_model.load(cached_dir)
      self.assertEqual(set(cached.signatures), set(plain.signatures))
      for name, request in self._cache_requests(plain).items():
        with self.subTest(f"{scheme}_{name}"):
          inputs = {k: tf.constant(v) for k, v in request.items()}
          expected = plain.signatures[signatures.SIGNATURE_DEFAULT](**inputs)
          got = cached.signatures[signatures.SIGNATURE_DEFAULT](**inputs)
          for key in ("ctr", "rating"):
            self.assertAllClose(got[key], expected[key], atol=1e-5, rtol=0)
          codes = serving_assets.codes_inputs(plain, request)
          codes = {k: tf.constant(v) for k, v in codes.items()}
          from_codes = cached.signatures[signatures.SIGNATURE_CODES](**codes)
          for key in ("ctr", "rating"):
            self.assertAllClose(from_codes[key], expected[key], atol=1e-5, rtol=0)

  def test_catalogue_cache_export_serves_in_a_tensorflow_only_process(self):
    scheme = "spm"
    loaded = tf.saved_model.load(self.cache_exports[scheme])
    request = self._cache_requests(loaded)["mixed"]
    expected = loaded.signatures[signatures.SIGNATURE_DEFAULT](
      **{k: tf.constant(v) for k, v in request.items()}
    )
    work = self.get_temp_dir()
    arrays = {k: v.astype("S") if v.dtype == object else v for k, v in request.items()}
    np.savez(os.path.join(work, "in.npz"), **arrays)
    code = (
      "import sys, numpy as np, tensorflow as tf\n"
      "m = tf.saved_model.load(sys.argv[1])\n"
      "x = {k: tf.constant(v) for k, v in np.load(sys.argv[2]).items()}\n"
      "y = m.signatures['serving_default'](**x)\n"
      "np.savez(sys.argv[3], **{k: v.numpy() for k, v in y.items()})\n"
      "top = {n.split('.')[0] for n in sys.modules}\n"
      "bad = top & {'tensorflow_text', 'model', 'features', 'export'}\n"
      "sys.exit(3 if bad else 0)\n"
    )
    out = os.path.join(work, "out.npz")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    args = [sys.executable, "-I", "-c", code, self.cache_exports[scheme], work + "/in.npz", out]
    result = subprocess.run(args, capture_output=True, text=True, cwd=work, env=env, timeout=300)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    for key in ("ctr", "rating"):
      self.assertAllClose(np.load(out)[key], expected[key], atol=1e-5, rtol=0)
    self.assertEqual(contract_check.non_core_ops(self.cache_exports[scheme]), set())
    if shutil.which("g++") is None:
      self.skipTest("g++ is not installed: the C++ LoadSavedModel check needs it")
    build_dir = os.environ.get("SEMANTIC_IDS_LOADER_BUILD_DIR") or os.path.join(
      tf.compat.v1.test.get_temp_dir(), "loader_build"
    )
    checks = contract_check.cpp_checks(
      self.cache_exports[scheme], request, {k: v.numpy() for k, v in expected.items()},
      build_dir=build_dir,
    )  # fmt: skip
    self.assertTrue(all(r.passed for r in checks), contract_check.format_summary(checks))

  def test_every_export_passes_the_contract_check_without_tf_text(self):
    skip_cpp = shutil.which("g++") is None
    build_dir = os.environ.get("SEMANTIC_IDS_LOADER_BUILD_DIR") or os.path.join(
      tf.compat.v1.test.get_temp_dir(), "loader_build"
    )  # The same folder as loader_check_test's: one compilation per test process.
    # One fresh interpreter checks the exports without C++ checks, one the three with them.
    cpp = {s: d for s, d in self.exports.items() if s in ("hash", "spm", "hybrid")}
    results = contract_check.check_exports(
      [d for s, d in self.exports.items() if s not in cpp], batch_size=6, skip_cpp=True
    )
    results.update(
      contract_check.check_exports(
        list(cpp.values()), batch_size=6, build_dir=build_dir, skip_cpp=skip_cpp
      )
    )
    for scheme, export_dir in self.exports.items():
      with self.subTest(scheme):
        summary = contract_check.format_summary(results[export_dir])
        self.assertTrue(all(r.passed for r in results[export_dir]), summary)
        names = {r.name for r in results[export_dir]}
        expected = {"core_ops_only", "fresh_python", "fresh_python_examples", "shared_history"}
        if schemes.get(scheme).uses_sid:
          expected.add("fresh_python_codes")
        self.assertEqual({n for n in names if not n.startswith("cpp_")}, expected)
        if scheme not in cpp or skip_cpp:
          self.assertEqual(names, expected)
    if skip_cpp:
      self.skipTest("g++ is not installed: the C++ LoadSavedModel checks need it")
    for scheme, export_dir in cpp.items():  # No SID; SPM segmentation; hash + SID with history.
      with self.subTest(f"cpp_{scheme}"):
        names = {r.name for r in results[export_dir]}
        self.assertIn("cpp_loader", names)
        if scheme != "hash":
          self.assertContainsSubset(
            {"cpp_codes", "cpp_bad_codes_range", "cpp_bad_codes_length", "cpp_bad_codes_dtype",
             "cpp_bad_codes_nan_mask"}, names
          )  # fmt: skip


if __name__ == "__main__":
  tf.test.main()
