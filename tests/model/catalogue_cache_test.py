"""Tests of the in-graph catalogue cache: exact lookups, the collision guard, and a cached `SidItem`
giving the uncached tokens and vectors on catalogue, new and mixed rows (also after a SavedModel
round trip)."""

import itertools
import os
from unittest import mock

import numpy as np

from features import sid_ngram, sid_prefix_ngram, spm_training
from model import catalogue_cache, schemes, semantic_id_encoder, sid_item
from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import tf

D = 6


def _encoder(levels: int, k: int, seed: int = 0) -> semantic_id_encoder.SemanticIdEncoder:
  """A frozen encoder with random weights."""
  rng = np.random.default_rng(seed)
  encoder = semantic_id_encoder.SemanticIdEncoder(levels, k, D, D, name="sid_encoder")
  encoder.build(tf.TensorShape([None, D]))
  encoder.encoder_kernel.assign(rng.normal(size=(D, D)).astype(np.float32))
  encoder.codebooks.assign(rng.normal(size=(levels, k, D)).astype(np.float32))
  return encoder


def _rows(n: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)


def _spm_item(levels: int, k: int) -> sid_item.SidItem:
  encoder = _encoder(levels, k)
  codes = encoder.assign_codes(_rows(300, seed=5))
  config = spm_training.SpmTrainingConfig(vocab_size=levels * k + 1 + 12)
  proto = spm_training.train_sid_spm(codes, np.arange(300) % 5 + 1, k, config)
  item_config = schemes.ItemRepresentationConfig(
    "spm", embedding_dim=4, table_rows=config.vocab_size
  )
  return schemes.create(item_config, sid_encoder=encoder, spm_model_proto=proto)


def _items():
  """(name, SidItem): a tabulated SID space (content index only) and untabulated ones (content
  and SID indexes: unigram, prefix-ngram, SentencePiece)."""
  big_k = 128  # 128^3 SIDs > MAX_TABULATED_SIDS.
  return {
    "tabulated_unigram": sid_item.SidItem(
      _encoder(3, 8),
      sid_ngram.SidNgram(num_levels=3, codebook_size=8, ngram_size=1),
      embedding_dim=4,
    ),
    "unigram": sid_item.SidItem(
      _encoder(3, big_k), sid_ngram.SidNgram(3, big_k, ngram_size=1), embedding_dim=4
    ),
    "prefix": sid_item.SidItem(
      _encoder(3, big_k),
      sid_prefix_ngram.SidPrefixNgram(3, big_k, num_rows=500),
      embedding_dim=4,
    ),
    "spm": _spm_item(4, 32),  # 32^4 SIDs > MAX_TABULATED_SIDS.
  }


def _batches(catalogue: np.ndarray):
  """Catalogue rows, new rows, and both interleaved (with a repeated catalogue row)."""
  new = _rows(40, seed=9)
  mixed = np.concatenate([catalogue[:10], new[:10], catalogue[3:4], new[10:12]])
  return {"catalogue": catalogue[::-1], "new": new, "mixed": mixed[np.argsort(np.arange(23) % 4)]}


class FingerprintTest(base.TestCase):
  def test_numpy_and_tensorflow_agree(self):
    rng = np.random.default_rng(0)
    cases = {
      "float_even": rng.normal(size=(50, 8)).astype(np.float32),
      "float_odd": rng.normal(size=(50, 7)).astype(np.float32),
      "codes": rng.integers(0, 2048, size=(50, 8)).astype(np.int32),
      "wide_codes": rng.integers(-(2**40), 2**40, size=(50, 3)),
    }
    for name, rows in cases.items():
      with self.subTest(name):
        self.assertAllEqual(
          catalogue_cache.words(tf.constant(rows)), catalogue_cache.numpy_words(rows)
        )
        factors = tf.constant(catalogue_cache.multipliers(rows.shape[1]).view(np.int32))
        keys = catalogue_cache.numpy_fingerprints(rows)
        self.assertAllEqual(catalogue_cache.fingerprints(tf.constant(rows), factors), keys)
        self.assertLen(np.unique(keys), 50)

  def test_multipliers_are_fixed_and_odd(self):
    first = catalogue_cache.multipliers(64)
    self.assertEqual(first.shape, (64, 2))
    self.assertAllEqual(first, catalogue_cache.multipliers(64))
    self.assertTrue(np.all(first % 2 == 1))


class ExactRowIndexTest(base.TestCase):
  @base.parameterized.named_parameters(*((m, m) for m in catalogue_cache.MATCHES))
  def test_hits_catalogue_rows_and_misses_others(self, match):
    rows = _rows(20, seed=1)
    index = catalogue_cache.MATCHES[match](rows, np.arange(20) * 10)
    self.assertEqual(index.match, match)
    queries = np.concatenate([rows[[4, 0, 19]], _rows(2, seed=2), -rows[:1]])
    hit, values = index(tf.constant(queries))
    self.assertAllEqual(hit, [True, True, True, False, False, False])
    self.assertAllEqual(values[:3], [40, 0, 190])

  def test_zero_signs_and_nans_never_hit_another_row(self):
    rows = np.array([[0.0, 1.0], [np.nan, 2.0]], np.float32)
    index = catalogue_cache.ExactRowIndex(rows, np.array([7, 8]))
    queries = np.array([[0.0, 1.0], [-0.0, 1.0], [np.nan, 2.0], [np.nan, 3.0]], np.float32)
    hit, values = index(tf.constant(queries))
    # Bit for bit: -0.0 is another row (a miss, so the encoder decides); the same NaN bits hit.
    self.assertAllEqual(hit, [True, False, True, False])
    self.assertAllEqual(tf.gather(values, [0, 2]), [7, 8])

  def test_integer_rows_compare_in_the_input_dtype(self):
    index = catalogue_cache.ExactRowIndex(
      np.array([[1, 2, 3], [4, 5, 6]], np.int32), np.array([0, 1])
    )
    hit, _ = index(tf.constant([[4, 5, 6], [1, 2, 3 + 2**32], [1, 2, 4]], tf.int64))
    self.assertAllEqual(hit, [True, False, False])

  def test_collision_guard_rejects_a_row_with_the_same_fingerprint(self):
    # The fingerprint reads integers modulo 2^32: these two rows collide, their values differ.
    row = np.array([[5, 9]], np.int64)
    twin = np.array([[5 + 2**32, 9]], np.int64)
    self.assertEqual(
      catalogue_cache.numpy_fingerprints(row)[0], catalogue_cache.numpy_fingerprints(twin)[0]
    )
    lone = catalogue_cache.ExactRowIndex(row, np.array([1]))
    self.assertAllEqual(lone(tf.constant(np.concatenate([row, twin])))[0], [True, False])
    both = catalogue_cache.ExactRowIndex(np.concatenate([row, twin]), np.array([1, 2]))
    self.assertEqual(both.num_rows, 1)  # The table keeps the first row of a fingerprint ...
    hit, values = both(tf.constant(np.concatenate([twin, row])))
    self.assertAllEqual(hit, [False, True])  # ... so the twin always misses: never a wrong hit.
    self.assertEqual(int(values[1]), 1)

  def test_merge_misses_computes_only_the_misses(self):
    seen = []

    def compute(rows):
      seen.append(int(rows.shape[0]))
      return rows[:, :1] * 100

    inputs = tf.constant([[1], [2], [3], [4]], tf.int64)
    cached = tf.constant([[10], [-1], [30], [-1]], tf.int64)
    merged = catalogue_cache.merge_misses(
      tf.constant([True, False, True, False]), cached, inputs, compute
    )
    self.assertAllEqual(merged, [[10], [200], [30], [400]])
    self.assertEqual(seen, [2])
    everything = catalogue_cache.merge_misses(tf.constant([True] * 4), cached, inputs, compute)
    self.assertAllEqual(everything, cached)
    self.assertEqual(seen, [2])  # Not called when every row hits.
    nothing = catalogue_cache.merge_misses(tf.constant([False] * 4), cached, inputs, compute)
    self.assertAllEqual(nothing, [[100], [200], [300], [400]])
    self.assertEqual(seen, [2, 4])  # Every row, once, when none hits.

  def test_merge_misses_in_a_graph_takes_the_branch_of_the_request(self):
    compute = lambda rows: rows * 100  # noqa: E731
    merge = tf.function(
      lambda hit, cached, inputs: catalogue_cache.merge_misses(hit, cached, inputs, compute)
    )
    cached = tf.constant([10.0, -1.0, 30.0])
    inputs = tf.constant([1.0, 2.0, 3.0])
    for hit, want in (
      ([True, True, True], [10.0, -1.0, 30.0]),
      ([False, False, False], [100.0, 200.0, 300.0]),
      ([False, True, False], [100.0, -1.0, 300.0]),
    ):
      with self.subTest(hit=hit):
        self.assertAllEqual(merge(tf.constant(hit), cached, inputs), want)
    empty = merge(tf.zeros([0], tf.bool), tf.zeros([0]), tf.zeros([0]))
    self.assertEqual(empty.shape, (0,))

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "`rows` must be"):
      catalogue_cache.ExactRowIndex(np.zeros((0, 3), np.float32), np.zeros(0))
    with self.assertRaisesRegex(ValueError, "float32 or integers"):
      catalogue_cache.ExactRowIndex(np.zeros((2, 3), np.float64), np.zeros(2))
    with self.assertRaisesRegex(ValueError, "neither"):
      catalogue_cache.CatalogueCache()
    with self.assertRaisesRegex(ValueError, "needs its tokens"):
      catalogue_cache.CatalogueCache(embeddings=np.zeros((2, 3), np.float32))
    with mock.patch.object(catalogue_cache, "MAX_CACHED_BYTES", 10):
      with self.assertRaisesRegex(ValueError, "MiB of graph constants"):
        catalogue_cache.CatalogueCache(np.zeros((2, 3), np.float32), np.zeros((2, 1), np.int64))


class FingerprintRowIndexTest(base.TestCase):
  """The "fingerprint" guard: FarmHash of the row's bytes instead of the row."""

  def test_guard_is_eight_bytes_per_row(self):
    index = catalogue_cache.FingerprintRowIndex(_rows(20, seed=1), np.arange(20))
    self.assertEqual(index.guard.dtype, tf.uint8)  # Not the row's D floats.
    self.assertEqual(index.guard.shape, (20, 8))

  def test_guard_is_the_fingerprint_op_of_each_row(self):
    rows = _rows(5, seed=1)
    index = catalogue_cache.FingerprintRowIndex(rows, np.arange(5))
    self.assertAllEqual(
      index.guard, tf.stack([tf.fingerprint(rows[i : i + 1])[0] for i in range(5)])
    )

  def test_zero_signs_and_nans_match_bit_for_bit(self):
    rows = np.array([[0.0, 1.0], [np.nan, 2.0]], np.float32)
    index = catalogue_cache.FingerprintRowIndex(rows, np.array([7, 8]))
    queries = np.array([[0.0, 1.0], [-0.0, 1.0], [np.nan, 2.0], [np.nan, 3.0]], np.float32)
    self.assertAllEqual(index(tf.constant(queries))[0], [True, False, True, False])

  def test_guard_rejects_two_sign_flips_that_share_the_linear_key(self):
    # Each sign bit adds 2^31 * (odd) = 2^31 modulo 2^32 to both sums: two flips add 0.
    row = _rows(1, seed=4)
    twin = row * np.array([[-1, 1, -1, 1, 1, 1]], np.float32)
    self.assertEqual(
      catalogue_cache.numpy_fingerprints(row)[0], catalogue_cache.numpy_fingerprints(twin)[0]
    )
    for rows, expected in ((row, [True, False]), (np.concatenate([row, twin]), [True, False])):
      index = catalogue_cache.FingerprintRowIndex(rows, np.arange(len(rows)))
      self.assertEqual(index.num_rows, 1)  # The first row of a key stays; the twin misses.
      hit, values = index(tf.constant(np.concatenate([row, twin])))
      self.assertAllEqual(hit, expected)
      self.assertEqual(int(values[0]), 0)

  def test_cache_chooses_the_guard_and_counts_its_bytes(self):
    rows, tokens = _rows(100, seed=1), np.zeros((100, 2), np.int64)
    codes = np.arange(300).reshape(100, 3)
    default = catalogue_cache.CatalogueCache(rows, tokens, codes, tokens)
    self.assertEqual(default.match, "fingerprint")
    self.assertIsInstance(default.content_index, catalogue_cache.FingerprintRowIndex)
    self.assertIs(type(default.codes_index), catalogue_cache.ExactRowIndex)  # SIDs: exact.
    exact = catalogue_cache.CatalogueCache(rows, tokens, match="exact")
    self.assertIs(type(exact.content_index), catalogue_cache.ExactRowIndex)
    for index in catalogue_cache.MATCHES.values():  # Sibling guards behind one interface.
      self.assertTrue(issubclass(index, catalogue_cache.RowIndex))
    self.assertFalse(issubclass(catalogue_cache.FingerprintRowIndex, catalogue_cache.ExactRowIndex))
    with self.assertRaises(NotImplementedError):  # The base class has no guard.
      catalogue_cache.RowIndex(rows, tokens)
    # Per content row: key 8 + row id 8 + tokens 2 * 4, and the guard: 8 (fingerprint) or
    # D * 4 = 24 (exact): 3200 and 4800 bytes for 100 rows.
    with mock.patch.object(catalogue_cache, "MAX_CACHED_BYTES", 3200):
      catalogue_cache.CatalogueCache(rows, tokens)
      with self.assertRaisesRegex(ValueError, "MiB of graph constants"):
        catalogue_cache.CatalogueCache(rows, tokens, match="exact")

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "takes float32 rows. Received: dtype=int64"):
      catalogue_cache.FingerprintRowIndex(np.zeros((2, 3), np.int64), np.zeros(2))
    with self.assertRaisesRegex(ValueError, r"`match` must be one of \['exact', 'fingerprint'\]"):
      catalogue_cache.CatalogueCache(np.zeros((2, 3), np.float32), np.zeros((2, 1)), match="id")


class CachedSidItemTest(base.TestCase):
  def _check_same(self, layer, catalogue, label, match=catalogue_cache.DEFAULT_MATCH):
    uncached = {
      name: (layer.tokens(tf.constant(rows)), layer({"content_embedding": rows}))
      for name, rows in _batches(catalogue).items()
    }
    codes_before = {
      name: layer.tokens_of_codes(layer.codes(tf.constant(rows)))
      for name, rows in _batches(catalogue).items()
    }
    layer.cache_catalogue(catalogue, match=match)
    for name, rows in _batches(catalogue).items():
      with self.subTest(f"{label}_{name}"):
        tokens, vectors = uncached[name]
        self.assertAllEqual(layer.tokens(tf.constant(rows)), tokens)
        self.assertAllClose(layer({"content_embedding": rows}), vectors, atol=1e-5, rtol=0)
        codes = layer.codes(tf.constant(rows))
        self.assertAllEqual(layer.tokens_of_codes(codes), codes_before[name])
        graph = tf.function(lambda x: layer.tokens(x))  # noqa: B023
        self.assertAllEqual(graph(tf.constant(rows)), tokens)

  def test_cached_path_equals_uncached_path(self):
    catalogue = _rows(60, seed=3)
    for (name, layer), match in itertools.product(_items().items(), catalogue_cache.MATCHES):
      with self.subTest(name=name, match=match):
        layer({"content_embedding": catalogue[:2]})  # Builds the table.
        self._check_same(layer, catalogue, f"{name}_{match}", match)
        cache = layer.catalogue_cache
        self.assertEqual(cache.match, match)
        self.assertEqual(cache.content_index.num_rows, 60)
        if name == "tabulated_unigram":
          self.assertIsNone(cache.codes_index)  # The token table serves every SID already.
        else:
          self.assertIsNotNone(cache.codes_index)

  def test_catalogue_rows_skip_the_encoder(self):
    layer = _items()["unigram"]
    catalogue = _rows(30, seed=3)
    layer({"content_embedding": catalogue[:2]})
    layer.cache_catalogue(catalogue)
    with mock.patch.object(layer, "codes", side_effect=AssertionError("encoder ran")):
      layer.tokens(tf.constant(catalogue[[5, 1, 5]]))
    seen = []
    encode = layer.codes
    with mock.patch.object(layer, "codes", side_effect=lambda x: seen.append(len(x)) or encode(x)):
      layer.tokens(tf.constant(np.concatenate([catalogue[:3], _rows(2, seed=8)])))
    self.assertEqual(seen, [2])

  def test_colliding_rows_take_the_encoder_path(self):
    # With every multiplier 1, a row and any permutation of its floats collide.
    ones = lambda width: np.ones((width, 2), np.uint32)  # noqa: E731
    layer = _items()["unigram"]
    row = _rows(1, seed=4)
    twin = row[:, [2, 3, 0, 1, 4, 5]]
    layer({"content_embedding": row})
    expected = layer.tokens(tf.constant(np.concatenate([row, twin])))
    self.assertNotAllEqual(expected[0], expected[1])
    with mock.patch.object(catalogue_cache, "multipliers", ones):
      for catalogue, match in itertools.product(
        (row, np.concatenate([row, twin])), catalogue_cache.MATCHES
      ):
        cache = layer.cache_catalogue(catalogue, match=match)
        hit, _ = cache.content_index(tf.constant(np.concatenate([row, twin])))
        self.assertAllEqual(hit, [True, False])
        self.assertAllEqual(layer.tokens(tf.constant(np.concatenate([row, twin]))), expected)

  def test_extra_codes_and_clearing(self):
    layer = _items()["unigram"]
    catalogue = _rows(10, seed=3)
    layer({"content_embedding": catalogue[:2]})
    extra = np.array([[1, 2, 3], [127, 0, 5]], np.int32)
    expected = layer.tokens_of_codes(tf.constant(extra))
    cache = layer.cache_catalogue(catalogue, codes=extra)
    self.assertEqual(
      cache.codes_index.num_rows,
      len(np.unique(np.concatenate([layer.sid_encoder.assign_codes(catalogue), extra]), axis=0)),
    )
    self.assertAllEqual(cache.codes_index(tf.constant(extra))[0], [True, True])
    self.assertAllEqual(layer.tokens_of_codes(tf.constant(extra)), expected)
    with self.assertRaises(tf.errors.InvalidArgumentError):  # A miss still meets the range check.
      layer.tokens_of_codes(tf.constant([[1, 2, 128]], tf.int32))
    self.assertIsNone(layer.cache_catalogue())
    self.assertIsNone(layer.catalogue_cache)
    tabulated = _items()["tabulated_unigram"]
    self.assertIsNone(tabulated.cache_catalogue(codes=extra % 8))  # Nothing to cache.

  def test_cache_is_neither_config_nor_weights(self):
    layer = _items()["unigram"]
    catalogue = _rows(10, seed=3)
    layer({"content_embedding": catalogue[:2]})
    config, weights = layer.get_config(), [w.name for w in layer.weights]
    layer.cache_catalogue(catalogue)
    self.assertEqual(layer.get_config(), config)
    self.assertEqual([w.name for w in layer.weights], weights)
    path = tf.train.Checkpoint(layer=layer).write(os.path.join(self.get_temp_dir(), "ckpt"))
    fresh = _items()["unigram"]
    fresh({"content_embedding": catalogue[:2]})
    tf.train.Checkpoint(layer=fresh).read(path).assert_consumed()  # The same checkpoint shape.
    self.assertIsNone(fresh.catalogue_cache)
    self.assertAllClose(
      fresh({"content_embedding": catalogue}), layer({"content_embedding": catalogue})
    )

  def test_saved_model_round_trip(self):
    layer = _items()["spm"]
    catalogue = _rows(40, seed=3)
    layer({"content_embedding": catalogue[:2]})
    batches = _batches(catalogue)
    expected = {name: layer({"content_embedding": rows}) for name, rows in batches.items()}
    codes = {name: layer.codes(tf.constant(rows)) for name, rows in batches.items()}
    self.assertLen(sid_item.cache_catalogue(layer, catalogue), 1)
    module = tf.Module()
    module.layer = layer
    module.content = tf.function(
      lambda x: layer({"content_embedding": x}), input_signature=[tf.TensorSpec([None, D])]
    )

    def from_codes(c):
      with sid_item.reading(layer, sid_item.CODES):
        return layer({"codes": c})

    module.codes = tf.function(from_codes, input_signature=[tf.TensorSpec([None, 4], tf.int32)])
    path = os.path.join(self.get_temp_dir(), "cached")
    tf.saved_model.save(module, path)
    loaded = tf.saved_model.load(path)
    for name, rows in batches.items():
      with self.subTest(name):
        self.assertAllClose(loaded.content(tf.constant(rows)), expected[name], atol=1e-5, rtol=0)
        self.assertAllClose(loaded.codes(codes[name]), expected[name], atol=1e-5, rtol=0)


class FrozenVectorsTest(base.TestCase):
  """`sid_item.FrozenVectors`: cached rows served their pooled vector from one gather."""

  def _layer(self, name: str, catalogue: np.ndarray):
    layer = _items()[name]
    layer({"content_embedding": catalogue[:2]})  # Builds the table.
    layer.table.assign(tf.random.stateless_normal(layer.table.shape, seed=[1, 2]))
    return layer

  def test_vectors_equal_the_pooled_tokens_on_every_path(self):
    catalogue = _rows(50, seed=3)
    for name in ("tabulated_unigram", "unigram", "spm"):
      layer = self._layer(name, catalogue)
      batches = _batches(catalogue)
      expected = {k: layer({"content_embedding": rows}) for k, rows in batches.items()}
      codes = {k: layer.codes(tf.constant(rows)) for k, rows in batches.items()}
      with sid_item.reading(layer, sid_item.CODES):
        from_codes = {k: layer({"codes": c}) for k, c in codes.items()}
      layer.cache_catalogue(catalogue)
      frozen = sid_item.FrozenVectors(layer)
      for kind, rows in batches.items():
        with self.subTest(f"{name}_{kind}"), frozen.tracing():
          # The same sums of the same rows in the same order: bit-identical.
          self.assertAllEqual(layer({"content_embedding": rows}), expected[kind])
          graph = tf.function(lambda x: layer({"content_embedding": x}))  # noqa: B023
          self.assertAllEqual(graph(tf.constant(rows)), expected[kind])
          with sid_item.reading(layer, sid_item.CODES):
            self.assertAllEqual(layer({"codes": codes[kind]}), from_codes[kind])
      self.assertIsNone(layer.frozen_vectors)  # Restored after the block.

  def test_catalogue_rows_are_not_pooled(self):
    catalogue = _rows(30, seed=3)
    layer = self._layer("unigram", catalogue)
    layer.cache_catalogue(catalogue)
    frozen = sid_item.FrozenVectors(layer)
    pooled = []
    pool = sid_item.sum_pool_padded
    counting = lambda table, tokens: pooled.append(int(tokens.shape[0])) or pool(table, tokens)  # noqa: E731
    with frozen.tracing(), mock.patch.object(sid_item, "sum_pool_padded", counting):
      layer({"content_embedding": catalogue[[4, 1, 4]]})
      self.assertEqual(pooled, [30])  # Only the snapshot of the 30 catalogue rows.
      layer({"content_embedding": np.concatenate([catalogue[:3], _rows(2, seed=8)])})
      self.assertEqual(pooled, [30, 30, 2])  # The snapshot (unchanged), then the 2 new rows.

  def test_vectors_follow_the_weights_and_are_shared_while_unchanged(self):
    catalogue = _rows(20, seed=3)
    layer = self._layer("unigram", catalogue)
    layer.cache_catalogue(catalogue)
    frozen = sid_item.FrozenVectors(layer)
    index = layer.catalogue_cache.content_index
    with frozen.tracing():
      first = frozen.of(layer, index)
      self.assertIs(frozen.of(layer, index), first)  # One constant for every trace.
      layer.table.assign_add(tf.ones_like(layer.table))
      second = frozen.of(layer, index)
      self.assertIsNot(second, first)
      served = layer({"content_embedding": catalogue})
    layer.cache_catalogue()
    self.assertAllClose(served, layer({"content_embedding": catalogue}), atol=0, rtol=0)

  def test_training_pools_the_tokens(self):
    catalogue = _rows(20, seed=3)
    layer = self._layer("unigram", catalogue)
    layer.cache_catalogue(catalogue)
    with sid_item.FrozenVectors(layer).tracing(), tf.GradientTape() as tape:
      loss = tf.reduce_sum(layer({"content_embedding": catalogue}, training=True))
    gradient = tape.gradient(loss, layer.table)
    self.assertIsNotNone(gradient)
    self.assertGreater(float(tf.reduce_sum(tf.abs(tf.convert_to_tensor(gradient)))), 0.0)

  def test_no_sid_part_and_no_cache_change_nothing(self):
    catalogue = _rows(10, seed=3)
    layer = self._layer("unigram", catalogue)
    expected = layer({"content_embedding": catalogue})
    with sid_item.FrozenVectors(layer).tracing():  # No cache: the normal path.
      self.assertAllEqual(layer({"content_embedding": catalogue}), expected)
    with sid_item.FrozenVectors(None).tracing():
      pass

  def test_vectors_count_in_the_size_limit(self):
    rows, tokens = _rows(100, seed=1), np.zeros((100, 3), np.int64)
    size = rows.nbytes + tokens.size * 4
    with mock.patch.object(catalogue_cache, "MAX_CACHED_BYTES", size + 100 * 4 * 4):
      catalogue_cache.CatalogueCache(rows, tokens, vector_dim=4)
      with self.assertRaisesRegex(ValueError, "MiB of graph constants"):
        catalogue_cache.CatalogueCache(rows, tokens, vector_dim=5)

  def test_saved_model_holds_the_vectors(self):
    catalogue = _rows(40, seed=3)
    layer = self._layer("spm", catalogue)
    batches = _batches(catalogue)
    expected = {k: layer({"content_embedding": rows}) for k, rows in batches.items()}
    layer.cache_catalogue(catalogue)
    frozen = sid_item.FrozenVectors(layer)
    module = tf.Module()
    module.layer = layer

    def serve(x):
      with frozen.tracing():
        return layer({"content_embedding": x})

    module.content = tf.function(serve, input_signature=[tf.TensorSpec([None, D])])
    path = os.path.join(self.get_temp_dir(), "frozen")
    tf.saved_model.save(module, path)
    loaded = tf.saved_model.load(path)
    for kind, rows in batches.items():
      with self.subTest(kind):
        self.assertAllClose(loaded.content(tf.constant(rows)), expected[kind], atol=1e-6, rtol=0)


if __name__ == "__main__":
  tf.test.main()
