"""TF Serving side files: warm-up requests, the model server config and batching parameters.

* `<version>/assets.extra/tf_serving_warmup_requests`: a TFRecord of `PredictionLog` protos
  (tensorflow-serving-api), replayed by the model server when it loads the version, so the first
  real request does not pay for graph optimisation and allocation.
* `models.config`: a `ModelServerConfig` text proto for `--model_config_file`.
* `batching_parameters.txt`: a `BatchingParameters` text proto for `--enable_batching
  --batching_parameters_file`. tensorflow-serving-api does not ship that message's Python class, so
  it is rebuilt here from the fields of `tensorflow_serving/servables/tensorflow/
  session_bundle_config.proto` and the file is written (and can be read back) through it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf
from google.protobuf import (
  descriptor_pb2,
  descriptor_pool,
  message_factory,
  text_format,
  wrappers_pb2,  # noqa: F401  (registers google/protobuf/wrappers.proto)
)
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from features import feature_spec, io_utils

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MODEL_CONFIG_FILE = "models.config"
BATCHING_FILE = "batching_parameters.txt"


def _atomic_write(path: str, data: bytes) -> None:
  io_utils.write_bytes(path, data)


def sample_inputs(
  specs: Mapping[str, tf.TensorSpec], batch_size: int, seed: int = 0, inner: int = 3
) -> dict[str, np.ndarray]:
  """Deterministic inputs matching `specs` (variable inner dims get `inner`).

  String rows include "" and a never-seen id, so warm-up and checks cover unknown ids too; float
  inputs named `*mask` are all ones; integers (SID codes among them) are 0 or 1, valid for any
  codebook of K >= 2 codes.
  """
  rng = np.random.default_rng(seed)
  inputs = {}
  for name, spec in sorted(specs.items()):
    shape = [batch_size] + [inner if d is None else d for d in spec.shape.as_list()[1:]]
    size = int(np.prod(shape))
    if spec.dtype == tf.string:
      values = [f"{name}_{i % 5}".encode() for i in range(size)]
      values[: min(2, size)] = [b"", f"never_seen_{name}".encode()][: min(2, size)]
      inputs[name] = np.array(values, dtype=object).reshape(shape)
    elif spec.dtype.is_floating and name.endswith("mask"):
      inputs[name] = np.ones(shape, spec.dtype.as_numpy_dtype)
    elif spec.dtype.is_floating:
      inputs[name] = rng.normal(size=shape).astype(spec.dtype.as_numpy_dtype)
    elif spec.dtype.is_integer:
      inputs[name] = rng.integers(0, 2, size=shape).astype(spec.dtype.as_numpy_dtype)
    elif spec.dtype == tf.bool:
      inputs[name] = rng.random(size=shape) < 0.5
    else:
      raise ValueError(f"No sample data for input {name} of dtype {spec.dtype.name}")
  return inputs


def codes_inputs(loaded, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The `predict_codes` inputs matching `serving_default` inputs: each content embedding
  [B, (H,) D] becomes its SID [B, (H,) L] (`codes`, `history_codes`), computed by the export's own
  `semantic_id` signature (once per distinct row); the other inputs are kept.

  Args:
    loaded: the export, as `tf.saved_model.load` returns it (with a `semantic_id` signature).
    inputs: `serving_default` input name -> array.
  """
  semantic_id = loaded.signatures["semantic_id"]
  (key,) = semantic_id.structured_input_signature[1]
  out = {}
  for name, value in inputs.items():
    if not name.endswith(feature_spec.CONTENT_EMBEDDING):
      out[name] = np.asarray(value)
      continue
    value = np.asarray(value, np.float32)
    rows, index = np.unique(value.reshape(-1, value.shape[-1]), axis=0, return_inverse=True)
    codes = semantic_id(**{key: tf.constant(rows)})[feature_spec.CODES].numpy()
    shape = value.shape[:-1] + codes.shape[-1:]
    codes_name = name[: -len(feature_spec.CONTENT_EMBEDDING)] + feature_spec.CODES
    out[codes_name] = codes[index.reshape(-1)].reshape(shape)
  return out


def predict_request(
  model_name: str, inputs: Mapping[str, np.ndarray], signature_name: str = "serving_default"
) -> predict_pb2.PredictRequest:
  """A `PredictRequest` carrying `inputs` as TensorProtos."""
  request = predict_pb2.PredictRequest(
    model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
  )
  for name, value in inputs.items():
    request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
  return request


def write_warmup_requests(
  export_dir: str,
  model_name: str,
  requests: Sequence[tuple[str, Mapping[str, np.ndarray]]],
) -> str:
  """Writes `(signature_name, inputs)` pairs as warm-up `PredictionLog`s; returns the file path."""
  if not requests:
    raise ValueError("`requests` must not be empty")
  path = os.path.join(export_dir, WARMUP_FILE)
  with io_utils.atomic_path(path) as temp, tf.io.TFRecordWriter(temp) as writer:
    for signature_name, inputs in requests:
      log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(
          request=predict_request(model_name, inputs, signature_name)
        )
      )
      writer.write(log.SerializeToString())
  return path


def read_warmup_requests(export_dir: str) -> list[prediction_log_pb2.PredictionLog]:
  """Parses the warm-up file back (what the model server does at load time)."""
  path = os.path.join(export_dir, WARMUP_FILE)
  logs = []
  for record in tf.data.TFRecordDataset(path):
    log = prediction_log_pb2.PredictionLog()
    log.ParseFromString(record.numpy())
    logs.append(log)
  return logs


def model_server_config(
  model_name: str, base_path: str, num_versions: int = 1
) -> model_server_config_pb2.ModelServerConfig:
  """One TensorFlow model served from `base_path`, keeping the latest `num_versions` versions."""
  if num_versions < 1:
    raise ValueError(f"`num_versions` must be positive. Received: num_versions={num_versions}")
  config = model_server_config_pb2.ModelServerConfig()
  model = config.model_config_list.config.add()
  model.name = model_name
  model.base_path = base_path
  model.model_platform = "tensorflow"
  model.model_version_policy.latest.num_versions = num_versions
  return config


def write_model_config(path: str, model_name: str, base_path: str, num_versions: int = 1) -> None:
  config = model_server_config(model_name, base_path, num_versions)
  _atomic_write(path, text_format.MessageToString(config).encode())


def read_model_config(path: str) -> model_server_config_pb2.ModelServerConfig:
  with open(path) as f:
    return text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())


def _batching_parameters_class():
  """`tensorflow.serving.BatchingParameters`, built from its .proto fields (see module doc)."""
  pool = descriptor_pool.Default()
  name = "tensorflow.serving.BatchingParameters"
  try:
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
  except KeyError:
    pass
  file = descriptor_pb2.FileDescriptorProto(
    name="semantic_ids/batching_parameters.proto",
    package="tensorflow.serving",
    syntax="proto3",
    dependency=["google/protobuf/wrappers.proto"],
  )
  message = file.message_type.add(name="BatchingParameters")
  field = descriptor_pb2.FieldDescriptorProto
  wrapped = [
    ("max_batch_size", ".google.protobuf.Int64Value"),
    ("batch_timeout_micros", ".google.protobuf.Int64Value"),
    ("max_enqueued_batches", ".google.protobuf.Int64Value"),
    ("num_batch_threads", ".google.protobuf.Int64Value"),
    ("thread_pool_name", ".google.protobuf.StringValue"),
  ]
  for number, (field_name, type_name) in enumerate(wrapped, start=1):
    message.field.add(
      name=field_name,
      number=number,
      type=field.TYPE_MESSAGE,
      type_name=type_name,
      label=field.LABEL_OPTIONAL,
    )
  message.field.add(
    name="allowed_batch_sizes", number=6, type=field.TYPE_INT64, label=field.LABEL_REPEATED
  )
  message.field.add(
    name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL
  )
  pool.Add(file)
  return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


@dataclasses.dataclass
class BatchingConfig:
  """Server-side batching (`--enable_batching`). Requests larger than `max_batch_size` are refused
  by the batcher, so it must be at least the largest request (the contract's `max_batch_size`).

  Attributes:
    max_batch_size: Rows per merged batch. Defaults to 10,000.
    batch_timeout_micros: How long a partial batch waits for more requests. Defaults to 1,000.
    max_enqueued_batches: Queue length in batches. Defaults to 100.
    num_batch_threads: Threads running batches (about the number of cores). Defaults to 4.
  """

  max_batch_size: int = 10_000
  batch_timeout_micros: int = 1_000
  max_enqueued_batches: int = 100
  num_batch_threads: int = 4

  def __post_init__(self):
    for name, value in dataclasses.asdict(self).items():
      if value < (0 if name == "batch_timeout_micros" else 1):
        raise ValueError(f"`{name}` must be positive. Received: {name}={value}")

  def to_proto(self):
    proto = _batching_parameters_class()()
    for name, value in dataclasses.asdict(self).items():
      getattr(proto, name).value = value
    return proto


def write_batching_parameters(path: str, config: BatchingConfig | None = None) -> None:
  proto = (config or BatchingConfig()).to_proto()
  _atomic_write(path, text_format.MessageToString(proto).encode())


def read_batching_parameters(path: str):
  """Parses a batching parameters file; raises `text_format.ParseError` on unknown fields."""
  with open(path) as f:
    return text_format.Parse(f.read(), _batching_parameters_class()())
