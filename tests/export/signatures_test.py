"""Tests for export/signatures.py: the four signatures on a loaded stand-in export, bad input."""

import os

import numpy as np
from absl.testing import parameterized

from export import contract_check, signatures
from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import TestCase, tf
from tests.export import stand_in_model


def _tensors(inputs):
  return {name: tf.constant(value) for name, value in inputs.items()}


class SignaturesTest(TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.export_dir = os.path.join(tf.compat.v1.test.get_temp_dir(), "signatures_export")
    tf.keras.backend.clear_session()
    model = stand_in_model.export(cls.export_dir)
    cls.loaded = tf.saved_model.load(cls.export_dir)
    # Reference outputs of the in-process model, computed before setUp clears the Keras session.
    cls.expected = {
      "six": model(stand_in_model.sample_inputs(6)),
      "users": model(cls._unknown_users()),
      "head": model(stand_in_model.sample_inputs(5)),
      "codes": model.sid_codes(stand_in_model.sample_inputs(4)["content_embedding"]),
    }
    cls.codes_of_six = model.sid_codes(stand_in_model.sample_inputs(6)["content_embedding"]).numpy()

  @staticmethod
  def _unknown_users():
    inputs = stand_in_model.sample_inputs(3)
    inputs["user_id"] = np.array([b"", b"never-seen-user", b"\xff\xfe"], dtype=object)
    return inputs

  def serve(self, inputs):
    return self.loaded.signatures[signatures.SIGNATURE_DEFAULT](**_tensors(inputs))

  def test_signature_names_inputs_and_outputs(self):
    sigs = self.loaded.signatures
    self.assertCountEqual(
      sigs.keys(), ["serving_default", "predict_examples", "semantic_id", "predict_codes"]
    )
    default = sigs["serving_default"]
    inputs = default.structured_input_signature[1]
    self.assertEqual(inputs["content_embedding"].shape.as_list(), [None, 8])
    self.assertEqual(inputs["content_embedding"].dtype, tf.float32)
    self.assertEqual(inputs["user_id"].dtype, tf.string)
    outputs = default.structured_outputs
    self.assertCountEqual(outputs, ["ctr", "second_label"])
    self.assertEqual(outputs["ctr"].shape.as_list(), [None])
    self.assertEqual(list(sigs["predict_examples"].structured_input_signature[1]), ["examples"])
    self.assertEqual(sigs["semantic_id"].structured_outputs["codes"].shape.as_list(), [None, 2])
    self.assertEqual(sigs["semantic_id"].structured_outputs["codes"].dtype, tf.int32)
    codes = sigs["predict_codes"].structured_input_signature[1]
    self.assertCountEqual(codes, ["codes", "user_id", "item_id"])
    self.assertEqual(codes["codes"].shape.as_list(), [None, 2])
    self.assertEqual(codes["codes"].dtype, tf.int32)
    self.assertCountEqual(sigs["predict_codes"].structured_outputs, ["ctr", "second_label"])

  def test_serving_default_matches_the_model(self):
    inputs = stand_in_model.sample_inputs(6)
    outputs = self.serve(inputs)
    expected = self.expected["six"]
    self.assertAllClose(outputs["ctr"], expected["ctr"], atol=1e-6)
    self.assertAllClose(outputs["second_label"], expected["second_label"], atol=1e-6)

  @staticmethod
  def _with_embedding(value):
    inputs = stand_in_model.sample_inputs(3)
    inputs["content_embedding"] = value
    return inputs

  @parameterized.named_parameters(("nan", np.nan), ("inf", np.inf), ("minus_inf", -np.inf))
  def test_non_finite_embedding_fails_naming_the_input(self, bad):
    embedding = np.ones([3, 8], np.float32)
    embedding[1, 2] = bad
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "content_embedding.*finite"):
      self.serve(self._with_embedding(embedding))

  @parameterized.named_parameters(("narrow", 7), ("wide", 9))
  def test_wrong_embedding_width_fails_naming_the_input(self, width):
    inputs = self._with_embedding(np.ones([3, width], np.float32))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r"content_embedding.*shape"):
      self.serve(inputs)

  def test_wrong_dtype_fails_with_invalid_argument(self):
    inputs = self._with_embedding(np.ones([3, 8], np.float64))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "float"):
      self.serve(inputs)

  def test_mismatched_batch_sizes_fail_naming_the_input(self):
    inputs = stand_in_model.sample_inputs(3)
    inputs["user_id"] = inputs["user_id"][:2]
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "user_id.*as many rows"):
      self.serve(inputs)

  def test_empty_batch_gives_empty_outputs(self):
    outputs = self.serve(stand_in_model.sample_inputs(0))
    self.assertEqual(outputs["ctr"].shape.as_list(), [0])
    self.assertEqual(outputs["second_label"].shape.as_list(), [0])
    codes = self.loaded.signatures["semantic_id"](content_embedding=tf.zeros([0, 8]))["codes"]
    self.assertEqual(codes.shape.as_list(), [0, 2])

  def test_unknown_and_empty_user_ids_get_valid_predictions(self):
    ctr = self.serve(self._unknown_users())["ctr"].numpy()
    self.assertEqual(ctr.shape, (3,))
    self.assertTrue(np.all((ctr > 0) & (ctr < 1)))
    self.assertAllClose(ctr, self.expected["users"]["ctr"], atol=1e-6)

  def test_ten_thousand_rows_in_one_request(self):
    inputs = stand_in_model.sample_inputs(10_000)
    outputs = self.serve(inputs)
    self.assertEqual(outputs["ctr"].shape.as_list(), [10_000])
    self.assertTrue(np.all(np.isfinite(outputs["second_label"].numpy())))
    self.assertAllClose(outputs["ctr"][:5], self.expected["head"]["ctr"], atol=1e-6)

  def test_more_rows_than_max_batch_size_fail(self):
    specs = stand_in_model.contract().input_specs
    validate = tf.function(lambda f: signatures.validate_inputs(f, specs, max_batch_size=4))
    validate(_tensors(stand_in_model.sample_inputs(4)))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "max_batch_size=4"):
      validate(_tensors(stand_in_model.sample_inputs(5)))

  def test_predict_examples_matches_serving_default(self):
    inputs = stand_in_model.sample_inputs(5)
    examples = contract_check.serialize_examples(inputs)
    from_examples = self.loaded.signatures["predict_examples"](examples=tf.constant(examples))
    self.assertAllClose(from_examples["ctr"], self.serve(inputs)["ctr"], atol=0)

  def test_predict_examples_checks_the_row_limit_before_parsing(self):
    # Strings that are not tf.Examples: under the limit the parser rejects them; over it the row
    # check must fail first (nothing parsed), naming the signature's input.
    predict = self.loaded.signatures["predict_examples"]
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "parse"):
      predict(examples=tf.constant([b"not an example"] * 3))
    with self.assertRaises(tf.errors.InvalidArgumentError) as raised:
      predict(examples=tf.constant([b"not an example"] * 10_001))
    message = raised.exception.message
    self.assertIn(
      "assertion failed: [Input `examples` has more rows than max_batch_size=10000; split it] "
      "[Condition x <= y did not hold element-wise:]",
      message,
    )
    self.assertIn("[10001]", message)
    self.assertNotIn("parse", message.lower())

  def test_predict_examples_missing_feature_fails_naming_it(self):
    inputs = stand_in_model.sample_inputs(2)
    del inputs["content_embedding"]
    examples = contract_check.serialize_examples(inputs)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "content_embedding"):
      self.loaded.signatures["predict_examples"](examples=tf.constant(examples))

  def test_semantic_id_matches_the_encoder_and_validates(self):
    embedding = stand_in_model.sample_inputs(4)["content_embedding"]
    codes = self.loaded.signatures["semantic_id"](content_embedding=embedding)["codes"]
    self.assertAllEqual(codes, self.expected["codes"])
    embedding[0, 0] = np.nan
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "content_embedding.*finite"):
      self.loaded.signatures["semantic_id"](content_embedding=embedding)

  def _codes_request(self, **changes):
    inputs = stand_in_model.sample_inputs(6)
    del inputs["content_embedding"]
    return _tensors({**inputs, "codes": self.codes_of_six, **changes})

  def test_predict_codes_matches_serving_default(self):
    outputs = self.loaded.signatures["predict_codes"](**self._codes_request())
    expected = self.serve(stand_in_model.sample_inputs(6))
    self.assertAllClose(outputs["ctr"], expected["ctr"], atol=0)
    self.assertAllClose(outputs["second_label"], expected["second_label"], atol=0)
    empty = self.loaded.signatures["predict_codes"](
      codes=tf.zeros([0, 2], tf.int32),
      user_id=tf.zeros([0], tf.string),
      item_id=tf.zeros([0], tf.string),
    )
    self.assertEqual(empty["ctr"].shape.as_list(), [0])

  @parameterized.named_parameters(("too_large", 4), ("negative", -1))
  def test_predict_codes_out_of_range_fails_naming_the_input(self, bad):
    codes = self.codes_of_six.copy()
    codes[3, 1] = bad
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r"Input `codes`.*\[0, 4\)"):
      self.loaded.signatures["predict_codes"](**self._codes_request(codes=codes))

  def test_predict_codes_wrong_length_and_dtype_fail(self):
    longer = np.concatenate([self.codes_of_six, self.codes_of_six[:, :1]], axis=1)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r"Input `codes`.*shape"):
      self.loaded.signatures["predict_codes"](**self._codes_request(codes=longer))
    with self.assertRaisesRegex((tf.errors.InvalidArgumentError, TypeError, ValueError), "int"):
      self.loaded.signatures["predict_codes"](
        **self._codes_request(codes=self.codes_of_six.astype(np.int64))
      )
    short = stand_in_model.sample_inputs(5)["user_id"]
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "user_id.*as many rows"):
      self.loaded.signatures["predict_codes"](**self._codes_request(user_id=short))

  def test_codes_contract_rejects_bad_arguments(self):
    specs = {"codes": tf.TensorSpec([None, 2], tf.int32), "x": tf.TensorSpec([None], tf.float32)}
    for bounds in ({"codes": 0}, {"x": 4}, {"missing": 4}):
      with self.assertRaisesRegex(ValueError, "`value_bounds` must name integer inputs"):
        signatures.ServingContract(specs, embedding_key=None, value_bounds=bounds)
    model, module = stand_in_model.build()
    with self.assertRaisesRegex(ValueError, "go together"):
      signatures.ServingModule(lambda f: model(f), stand_in_model.contract(), codes_fn=lambda f: f)
    with self.assertRaisesRegex(ValueError, "must have the outputs"):
      signatures.ServingModule(
        lambda f: model(f),
        stand_in_model.contract(),
        codes_fn=lambda f: f,
        codes_contract=signatures.ServingContract(specs, ("ctr",), embedding_key=None),
      )

  def test_with_sid_length_fills_the_sid_axes_only(self):
    specs = {
      "codes": tf.TensorSpec([None, None], tf.int32),
      "history_codes": tf.TensorSpec([None, 10, None], tf.int32),
      "history_mask": tf.TensorSpec([None, 10], tf.float32),
      "content_embedding": tf.TensorSpec([None, 8], tf.float32),
    }
    filled = signatures.with_sid_length(specs, 3)
    self.assertEqual(filled["codes"].shape.as_list(), [None, 3])
    self.assertEqual(filled["history_codes"].shape.as_list(), [None, 10, 3])
    self.assertEqual(filled["history_mask"].shape.as_list(), [None, 10])
    self.assertEqual(filled["content_embedding"].shape.as_list(), [None, 8])

  def test_example_spec_pads_variable_length_history(self):
    specs = {
      "history_item_id": tf.TensorSpec([None, None], tf.string),
      "history_embedding": tf.TensorSpec([None, None, 2], tf.float32),
      "position": tf.TensorSpec([None], tf.int32),
    }

    def example(ids, embeddings, position):
      feature = {
        "history_item_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=ids)),
        "history_embedding": tf.train.Feature(float_list=tf.train.FloatList(value=embeddings)),
        "position": tf.train.Feature(int64_list=tf.train.Int64List(value=[position])),
      }
      return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    serialized = [example([b"a", b"b"], [1, 2, 3, 4], 7), example([], [], 3)]
    parsed = signatures.parse_examples(tf.constant(serialized), specs)
    self.assertAllEqual(parsed["history_item_id"], [[b"a", b"b"], [b"", b""]])
    self.assertAllEqual(parsed["history_embedding"], [[[1, 2], [3, 4]], [[0, 0], [0, 0]]])
    self.assertAllEqual(parsed["position"], [7, 3])
    self.assertEqual(parsed["position"].dtype, tf.int32)

  def test_model_without_content_embedding(self):
    """The hash-ID baseline reads ids only: no embedding input, no semantic_id signature."""
    contract = signatures.ServingContract(
      {"user_id": tf.TensorSpec([None], tf.string), "item_id": tf.TensorSpec([None], tf.string)},
      embedding_key=None,
    )

    def predict(features):
      ids = tf.strings.to_hash_bucket_fast(features["item_id"], 7)
      return {"ctr": tf.cast(ids, tf.float32) / 7.0, "second_label": tf.zeros_like(ids, tf.float32)}

    path = os.path.join(self.get_temp_dir(), "ids_only")
    signatures.ServingModule(predict, contract).save(path)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    ctr = serve(user_id=tf.constant(["a", ""]), item_id=tf.constant(["x", "y"]))["ctr"]
    self.assertAllClose(ctr, tf.cast(tf.strings.to_hash_bucket_fast(["x", "y"], 7), tf.float32) / 7)
    self.assertEqual(
      serve(user_id=tf.zeros([0], tf.string), item_id=tf.zeros([0], tf.string))[
        "ctr"
      ].shape.as_list(),
      [0],
    )
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "user_id.*as many rows"):
      serve(user_id=tf.constant(["a"]), item_id=tf.constant(["x", "y"]))
    with self.assertRaisesRegex(ValueError, "needs a content-embedding input"):
      signatures.ServingModule(predict, contract, sid_fn=lambda x: x)

  def test_contract_rejects_bad_arguments(self):
    emb = tf.TensorSpec([None, 8], tf.float32)
    with self.assertRaisesRegex(ValueError, "must contain `embedding_key`"):
      signatures.ServingContract({"user_id": tf.TensorSpec([None], tf.string)})
    with self.assertRaisesRegex(ValueError, "batch-major"):
      signatures.ServingContract({"content_embedding": tf.TensorSpec([4, 8], tf.float32)})
    with self.assertRaisesRegex(ValueError, "float32\\[None, D\\]"):
      signatures.ServingContract({"content_embedding": tf.TensorSpec([None, None], tf.float32)})
    with self.assertRaisesRegex(ValueError, "must start with 'ctr'"):
      signatures.ServingContract({"content_embedding": emb}, output_names=("rating",))
    with self.assertRaisesRegex(ValueError, "max_batch_size"):
      signatures.ServingContract({"content_embedding": emb}, max_batch_size=0)


if __name__ == "__main__":
  tf.test.main()


class AllFiniteTest(TestCase):
  """`signatures.all_finite` (a matmul with zeros) finds every NaN and infinity."""

  def test_each_non_finite_value_at_each_position_is_found(self):
    check = tf.function(signatures.all_finite)
    for shape in ((3, 4), (2, 3, 5), (7,), (1, 1)):
      values = np.random.default_rng(0).normal(size=shape).astype(np.float32)
      self.assertTrue(bool(check(tf.constant(values))), shape)
      for bad in (np.nan, np.inf, -np.inf):
        for position in range(values.size):
          broken = values.copy().reshape(-1)
          broken[position] = bad
          with self.subTest(shape=shape, bad=bad, position=position):
            self.assertFalse(bool(check(tf.constant(broken.reshape(shape)))))

  def test_large_finite_values_float64_and_empty_inputs_pass(self):
    big = np.full((2, 3), np.finfo(np.float32).max, np.float32)  # Their sum would overflow.
    self.assertTrue(bool(signatures.all_finite(tf.constant(big))))
    self.assertTrue(bool(signatures.all_finite(tf.zeros([0, 4]))))
    self.assertTrue(bool(signatures.all_finite(tf.constant(3.0))))
    self.assertFalse(bool(signatures.all_finite(tf.constant([[1.0, np.inf]], tf.float64))))


class SharedInputsTest(TestCase):
  """`validate_inputs` with `shared_keys`: a history repeated on every row is passed once."""

  specs = {
    "x": tf.TensorSpec([None, 2], tf.float32),
    "history": tf.TensorSpec([None, 3, 2], tf.float32),
    "ids": tf.TensorSpec([None, 3], tf.string),
  }

  def validate(self, features):
    fn = tf.function(
      lambda f: signatures.validate_inputs(f, self.specs, 10, shared_keys=("history", "ids"))
    )
    return {k: v.numpy() for k, v in fn(_tensors(features)).items()}

  def request(self, rows=4):
    rng = np.random.default_rng(1)
    history = np.repeat(rng.normal(size=(1, 3, 2)).astype(np.float32), rows, 0)
    ids = np.repeat(np.array([[b"a", b"b", b""]], dtype=object), rows, 0)
    return {"x": rng.normal(size=(rows, 2)).astype(np.float32), "history": history, "ids": ids}

  def test_identical_rows_come_back_as_one_row(self):
    request = self.request()
    out = self.validate(request)
    self.assertEqual(out["history"].shape, (1, 3, 2))
    self.assertEqual(out["ids"].shape, (1, 3))
    self.assertAllEqual(out["history"][0], request["history"][0])
    self.assertEqual(out["x"].shape, (4, 2))

  def test_a_different_bit_keeps_every_row(self):
    for key, value in (("history", -0.0), ("ids", b"c")):
      request = self.request()
      request["history"][:, 0, 0] = 0.0
      request[key][3, 0, ...] = value  # -0.0 equals 0.0 as a float, not bit for bit.
      with self.subTest(key):
        out = self.validate(request)
        self.assertEqual(out["history"].shape, (4, 3, 2))
        self.assertEqual(out["ids"].shape, (4, 3))

  def test_one_row_for_all_candidates_is_accepted(self):
    request = self.request()
    request = {**request, "history": request["history"][:1], "ids": request["ids"][:1]}
    self.assertEqual(self.validate(request)["history"].shape, (1, 3, 2))

  def test_other_row_counts_fail_naming_the_input(self):
    request = self.request()
    request["history"] = request["history"][:2]
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "Input `history` must have as"):
      self.validate(request)

  def test_nan_in_a_shared_input_fails_whether_rows_repeat_or_not(self):
    for rows in ("repeated", "one differs", "sent once"):
      request = self.request()
      request["history"][:, 1, 1] = np.nan
      if rows == "one differs":
        request["history"][2, 0, 0] += 1.0
      if rows == "sent once":
        request["history"] = request["history"][:1]
      with self.subTest(rows):
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "Input `history` must be fin"):
          self.validate(request)

  def test_empty_request_passes(self):
    self.assertEqual(self.validate(self.request(0))["x"].shape, (0, 2))

  def test_contract_rejects_bad_shared_keys(self):
    specs = {"content_embedding": tf.TensorSpec([None, 4], tf.float32), **self.specs}
    for shared in (("missing",), ("content_embedding",), tuple(specs)):
      with self.subTest(shared):
        with self.assertRaisesRegex(ValueError, "shared_keys"):
          signatures.ServingContract(specs, shared_keys=shared)
