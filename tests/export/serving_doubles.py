"""Test doubles of TF Serving's gRPC PredictionService and REST API, serving a loaded SavedModel.

Tests only: the product ships no model server. The gRPC double is built on
tensorflow-serving-api's generated `PredictionServiceServicer`; the REST double on `http.server`.
Both answer the way the model server does: NOT_FOUND / 404 for another model name,
INVALID_ARGUMENT / 400 with the runtime's message for bad input; `delay_s` makes them slow.
"""

import concurrent.futures
import http.server
import json
import re
import threading
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


class _Model:
  """The loaded SavedModel and the server-side request handling shared by both doubles."""

  def __init__(self, model_name: str, export_dir: str):
    self.model_name = model_name
    self.signatures = tf.saved_model.load(export_dir).signatures
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
  def __init__(self, model: _Model):
    self.model = model

  def Predict(self, request, context):  # noqa: N802 (the generated servicer's method name)
    if request.model_spec.name != self.model.model_name:
      context.abort(
        grpc.StatusCode.NOT_FOUND,
        f"Servable not found for request: Latest({request.model_spec.name})",
      )
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
  """A PredictionService double on 127.0.0.1 (an ephemeral port); `address` is "host:port"."""

  def __init__(self, model_name: str, export_dir: str):
    self.model = _Model(model_name, export_dir)
    self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionServiceDouble(self.model), self.server
    )
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
