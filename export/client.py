"""Client for the exported ranker under TF Serving: gRPC `PredictionService.Predict` and REST JSON.

Both clients take a dict of numpy arrays (or lists) and return a dict of numpy arrays, honour a
per-call deadline and turn transport failures into `ServingError` subclasses whose messages say
what went wrong, for which model, at which address:

  * `ServerUnavailableError`: nothing answers at the address (server down, wrong port).
  * `DeadlineExceededError`: no answer within the deadline.
  * `InvalidInputError`: the server rejected the request (a bad input, e.g. NaN embeddings or a
    wrong width; the server's message names the input), or the gRPC client did (a wrong dtype).
  * `ModelNotFoundError`: the server does not serve that model, version or signature.

Dtypes: stock TF Serving does not check a gRPC request tensor's dtype against the SignatureDef
(`GetInputValues` in tensorflow/cc/saved_model/util.cc only parses the TensorProto), so a wrong one
fails in `Session::Run` as "Expects arg[0] to be int32 but int64 is provided", which names an
argument position, not the input. `GrpcClient` therefore asks the server once for the signatures'
input dtypes (`GetModelMetadata`, `metadata_field: "signature_def"`) and, per input the signature
names, converts integer arrays whose values fit the signature's integer dtype (int64 codes ->
int32) and rejects anything else whose dtype differs (float64 for float32, values outside int32,
floats for ints, strings for numbers) with an `InvalidInputError` naming the input. Lists carry no
dtype: they are converted to the signature's dtype, with the same checks. A server without
`GetModelMetadata` (UNIMPLEMENTED) gets the request as given. `RestClient` needs no check: TF
Serving's REST API converts the JSON values by the signature's dtypes itself and names the input in
its errors.

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
import time
import urllib.error
import urllib.request
from typing import Any, Mapping

import grpc
import numpy as np
import tensorflow as tf
from absl import app, flags
from tensorflow_serving.apis import (
  get_model_metadata_pb2,
  model_pb2,
  predict_pb2,
  prediction_service_pb2_grpc,
)

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


def _dtype(enum: int) -> tf.DType | None:
  """The DType of a TensorInfo's `dtype`; None for DT_INVALID (a composite input) or unknown."""
  try:
    return tf.dtypes.as_dtype(enum)
  except TypeError:
    return None


def _is_strings(array: np.ndarray) -> bool:
  if array.dtype.kind in "US":
    return True
  return array.dtype == object and all(isinstance(x, (bytes, str)) for x in array.flat)


def to_dtype(value: Any, dtype: tf.DType) -> Any:
  """`value` as an array of `dtype`, converted only where that loses nothing.

  Arrays (anything with a `dtype`) keep their dtype unless it is an integer dtype and all values
  fit `dtype`'s integer range (int64 -> int32, int32 -> int64, ...). Lists carry no dtype and
  follow `dtype` the way numpy converts them (ints or floats for a float dtype; ints in range for
  an integer one), as TF Serving's REST API converts JSON. Dtypes numpy has no plain equivalent
  for (bfloat16, quantized) pass unchanged.

  Args:
    value: An input as given to `predict`: an array, a list or a scalar.
    dtype: The signature's dtype for it.

  Returns:
    `value` converted to `dtype` (strings unchanged, for `to_arrays` to encode).

  Raises:
    ValueError: The dtype differs and no lossless conversion exists; the message says what the
      input must be and what it got ("must be int32; received int64 values up to 3000000000,
      outside int32").
  """
  typed = hasattr(value, "dtype")
  array = np.asarray(value)
  received = "string" if _is_strings(array) else array.dtype.name
  if dtype == tf.string:
    if received == "string" or (not typed and array.size == 0):
      return value
    expected = None
  else:
    try:
      expected = np.dtype(dtype.as_numpy_dtype)
    except TypeError:
      return value
    if expected.kind not in "biufc":
      return value
    if array.dtype == expected or (not typed and array.size == 0):
      return array.astype(expected, copy=False)
  must = f"must be {dtype.name}; received"
  values = f"{received if typed else 'list'} values"
  if expected is not None and expected.kind in "iu" and array.dtype.kind in "iu":
    info = np.iinfo(expected)
    if array.size and int(array.max()) > info.max:
      raise ValueError(f"{must} {values} up to {array.max()}, outside {dtype.name}")
    if array.size and int(array.min()) < info.min:
      raise ValueError(f"{must} {values} down to {array.min()}, outside {dtype.name}")
    return array.astype(expected)
  numbers = "iuf" if expected is not None and expected.kind == "f" else "iufc"
  if not typed and expected is not None and expected.kind in "fc" and array.dtype.kind in numbers:
    with np.errstate(over="ignore"):
      converted = array.astype(expected)
    overflow = np.isfinite(array) & ~np.isfinite(converted)
    if overflow.any():
      worst = array[overflow][np.argmax(np.abs(array[overflow]))]
      raise ValueError(f"{must} {values} up to {worst}, outside {dtype.name}")
    return converted
  raise ValueError(f"{must} {received if typed else 'a list of ' + received}")


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
  """gRPC `PredictionService.Predict` client that checks input dtypes against the SignatureDef.

  The first call learns the served signatures' input dtypes from the server's `GetModelMetadata`
  and keeps them (one metadata call per client, again only for a signature name the reply lacked);
  `predict` then converts or rejects inputs by them (see the module docstring). A server that
  answers the metadata call with UNIMPLEMENTED or INVALID_ARGUMENT (no metadata) is remembered as
  such and called without the check; any other failure of it is mapped like Predict's
  (UNAVAILABLE, DEADLINE_EXCEEDED, NOT_FOUND) or skips the check for that call only.

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
    # Signature name -> {input name: dtype}; None where the server gave no SignatureDef for it.
    self._input_dtypes: dict[str, dict[str, tf.DType] | None] = {}

  @property
  def _where(self) -> str:
    return f"model '{self.model_name}' at {self.address} (gRPC)"

  def _model_spec(self, signature_name: str | None = None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=self.model_name, signature_name=signature_name or "")
    if self.version is not None:
      spec.version.value = self.version
    return spec

  def request(
    self, inputs: Mapping[str, Any], signature_name: str | None = None
  ) -> predict_pb2.PredictRequest:
    """The PredictRequest of `inputs` as given (`predict` conforms their dtypes first)."""
    request = predict_pb2.PredictRequest(
      model_spec=self._model_spec(signature_name or self.signature_name)
    )
    for name, value in to_arrays(inputs).items():
      request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request

  def predict(
    self,
    inputs: Mapping[str, Any],
    signature_name: str | None = None,
    timeout_s: float | None = None,
  ) -> dict[str, np.ndarray]:
    """Runs the signature on `inputs`; returns output name -> array.

    Args:
      inputs: Input name -> array or list.
      signature_name: The signature to call; defaults to the client's.
      timeout_s: Deadline for the call (the metadata call included); defaults to the client's.

    Raises:
      InvalidInputError: An input's dtype differs from the signature's and cannot be converted
        losslessly (no Predict call is made), or the server rejected the request.
      ServingError: Another failure (`ServerUnavailableError`, `DeadlineExceededError`,
        `ModelNotFoundError`, ...).
    """
    signature_name = signature_name or self.signature_name
    timeout = timeout_s or self.timeout_s
    deadline = time.monotonic() + timeout
    inputs = self.conform(inputs, signature_name, timeout)
    request = self.request(inputs, signature_name)
    try:
      response = self._stub.Predict(request, timeout=max(deadline - time.monotonic(), 1e-3))
    except grpc.RpcError as e:
      raise self._error(e, timeout) from e
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

  def conform(
    self, inputs: Mapping[str, Any], signature_name: str, timeout: float
  ) -> dict[str, Any]:
    """`inputs` with each input the signature names converted to its dtype (see `to_dtype`).

    Args:
      inputs: Input name -> array or list.
      signature_name: The signature whose SignatureDef gives the dtypes.
      timeout: Deadline of the metadata call, if one is needed.

    Returns:
      The inputs, converted; as given where the server has no SignatureDef for the signature.

    Raises:
      InvalidInputError: An input's dtype differs and cannot be converted losslessly.
      ServingError: The metadata call failed with UNAVAILABLE, DEADLINE_EXCEEDED or NOT_FOUND.
    """
    dtypes = self.input_dtypes(signature_name, timeout)
    if not dtypes:
      return dict(inputs)
    conformed = {}
    for name, value in inputs.items():
      if name not in dtypes:  # The server names unknown inputs itself.
        conformed[name] = value
        continue
      try:
        conformed[name] = to_dtype(value, dtypes[name])
      except ValueError as e:
        raise InvalidInputError(
          f"Input `{name}` of signature {signature_name} of {self._where} {e}",
          self.model_name,
          self.address,
        ) from None
    return conformed

  def input_dtypes(self, signature_name: str, timeout: float) -> dict[str, tf.DType] | None:
    """Input name -> dtype of the served signature, from `GetModelMetadata` (cached).

    Args:
      signature_name: The signature.
      timeout: Deadline of the metadata call, if one is needed.

    Returns:
      The dtypes, or None where the server has no metadata or no such signature.

    Raises:
      ServingError: The metadata call failed with UNAVAILABLE, DEADLINE_EXCEEDED or NOT_FOUND.
    """
    if signature_name in self._input_dtypes:
      return self._input_dtypes[signature_name]
    request = get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec=self._model_spec(), metadata_field=["signature_def"]
    )
    try:
      response = self._stub.GetModelMetadata(request, timeout=timeout)
    except grpc.RpcError as e:
      code = e.code()
      if code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.NOT_FOUND,
      ):
        raise self._error(e, timeout, rpc="GetModelMetadata") from e
      if code in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INVALID_ARGUMENT):
        self._input_dtypes[signature_name] = None  # No metadata on this server: send as given.
      return None
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    if "signature_def" not in response.metadata or not response.metadata["signature_def"].Unpack(
      signature_defs
    ):
      self._input_dtypes[signature_name] = None
      return None
    for name, signature_def in signature_defs.signature_def.items():
      dtypes = {alias: _dtype(info.dtype) for alias, info in signature_def.inputs.items()}
      self._input_dtypes[name] = {alias: d for alias, d in dtypes.items() if d is not None}
    return self._input_dtypes.setdefault(signature_name, None)

  def _error(self, error: grpc.RpcError, timeout: float, rpc: str = "Predict") -> ServingError:
    code, details = error.code(), error.details()
    where = self._where
    if code == grpc.StatusCode.UNAVAILABLE:
      return ServerUnavailableError(
        f"No model server answers for {where}: {details}. Is tensorflow_model_server running "
        "with this --port?",
        self.model_name,
        self.address,
      )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
      return DeadlineExceededError(
        f"{rpc} on {where} did not answer within the {timeout:g} s deadline",
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
      f"{rpc} on {where} failed with {code.name}: {details}", self.model_name, self.address
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
