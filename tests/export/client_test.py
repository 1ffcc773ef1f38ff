"""Tests for export/client.py, end to end on loopback against PredictionService and REST doubles."""

import os
import socket

import grpc
import numpy as np
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2, prediction_service_pb2_grpc

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
    cls.bare_grpc_server = serving_doubles.GrpcServer(MODEL, export_dir, metadata=False)
    cls.rest_server = serving_doubles.RestServer(MODEL, export_dir)
    cls.inputs = stand_in_model.sample_inputs(4)
    signatures = cls.grpc_server.model.signatures
    cls.expected = {k: v.numpy() for k, v in signatures["serving_default"](**cls.inputs).items()}
    codes = signatures["semantic_id"](content_embedding=cls.inputs["content_embedding"])["codes"]
    cls.codes_inputs = {
      "codes": codes.numpy(),
      "user_id": cls.inputs["user_id"],
      "item_id": cls.inputs["item_id"],
    }
    cls.expected_codes = {
      k: v.numpy() for k, v in signatures["predict_codes"](**cls.codes_inputs).items()
    }

  @classmethod
  def tearDownClass(cls):
    cls.grpc_server.stop()
    cls.bare_grpc_server.stop()
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

  def calls(self, server=None):
    return dict((server or self.grpc_server).service.calls)

  def test_grpc_int64_codes_are_converted_to_the_signatures_int32(self):
    self.assertEqual(self.codes_inputs["codes"].dtype, np.int32)
    as_int64 = dict(self.codes_inputs, codes=self.codes_inputs["codes"].astype(np.int64))
    as_lists = {k: v.tolist() for k, v in self.codes_inputs.items()}
    with self.grpc_client(signature_name="predict_codes") as c:
      for inputs in (self.codes_inputs, as_int64, as_lists):
        outputs = c.predict(inputs)
        for name, expected in self.expected_codes.items():
          self.assertAllEqual(outputs[name], expected)

  def test_grpc_out_of_range_codes_are_rejected_before_predict(self):
    codes = self.codes_inputs["codes"].astype(np.int64)
    codes[1, 0] = 3_000_000_000
    with self.grpc_client(signature_name="predict_codes") as c:
      c.input_dtypes("predict_codes", 10)
      before = self.calls()
      with self.assertRaisesRegex(
        client.InvalidInputError,
        rf"^Input `codes` of signature predict_codes of model '{MODEL}' at "
        rf"{self.grpc_server.address} \(gRPC\) must be int32; received int64 values up to "
        r"3000000000, outside int32$",
      ) as ctx:
        c.predict(dict(self.codes_inputs, codes=codes))
    self.assertEqual(self.calls(), before)
    self.assertEqual(ctx.exception.address, self.grpc_server.address)

  def test_grpc_wrong_dtype_is_invalid_argument(self):
    inputs = dict(
      self.inputs, content_embedding=self.inputs["content_embedding"].astype(np.float64)
    )
    with self.grpc_client() as c:
      c.input_dtypes("serving_default", 10)
      before = self.calls()
      with self.assertRaisesRegex(
        client.InvalidInputError,
        "^Input `content_embedding` of signature serving_default .* must be float32; received "
        "float64$",
      ):
        c.predict(inputs)
      with self.assertRaisesRegex(
        client.InvalidInputError, "`user_id` .* received a list of int64"
      ):
        c.predict(dict(self.inputs, user_id=[1, 2, 3, 4]))
    self.assertEqual(self.calls(), before)

  def test_grpc_metadata_is_fetched_once(self):
    before = self.calls().get("GetModelMetadata", 0)
    with self.grpc_client() as c:
      for _ in range(3):
        c.predict(self.inputs)
      c.predict(self.codes_inputs, signature_name="predict_codes")
    self.assertEqual(self.calls()["GetModelMetadata"], before + 1)

  def test_grpc_without_metadata_sends_as_given(self):
    server = self.bare_grpc_server
    before = self.calls(server).get("GetModelMetadata", 0)
    with self.grpc_client(address=server.address) as c:
      self.assertAllClose(c.predict(self.inputs)["ctr"], self.expected["ctr"], atol=0)
      inputs = dict(
        self.inputs, content_embedding=self.inputs["content_embedding"].astype(np.float64)
      )
      with self.assertRaisesRegex(client.InvalidInputError, "(?s)rejected the request.*float"):
        c.predict(inputs)
    self.assertEqual(self.calls(server)["GetModelMetadata"], before + 1)

  def test_grpc_metadata_double_answers_as_tf_serving(self):
    with grpc.insecure_channel(self.grpc_server.address) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=model_pb2.ModelSpec(name=MODEL), metadata_field=["signature_def"]
      )
      signature_defs = get_model_metadata_pb2.SignatureDefMap()
      metadata = stub.GetModelMetadata(request).metadata
      self.assertTrue(metadata["signature_def"].Unpack(signature_defs))
      for name, field in [("other", "signature_def"), (MODEL, "model_version")]:
        request.model_spec.name = name
        request.metadata_field[:] = [field]
        with self.assertRaises(grpc.RpcError) as ctx:
          stub.GetModelMetadata(request)
        code = grpc.StatusCode.NOT_FOUND if name == "other" else grpc.StatusCode.INVALID_ARGUMENT
        self.assertEqual(ctx.exception.code(), code)
    codes = signature_defs.signature_def["predict_codes"].inputs["codes"]
    self.assertEqual(codes.dtype, tf.int32.as_datatype_enum)
    self.assertEqual([d.size for d in codes.tensor_shape.dim], [-1, 2])

  def test_to_dtype(self):
    self.assertEqual(client.to_dtype([1.5, 2], tf.float32).dtype, np.float32)
    self.assertEqual(client.to_dtype(np.int32([1]), tf.int64).dtype, np.int64)
    self.assertEqual(client.to_dtype([], tf.int32).dtype, np.int32)
    for value, dtype, message in [
      ([1.5], tf.int32, "must be int32; received a list of float64"),
      (np.int64([-(2**40)]), tf.int32, "received int64 values down to -1099511627776, outside"),
      (np.float32([1]), tf.int32, "must be int32; received float32"),
      (np.array(["a"]), tf.float32, "must be float32; received string"),
    ]:
      with self.assertRaisesRegex(ValueError, message):
        client.to_dtype(value, dtype)

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
