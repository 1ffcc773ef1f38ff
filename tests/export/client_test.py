"""Tests for export/client.py, end to end on loopback against PredictionService and REST doubles."""

import os
import socket

import numpy as np

from export import client
from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import TestCase, tf
from tests.export import serving_doubles, stand_in_model

MODEL = "ranker"


def _closed_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class ClientTest(TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    export_dir = os.path.join(tf.compat.v1.test.get_temp_dir(), "client_export", "1")
    stand_in_model.export(export_dir)
    cls.grpc_server = serving_doubles.GrpcServer(MODEL, export_dir)
    cls.rest_server = serving_doubles.RestServer(MODEL, export_dir)
    cls.inputs = stand_in_model.sample_inputs(4)
    direct = cls.grpc_server.model.signatures["serving_default"]
    cls.expected = {k: v.numpy() for k, v in direct(**cls.inputs).items()}

  @classmethod
  def tearDownClass(cls):
    cls.grpc_server.stop()
    cls.rest_server.stop()
    super().tearDownClass()

  def setUp(self):
    super().setUp()
    self.grpc_server.model.delay_s = 0.0

  def grpc_client(self, **kwargs):
    kwargs = {"address": self.grpc_server.address, "model_name": MODEL, "timeout_s": 10, **kwargs}
    return client.GrpcClient(**kwargs)

  def rest_client(self, **kwargs):
    kwargs = {"base_url": self.rest_server.base_url, "model_name": MODEL, "timeout_s": 10, **kwargs}
    return client.RestClient(**kwargs)

  def bad_inputs(self):
    inputs = dict(self.inputs)
    inputs["content_embedding"] = inputs["content_embedding"].copy()
    inputs["content_embedding"][0, 0] = np.nan
    return inputs

  def test_grpc_predict_matches_the_signature(self):
    with self.grpc_client() as c:
      outputs = c.predict(self.inputs)
    self.assertCountEqual(outputs, ["ctr", "second_label"])
    self.assertAllClose(outputs["ctr"], self.expected["ctr"], atol=0)
    self.assertEqual(outputs["ctr"].dtype, np.float32)

  def test_grpc_accepts_lists_of_str(self):
    inputs = {k: v.tolist() for k, v in self.inputs.items()}
    inputs["user_id"] = [s.decode() for s in inputs["user_id"]]
    inputs["content_embedding"] = np.asarray(inputs["content_embedding"], np.float32)
    with self.grpc_client() as c:
      self.assertAllClose(c.predict(inputs)["ctr"], self.expected["ctr"], atol=0)

  def test_grpc_semantic_id_signature(self):
    with self.grpc_client(signature_name="semantic_id") as c:
      codes = c.predict({"content_embedding": self.inputs["content_embedding"]})["codes"]
    self.assertEqual(codes.shape, (4, 2))
    self.assertEqual(codes.dtype, np.int32)

  def test_grpc_bad_input_is_invalid_argument_naming_input_model_and_address(self):
    with self.grpc_client() as c:
      with self.assertRaisesRegex(client.InvalidInputError, "(?s)content_embedding.*finite") as ctx:
        c.predict(self.bad_inputs())
    self.assertIn(f"model '{MODEL}' at {self.grpc_server.address}", str(ctx.exception))
    self.assertEqual(ctx.exception.model_name, MODEL)

  def test_grpc_wrong_dtype_is_invalid_argument(self):
    inputs = dict(
      self.inputs, content_embedding=self.inputs["content_embedding"].astype(np.float64)
    )
    with self.grpc_client() as c:
      with self.assertRaisesRegex(client.InvalidInputError, "(?s)rejected the request.*float"):
        c.predict(inputs)

  def test_grpc_unknown_input_name_is_invalid_argument(self):
    with self.grpc_client() as c:
      with self.assertRaisesRegex(client.InvalidInputError, "alias not found.*user_ids"):
        c.predict(dict(self.inputs, user_ids=self.inputs["user_id"]))

  def test_grpc_unknown_model_is_not_found(self):
    with self.grpc_client(model_name="other") as c:
      with self.assertRaisesRegex(client.ModelNotFoundError, "model 'other'"):
        c.predict(self.inputs)

  def test_grpc_no_server_is_unavailable(self):
    address = f"127.0.0.1:{_closed_port()}"
    with self.grpc_client(address=address, timeout_s=5) as c:
      with self.assertRaisesRegex(client.ServerUnavailableError, f"model '{MODEL}' at {address}"):
        c.predict(self.inputs)

  def test_grpc_deadline_exceeded(self):
    self.grpc_server.model.delay_s = 1.0
    with self.grpc_client(timeout_s=0.2) as c:
      with self.assertRaisesRegex(client.DeadlineExceededError, "within the 0.2 s deadline"):
        c.predict(self.inputs)

  def test_rest_predict_matches_the_signature(self):
    outputs = self.rest_client().predict(self.inputs)
    self.assertAllClose(outputs["ctr"], self.expected["ctr"], atol=1e-7)
    self.assertAllClose(outputs["second_label"], self.expected["second_label"], atol=1e-6)

  def test_rest_bad_input_is_invalid_argument(self):
    with self.assertRaisesRegex(
      client.InvalidInputError, "(?s)HTTP 400.*content_embedding.*finite"
    ):
      self.rest_client().predict(self.bad_inputs())

  def test_rest_unknown_model_is_not_found(self):
    with self.assertRaisesRegex(client.ModelNotFoundError, "HTTP 404"):
      self.rest_client(model_name="other").predict(self.inputs)

  def test_rest_no_server_is_unavailable(self):
    base_url = f"http://127.0.0.1:{_closed_port()}"
    c = self.rest_client(base_url=base_url)
    with self.assertRaisesRegex(client.ServerUnavailableError, f"model '{MODEL}' at {base_url}"):
      c.predict(self.inputs)

  def test_rest_timeout(self):
    self.rest_server.model.delay_s = 1.0
    try:
      with self.assertRaisesRegex(client.DeadlineExceededError, "within 0.2 s"):
        self.rest_client(timeout_s=0.2).predict(self.inputs)
    finally:
      self.rest_server.model.delay_s = 0.0

  def test_rest_url_includes_the_version(self):
    c = self.rest_client(version=3)
    self.assertEqual(c.url, f"{self.rest_server.base_url}/v1/models/{MODEL}/versions/3:predict")

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "timeout_s=0"):
      client.GrpcClient("127.0.0.1:1", timeout_s=0)
    with self.assertRaisesRegex(ValueError, "timeout_s=-1"):
      client.RestClient(timeout_s=-1)
    with self.assertRaisesRegex(ValueError, "at least one input"):
      client.to_arrays({})


if __name__ == "__main__":
  tf.test.main()
