"""Tests for export/serving_assets.py: warm-up records, models.config and batching parameters."""

import os

import numpy as np
from google.protobuf import text_format

from export import serving_assets
from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import TestCase, tf
from tests.export import stand_in_model


class ServingAssetsTest(TestCase):
  def test_warmup_requests_round_trip_and_run(self):
    export_dir = os.path.join(self.get_temp_dir(), "1")
    stand_in_model.export(export_dir)
    specs = (
      tf.saved_model.load(export_dir).signatures["serving_default"].structured_input_signature[1]
    )
    requests = [("serving_default", serving_assets.sample_inputs(specs, n)) for n in (1, 100)]
    path = serving_assets.write_warmup_requests(export_dir, "ranker", requests)
    self.assertEqual(path, os.path.join(export_dir, "assets.extra", "tf_serving_warmup_requests"))

    logs = serving_assets.read_warmup_requests(export_dir)
    self.assertLen(logs, 2)
    request = logs[1].predict_log.request
    self.assertEqual(request.model_spec.name, "ranker")
    self.assertEqual(request.model_spec.signature_name, "serving_default")
    self.assertCountEqual(request.inputs, ["content_embedding", "item_id", "user_id"])
    embedding = tf.make_ndarray(request.inputs["content_embedding"])
    self.assertEqual(embedding.shape, (100, 8))
    self.assertAllEqual(embedding, requests[1][1]["content_embedding"])
    self.assertEqual(
      list(tf.make_ndarray(request.inputs["user_id"])[:2]), [b"", b"never_seen_user_id"]
    )
    # Replay the records as the model server does at load time.
    loaded = tf.saved_model.load(export_dir)
    for log in logs:
      req = log.predict_log.request
      inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in req.inputs.items()}
      outputs = loaded.signatures[req.model_spec.signature_name](**inputs)
      self.assertEqual(outputs["ctr"].shape[0], inputs["user_id"].shape[0])

  def test_warmup_requires_requests(self):
    with self.assertRaisesRegex(ValueError, "must not be empty"):
      serving_assets.write_warmup_requests(self.get_temp_dir(), "ranker", [])

  def test_model_config_parses_back(self):
    path = os.path.join(self.get_temp_dir(), "models.config")
    serving_assets.write_model_config(path, "ranker", "/models/ranker", num_versions=2)
    config = serving_assets.read_model_config(path)
    (model,) = config.model_config_list.config
    self.assertEqual(model.name, "ranker")
    self.assertEqual(model.base_path, "/models/ranker")
    self.assertEqual(model.model_platform, "tensorflow")
    self.assertEqual(model.model_version_policy.latest.num_versions, 2)
    with open(path) as f:
      self.assertIn('base_path: "/models/ranker"', f.read())

  def test_model_config_rejects_zero_versions(self):
    with self.assertRaisesRegex(ValueError, "num_versions=0"):
      serving_assets.model_server_config("ranker", "/models/ranker", num_versions=0)

  def test_batching_parameters_parse_back(self):
    path = os.path.join(self.get_temp_dir(), "batching_parameters.txt")
    config = serving_assets.BatchingConfig(max_batch_size=2048, num_batch_threads=2)
    serving_assets.write_batching_parameters(path, config)
    with open(path) as f:
      text = f.read()
    self.assertIn("max_batch_size {\n  value: 2048\n}", text)
    parsed = serving_assets.read_batching_parameters(path)
    self.assertEqual(parsed.max_batch_size.value, 2048)
    self.assertEqual(parsed.batch_timeout_micros.value, 1000)
    self.assertEqual(parsed.max_enqueued_batches.value, 100)
    self.assertEqual(parsed.num_batch_threads.value, 2)
    with open(path, "a") as f:
      f.write("no_such_field: 1\n")
    with self.assertRaises(text_format.ParseError):
      serving_assets.read_batching_parameters(path)

  def test_batching_config_rejects_bad_values(self):
    with self.assertRaisesRegex(ValueError, "max_batch_size=0"):
      serving_assets.BatchingConfig(max_batch_size=0)

  def test_sample_inputs_are_deterministic_and_cover_unknown_ids(self):
    specs = {
      "content_embedding": tf.TensorSpec([None, 4], tf.float32),
      "user_id": tf.TensorSpec([None], tf.string),
      "history_mask": tf.TensorSpec([None, None], tf.float32),
    }
    a = serving_assets.sample_inputs(specs, 3)
    b = serving_assets.sample_inputs(specs, 3)
    self.assertAllEqual(a["content_embedding"], b["content_embedding"])
    self.assertEqual(a["history_mask"].shape, (3, 3))
    self.assertAllEqual(a["history_mask"], np.ones([3, 3]))
    self.assertEqual(list(a["user_id"]), [b"", b"never_seen_user_id", b"user_id_2"])
    self.assertEqual(a["content_embedding"].dtype, np.float32)


if __name__ == "__main__":
  tf.test.main()
