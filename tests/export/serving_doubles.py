"""Test doubles of TF Serving's gRPC PredictionService and REST API, serving a loaded SavedModel.

Tests only: the product ships no model server. The gRPC double is built on
tensorflow-serving-api's generated `PredictionServiceServicer`; the REST double on `http.server`.
Both answer the way the model server does: NOT_FOUND / 404 for another model name,
INVALID_ARGUMENT / 400 with the runtime's message for bad input; `delay_s` makes them slow.
The gRPC double also answers `GetModelMetadata` as TF Serving's get_model_metadata_impl.cc does
(the SavedModel's SignatureDefs, read from its saved_model.pb), unless built with
`metadata=False` (a server without it: UNIMPLEMENTED); `calls` counts the calls per method.
"""

import collections
import concurrent.futures
import http.server
import json
import os
import re
import threading
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc


class _Model:
  """The loaded SavedModel and the server-side request handling shared by both doubles."""

  def __init__(self, model_name: str, export_dir: str):
    self.model_name = model_name
    self.signatures = tf.saved_model.load(export_dir).signatures
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
      saved_model.ParseFromString(f.read())
    # What TF Serving's bundle holds: the SignatureDefs of the (only) MetaGraphDef.
    self.signature_defs = dict(saved_model.meta_graphs[0].signature_def)
    version = os.path.basename(os.path.normpath(export_dir))
    self.version = int(version) if version.isdigit() else 0
    self.delay_s = 0.0

  def run(self, signature_name: str, inputs: dict) -> dict:
    """Returns output -> array; raises ValueError with TF Serving's message on bad requests."""
    time.sleep(self.delay_s)
    if signature_name not in self.signatures:
      raise ValueError(f'Serving signature key "{signature_name}" not found.')
    function = self.signatures[signature_name]
    expected = function.structured_input_signature[1]
    for alias in inputs:
      if alias not in expected:
        raise ValueError(
          f"input tensor alias not found in signature: {alias}. Inputs expected to be in the "
          f"set {{{','.join(sorted(expected))}}}."
        )
    missing = sorted(set(expected) - set(inputs))
    if missing:
      raise ValueError(f"Missing input tensor alias(es): {','.join(missing)}")
    try:
      outputs = function(**{k: tf.constant(v) for k, v in inputs.items()})
    except (tf.errors.InvalidArgumentError, TypeError, ValueError) as e:
      raise ValueError(getattr(e, "message", str(e))) from e
    return {name: value.numpy() for name, value in outputs.items()}


class PredictionServiceDouble(prediction_service_pb2_grpc.PredictionServiceServicer):
  """Predict and GetModelMetadata on `model`; `metadata=False` leaves the latter UNIMPLEMENTED."""

  def __init__(self, model: _Model, metadata: bool = True):
    self.model = model
    self.metadata = metadata
    self.calls = collections.Counter()

  def _check_model_name(self, request, context):
    if request.model_spec.name != self.model.model_name:
      context.abort(
        grpc.StatusCode.NOT_FOUND,
        f"Servable not found for request: Latest({request.model_spec.name})",
      )

  def GetModelMetadata(self, request, context):  # noqa: N802
    self.calls["GetModelMetadata"] += 1
    if not self.metadata:
      return super().GetModelMetadata(request, context)
    if not request.HasField("model_spec"):
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
    if not request.metadata_field:
      context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        "GetModelMetadataRequest must specify at least one metadata_field",
      )
    for field in request.metadata_field:
      if field != "signature_def":
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
    self._check_model_name(request, context)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = self.model.model_name
    response.model_spec.version.value = self.model.version
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in self.model.signature_defs.items():
      signature_defs.signature_def[name].CopyFrom(signature_def)
    response.metadata["signature_def"].Pack(signature_defs)
    return response

  def Predict(self, request, context):  # noqa: N802 (the generated servicer's method name)
    self.calls["Predict"] += 1
    self._check_model_name(request, context)
    inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    try:
      outputs = self.model.run(request.model_spec.signature_name or "serving_default", inputs)
    except ValueError as e:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for name, value in outputs.items():
      response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return response


class GrpcServer:
  """A PredictionService double on 127.0.0.1 (an ephemeral port); `address` is "host:port".

  `metadata=False` serves no GetModelMetadata (UNIMPLEMENTED); `service.calls` counts the calls.
  """

  def __init__(self, model_name: str, export_dir: str, metadata: bool = True):
    self.model = _Model(model_name, export_dir)
    self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
    self.service = PredictionServiceDouble(self.model, metadata)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(self.service, self.server)
    port = self.server.add_insecure_port("127.0.0.1:0")
    self.address = f"127.0.0.1:{port}"
    self.server.start()

  def stop(self):
    self.server.stop(grace=None)


def _from_json(value, spec: tf.TensorSpec) -> np.ndarray:
  if spec.dtype == tf.string:
    return np.vectorize(lambda s: s.encode(), otypes=[object])(np.asarray(value))
  return np.asarray(value, dtype=spec.dtype.as_numpy_dtype)


class RestServer:
  """A TF Serving REST API double on 127.0.0.1; `base_url` is "http://127.0.0.1:port"."""

  def __init__(self, model_name: str, export_dir: str):
    model = self.model = _Model(model_name, export_dir)

    class Handler(http.server.BaseHTTPRequestHandler):
      def log_message(self, *args):
        pass

      def _reply(self, code: int, payload: dict):
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

      def do_POST(self):  # noqa: N802
        match = re.fullmatch(r"/v1/models/([^/:]+)(?:/versions/\d+)?:predict", self.path)
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not match or match.group(1) != model.model_name:
          name = match.group(1) if match else self.path
          return self._reply(404, {"error": f"Servable not found for request: Latest({name})"})
        signature_name = request.get("signature_name", "serving_default")
        try:
          specs = model.signatures[signature_name].structured_input_signature[1]
          inputs = {
            k: _from_json(v, specs[k]) if k in specs else v for k, v in request["inputs"].items()
          }
          outputs = model.run(signature_name, inputs)
        except (KeyError, ValueError) as e:
          return self._reply(400, {"error": str(e)})
        return self._reply(200, {"outputs": {k: v.tolist() for k, v in outputs.items()}})

    self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
    self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
    self.thread.start()

  def stop(self):
    self.server.shutdown()
    self.server.server_close()
