"""Client for the exported ranker under TF Serving: gRPC `PredictionService.Predict` and REST JSON.

Both clients take a dict of numpy arrays (or lists) and return a dict of numpy arrays, honour a
per-call deadline and turn transport failures into `ServingError` subclasses whose messages say
what went wrong, for which model, at which address:

  * `ServerUnavailableError`: nothing answers at the address (server down, wrong port).
  * `DeadlineExceededError`: no answer within the deadline.
  * `InvalidInputError`: the server rejected the request (a bad input, e.g. NaN embeddings or a
    wrong width; the server's message names the input).
  * `ModelNotFoundError`: the server does not serve that model, version or signature.

Example:
  ```
  with client.GrpcClient("localhost:8500", model_name="ranker", timeout_s=0.5) as c:
    c.predict({"user_id": ["42"] * 2, "item_id": ["1", "2"], "content_embedding": emb})
  client.RestClient("http://localhost:8501", model_name="ranker").predict({...})
  ```

CLI: `python -m export.client --protocol=grpc --address=localhost:8500 --model_name=ranker
--inputs_json=request.json` (a `{"input": [...]}` file as in the REST API) prints the outputs. It
starts like every job (`trainers.cli.run`): a bad flag or inputs file ends it with one `error: ...`
line and exit status 2, a failed call with `error: <ServingError subclass>: ...` and status 1; the
traceback only with `--debug`.
"""

from __future__ import annotations

import base64
import json
import socket
import sys
import urllib.error
import urllib.request
from typing import Any, Mapping

import grpc
import numpy as np
import tensorflow as tf
from absl import app, flags
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

from trainers import cli


class ServingError(RuntimeError):
  """A predict call failed; `model_name` and `address` say which server and model."""

  def __init__(self, message: str, model_name: str, address: str):
    super().__init__(message)
    self.model_name = model_name
    self.address = address


class ServerUnavailableError(ServingError):
  pass


class DeadlineExceededError(ServingError):
  pass


class InvalidInputError(ServingError):
  pass


class ModelNotFoundError(ServingError):
  pass


def to_arrays(inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Lists and arrays -> numpy arrays (strings as bytes objects); rejects an empty request."""
  if not inputs:
    raise ValueError("`inputs` must name at least one input tensor")
  arrays = {}
  for name, value in inputs.items():
    array = np.asarray(value)
    if array.dtype.kind in "US":
      array = np.vectorize(lambda s: s.encode() if isinstance(s, str) else s, otypes=[object])(
        array
      )
    arrays[name] = array
  return arrays


class _ModelTarget:
  """What both clients address: a model, its signature, an optional version and a deadline."""

  def __init__(self, model_name: str, signature_name: str, timeout_s: float, version: int | None):
    if timeout_s <= 0:
      raise ValueError(f"`timeout_s` must be positive. Received: timeout_s={timeout_s}")
    self.model_name = model_name
    self.signature_name = signature_name
    self.timeout_s = timeout_s
    self.version = version


class GrpcClient(_ModelTarget):
  """gRPC `PredictionService.Predict` client.

  Args:
    address: "host:port" of the model server's gRPC port (8500 by default in the Docker image).
    model_name: The served model's name (as in models.config).
    signature_name: The signature to call. Defaults to "serving_default".
    timeout_s: Per-call deadline in seconds. Defaults to 1.
    version: Optional model version; None serves the latest.
  """

  def __init__(
    self,
    address: str = "localhost:8500",
    model_name: str = "ranker",
    signature_name: str = "serving_default",
    timeout_s: float = 1.0,
    version: int | None = None,
  ):
    super().__init__(model_name, signature_name, timeout_s, version)
    self.address = address
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    self._channel = grpc.insecure_channel(address, options=options)
    self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

  def request(
    self, inputs: Mapping[str, Any], signature_name: str | None = None
  ) -> predict_pb2.PredictRequest:
    spec = model_pb2.ModelSpec(
      name=self.model_name, signature_name=signature_name or self.signature_name
    )
    if self.version is not None:
      spec.version.value = self.version
    request = predict_pb2.PredictRequest(model_spec=spec)
    for name, value in to_arrays(inputs).items():
      request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request

  def predict(
    self,
    inputs: Mapping[str, Any],
    signature_name: str | None = None,
    timeout_s: float | None = None,
  ) -> dict[str, np.ndarray]:
    """Runs the signature on `inputs`; returns output name -> array. Raises `ServingError`."""
    request = self.request(inputs, signature_name)
    timeout = timeout_s or self.timeout_s
    try:
      response = self._stub.Predict(request, timeout=timeout)
    except grpc.RpcError as e:
      raise self._error(e, timeout) from e
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

  def _error(self, error: grpc.RpcError, timeout: float) -> ServingError:
    code, details = error.code(), error.details()
    where = f"model '{self.model_name}' at {self.address} (gRPC)"
    if code == grpc.StatusCode.UNAVAILABLE:
      return ServerUnavailableError(
        f"No model server answers for {where}: {details}. Is tensorflow_model_server running "
        "with this --port?",
        self.model_name,
        self.address,
      )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
      return DeadlineExceededError(
        f"Predict on {where} did not answer within the {timeout:g} s deadline",
        self.model_name,
        self.address,
      )
    if code == grpc.StatusCode.INVALID_ARGUMENT:
      return InvalidInputError(
        f"{where} rejected the request: {details}", self.model_name, self.address
      )
    if code == grpc.StatusCode.NOT_FOUND:
      return ModelNotFoundError(f"Not served: {where}: {details}", self.model_name, self.address)
    return ServingError(
      f"Predict on {where} failed with {code.name}: {details}", self.model_name, self.address
    )

  def close(self) -> None:
    self._channel.close()

  def __enter__(self) -> "GrpcClient":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _json_value(value: np.ndarray) -> Any:
  if value.dtype == object:
    return np.vectorize(_json_string, otypes=[object])(value).tolist()
  return value.tolist()


def _json_string(value: bytes | str) -> Any:
  if isinstance(value, str):
    return value
  try:
    return value.decode("utf-8")
  except UnicodeDecodeError:
    return {"b64": base64.b64encode(value).decode("ascii")}


class RestClient(_ModelTarget):
  """TF Serving REST client (`POST /v1/models/<name>[/versions/<v>]:predict`, columnar "inputs").

  Args:
    base_url: The REST endpoint, e.g. "http://localhost:8501".
    model_name: The served model's name.
    signature_name: The signature to call. Defaults to "serving_default".
    timeout_s: Per-call timeout in seconds. Defaults to 1.
    version: Optional model version; None serves the latest.
  """

  def __init__(
    self,
    base_url: str = "http://localhost:8501",
    model_name: str = "ranker",
    signature_name: str = "serving_default",
    timeout_s: float = 1.0,
    version: int | None = None,
  ):
    super().__init__(model_name, signature_name, timeout_s, version)
    self.base_url = base_url.rstrip("/")

  @property
  def url(self) -> str:
    version = f"/versions/{self.version}" if self.version is not None else ""
    return f"{self.base_url}/v1/models/{self.model_name}{version}:predict"

  def predict(
    self,
    inputs: Mapping[str, Any],
    signature_name: str | None = None,
    timeout_s: float | None = None,
  ) -> dict[str, np.ndarray]:
    """Runs the signature on `inputs`; returns output name -> array. Raises `ServingError`."""
    body = {
      "signature_name": signature_name or self.signature_name,
      "inputs": {name: _json_value(value) for name, value in to_arrays(inputs).items()},
    }
    request = urllib.request.Request(
      self.url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    timeout = timeout_s or self.timeout_s
    try:
      with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    except urllib.error.HTTPError as e:
      raise self._http_error(e) from e
    except (TimeoutError, socket.timeout) as e:
      raise self._timeout(timeout) from e
    except urllib.error.URLError as e:
      if isinstance(e.reason, (TimeoutError, socket.timeout)):
        raise self._timeout(timeout) from e
      raise ServerUnavailableError(
        f"No model server answers for model '{self.model_name}' at {self.url}: {e.reason}. Is "
        "tensorflow_model_server running with this --rest_api_port?",
        self.model_name,
        self.base_url,
      ) from e
    return self._outputs(raw)

  def _bad_response(self, what: str, raw: bytes) -> ServingError:
    return ServingError(
      f"Unexpected response from {self.url}: {what} (first bytes: {raw[:80]!r})",
      self.model_name,
      self.base_url,
    )

  def _outputs(self, raw: bytes) -> dict[str, np.ndarray]:
    """The outputs of a REST predict response body; anything else raises ServingError."""
    try:
      payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
      raise self._bad_response("not JSON", raw) from None
    if not isinstance(payload, dict) or "outputs" not in payload:
      raise self._bad_response("no 'outputs' object", raw)
    outputs = payload["outputs"]
    if not isinstance(outputs, dict):  # A signature with one output returns it bare.
      outputs = {"output": outputs}
    arrays = {}
    for name, value in outputs.items():
      try:
        array = np.asarray(value)
      except ValueError:
        raise self._bad_response(f"output {name!r} is a ragged array", raw) from None
      if array.dtype == object or array.ndim == 0:
        raise self._bad_response(f"output {name!r} is not an array of numbers or strings", raw)
      arrays[name] = array.astype(np.float32) if array.dtype.kind == "f" else array
    return arrays

  def _timeout(self, timeout: float) -> DeadlineExceededError:
    return DeadlineExceededError(
      f"Predict on model '{self.model_name}' at {self.url} did not answer within {timeout:g} s",
      self.model_name,
      self.base_url,
    )

  def _http_error(self, error: urllib.error.HTTPError) -> ServingError:
    try:
      detail = json.loads(error.read()).get("error", "")
    except (ValueError, AttributeError):
      detail = ""
    where = f"model '{self.model_name}' at {self.url} (HTTP {error.code})"
    if error.code == 400:
      return InvalidInputError(
        f"{where} rejected the request: {detail}", self.model_name, self.base_url
      )
    if error.code == 404:
      return ModelNotFoundError(f"Not served: {where}: {detail}", self.model_name, self.base_url)
    if error.code in (503, 504):
      return ServerUnavailableError(
        f"{where} is unavailable: {detail}", self.model_name, self.base_url
      )
    return ServingError(f"Predict on {where} failed: {detail}", self.model_name, self.base_url)


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the CLI flags (only when run as a program, so importing this module defines none)."""
  flags.DEFINE_enum("protocol", "grpc", ["grpc", "rest"], "Which API to call.")
  flags.DEFINE_string(
    "address",
    None,
    "gRPC host:port (default localhost:8500) or REST base URL (default http://localhost:8501).",
  )
  flags.DEFINE_string("model_name", "ranker", "The served model's name.")
  flags.DEFINE_string("signature_name", "serving_default", "The signature to call.")
  flags.DEFINE_float("timeout_s", 1.0, "Deadline per call, in seconds.")
  flags.DEFINE_string("inputs_json", None, 'A JSON file {"input_name": [...], ...}.')


def main(argv):
  del argv
  if not FLAGS.inputs_json:
    raise app.UsageError("--inputs_json is required")
  try:
    with open(FLAGS.inputs_json) as f:
      inputs = json.load(f)
  except (OSError, ValueError) as e:
    raise app.UsageError(f"Cannot read --inputs_json={FLAGS.inputs_json!r}: {e}")
  if not isinstance(inputs, dict):
    raise app.UsageError(
      f"--inputs_json={FLAGS.inputs_json!r} must hold a JSON object {{input name: values}}; it "
      f"holds a {type(inputs).__name__}."
    )
  inputs = {
    name: np.asarray(value, np.float32) if np.asarray(value).dtype.kind == "f" else value
    for name, value in inputs.items()
  }
  if FLAGS.protocol == "grpc":
    client = GrpcClient(
      FLAGS.address or "localhost:8500", FLAGS.model_name, FLAGS.signature_name, FLAGS.timeout_s
    )
  else:
    client = RestClient(
      FLAGS.address or "http://localhost:8501",
      FLAGS.model_name,
      FLAGS.signature_name,
      FLAGS.timeout_s,
    )
  try:
    outputs = client.predict(inputs)
  except ServingError as e:
    print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
  print(json.dumps({name: value.tolist() for name, value in outputs.items()}, indent=1))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
