"""Serving signatures: named tensors, serialized `tf.Example`s and semantic IDs, checked in-graph.

TF Serving feeds request tensors straight into `Session::Run`: it checks neither the shapes
declared in the SignatureDef nor the values. Every signature built here therefore validates its
inputs inside the graph, with `tf.debugging` asserts that fail with `InvalidArgument` and name the
offending input: NaN or Inf values, a wrong inner width, batch sizes that disagree across inputs,
more rows than the contract allows. An empty batch gives empty outputs; any string is a valid id
(the ranker hashes ids, so an unknown or empty user id gets an ordinary prediction). The graph
holds only core TF ops plus the TF Text ops the wrapped model uses, so the stock
`tensorflow_model_server` loads it. (A wrong dtype is rejected by the runtime itself before the
graph runs: "INVALID_ARGUMENT: Expects arg[i] to be float but double is provided".)

Signatures (`SIGNATURE_*` constants):
  * `serving_default`: one named tensor per contract input -> `ctr` float32[B] and the second task's
    output float32[B].
  * `predict_examples`: `examples` string[B] of serialized `tf.Example`s -> the same outputs; the
    feature spec is derived from the contract's input specs (`example_feature_spec`).
  * `semantic_id`: `content_embedding` float32[B, D] -> `codes` int32[B, L] (only when the
    model has a semantic-ID encoder).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import tensorflow as tf

SIGNATURE_DEFAULT = "serving_default"
SIGNATURE_EXAMPLES = "predict_examples"
SIGNATURE_SEMANTIC_ID = "semantic_id"
EXAMPLES_KEY = "examples"
CODES_KEY = "codes"
CTR_KEY = "ctr"

PredictFn = Callable[[Mapping[str, tf.Tensor]], Mapping[str, tf.Tensor]]
SidFn = Callable[[tf.Tensor], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class ServingContract:
  """What the exported model accepts and returns.

  Attributes:
    input_specs: Input name -> `tf.TensorSpec`; every spec is batch-major (first dimension `None`).
      Inner dimensions that are known (an embedding width) are checked in-graph; `None` inner
      dimensions (a padded history length) may vary per request.
    output_names: The prediction outputs, `ctr` first, then the second task (e.g. `second_label`).
    embedding_key: The candidate content-embedding input, float32[B, D], or None for a model
      that reads no content embedding (the hash-ID baseline; it then has no `semantic_id`).
      Defaults to `content_embedding`.
    max_batch_size: Largest number of rows one request may carry; larger requests fail with
      InvalidArgument instead of exhausting the server's memory. Defaults to 10,000.
  """

  input_specs: Mapping[str, tf.TensorSpec]
  output_names: tuple[str, ...] = (CTR_KEY, "second_label")
  embedding_key: str | None = "content_embedding"
  max_batch_size: int = 10_000

  def __post_init__(self):
    if not self.input_specs:
      raise ValueError("`input_specs` must name at least one input")
    if self.embedding_key is not None and self.embedding_key not in self.input_specs:
      raise ValueError(
        "`input_specs` must contain `embedding_key`. Received: "
        f"embedding_key={self.embedding_key!r}, inputs={sorted(self.input_specs)}"
      )
    for name, spec in self.input_specs.items():
      if spec.shape.rank is None or spec.shape.rank < 1 or spec.shape[0] is not None:
        raise ValueError(
          f"Every input spec must be batch-major with first dimension None. Received: {name}={spec}"
        )
    emb = self.input_specs.get(self.embedding_key)
    if emb is not None and (emb.dtype != tf.float32 or emb.shape.rank != 2 or emb.shape[1] is None):
      raise ValueError(
        f"`{self.embedding_key}` must be float32[None, D] with D known. Received: {emb}"
      )
    if not self.output_names or self.output_names[0] != CTR_KEY:
      raise ValueError(f"`output_names` must start with {CTR_KEY!r}. Received: {self.output_names}")
    if self.max_batch_size < 1:
      raise ValueError(f"`max_batch_size` must be positive. Received: {self.max_batch_size}")

  def named_specs(self) -> list[tf.TensorSpec]:
    """The input specs in a fixed order, each carrying its input name (the signature's keys)."""
    return [
      tf.TensorSpec(spec.shape, spec.dtype, name=name)
      for name, spec in sorted(self.input_specs.items())
    ]


def validate_inputs(
  features: Mapping[str, tf.Tensor], specs: Mapping[str, tf.TensorSpec], max_batch_size: int
) -> dict[str, tf.Tensor]:
  """Asserts the request is well formed; returns the inputs gated on the asserts.

  Args:
    features: Input name -> tensor, as fed by the server.
    specs: Input name -> expected spec (batch-major).
    max_batch_size: Largest allowed number of rows.

  Returns:
    The same tensors behind control dependencies on every assert, so no model op runs on bad input.
  """
  names = sorted(features)
  first = names[0]
  batch = tf.shape(features[first], out_type=tf.int64)[0]
  checks = [
    tf.debugging.assert_less_equal(
      batch,
      tf.constant(max_batch_size, tf.int64),
      message=f"Input `{first}` has more rows than max_batch_size={max_batch_size}; split it",
    )
  ]
  for name in names:
    value, spec = features[name], specs[name]
    shape = tf.shape(value, out_type=tf.int64)
    checks.append(
      tf.debugging.assert_equal(
        shape[0], batch, message=f"Input `{name}` must have as many rows as `{first}`"
      )
    )
    for axis, dim in enumerate(spec.shape.as_list()[1:], start=1):
      if dim is not None:
        checks.append(
          tf.debugging.assert_equal(
            shape[axis],
            tf.constant(dim, tf.int64),
            message=f"Input `{name}` must have shape {spec.shape.as_list()} (dim {axis} is {dim})",
          )
        )
    if value.dtype.is_floating:
      checks.append(
        tf.debugging.assert_all_finite(
          value, message=f"Input `{name}` must be finite (no NaN or Inf)"
        )
      )
  with tf.control_dependencies(checks):
    return {name: tf.identity(features[name]) for name in names}


def _batch_vector(value: tf.Tensor, name: str) -> tf.Tensor:
  """One float32 prediction per row, whatever shape ([B] or [B, 1]) the model returned."""
  return tf.reshape(tf.cast(value, tf.float32), [-1], name=name)


def predict_outputs(
  predict_fn: PredictFn, features: Mapping[str, tf.Tensor], contract: ServingContract
) -> dict[str, tf.Tensor]:
  """Validates `features` and runs the model; an empty batch returns empty outputs."""
  features = validate_inputs(features, contract.input_specs, contract.max_batch_size)
  batch = tf.shape(features[sorted(features)[0]])[0]

  def run():
    outputs = predict_fn(features)
    missing = [name for name in contract.output_names if name not in outputs]
    if missing:
      raise ValueError(f"The model returned {sorted(outputs)}; missing outputs {missing}")
    return {name: _batch_vector(outputs[name], name) for name in contract.output_names}

  def empty():
    return {name: tf.zeros([0], tf.float32) for name in contract.output_names}

  outputs = tf.cond(batch > 0, run, empty)
  return {name: tf.identity(value, name=name) for name, value in outputs.items()}


def example_feature_spec(specs: Mapping[str, tf.TensorSpec]) -> dict[str, object]:
  """A `tf.io.parse_example` spec for the inputs: fixed-shape inputs are required, a variable inner
  dimension (a history) is ragged and padded with 0 / "" after parsing.

  tf.Example stores float32, int64 and bytes; other dtypes are parsed as the nearest one and cast.
  """
  parse_spec = {}
  for name, spec in specs.items():
    dtype = _example_dtype(spec.dtype)
    inner = spec.shape.as_list()[1:]
    if all(dim is not None for dim in inner):
      parse_spec[name] = tf.io.FixedLenFeature(inner, dtype)
    elif inner[0] is None and all(dim is not None for dim in inner[1:]):
      partitions = tuple(tf.io.RaggedFeature.UniformRowLength(dim) for dim in inner[1:])
      parse_spec[name] = tf.io.RaggedFeature(dtype, value_key=name, partitions=partitions)
    else:
      raise ValueError(
        "Only the first inner dimension may be variable for a tf.Example input. "
        f"Received: {name}={spec}"
      )
  return parse_spec


def _example_dtype(dtype: tf.DType) -> tf.DType:
  if dtype.is_floating:
    return tf.float32
  if dtype.is_integer or dtype == tf.bool:
    return tf.int64
  if dtype == tf.string:
    return tf.string
  raise ValueError(f"No tf.Example encoding for dtype {dtype.name}")


def parse_examples(
  serialized: tf.Tensor, specs: Mapping[str, tf.TensorSpec]
) -> dict[str, tf.Tensor]:
  """Parses serialized `tf.Example`s into the dense inputs `specs` describes."""
  parsed = tf.io.parse_example(serialized, example_feature_spec(specs))
  features = {}
  for name, spec in specs.items():
    value = parsed[name]
    if isinstance(value, tf.RaggedTensor):
      value = value.to_tensor()
      inner = spec.shape.as_list()[1:]
      value = tf.reshape(
        value, tf.concat([tf.shape(value)[:2], tf.constant(inner[1:], tf.int32)], 0)
      )
    features[name] = tf.cast(value, spec.dtype)
  return features


class ServingModule(tf.Module):
  """Holds the model (so its variables and TF Text resources are saved) and builds the signatures.

  Args:
    predict_fn: Features dict -> outputs dict holding at least `contract.output_names`; usually a
      Keras model called with `training=False`.
    contract: The inputs and outputs to serve.
    sid_fn: Optional content embedding float32[B, D] -> codes [B, L]; adds `semantic_id`.
    trackables: Objects owning variables/resources used by the functions (e.g. the Keras model).
  """

  def __init__(
    self,
    predict_fn: PredictFn,
    contract: ServingContract,
    sid_fn: SidFn | None = None,
    trackables: Mapping[str, tf.Module] | None = None,
    name: str | None = None,
  ):
    super().__init__(name=name)
    if sid_fn is not None and contract.embedding_key is None:
      raise ValueError("`sid_fn` needs a content-embedding input; the contract has none")
    self._predict_fn = predict_fn
    self._sid_fn = sid_fn
    self.contract = contract
    self.tracked = dict(trackables or {})

  def signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
    """The concrete functions to pass as `signatures=` to `tf.saved_model.save`."""
    contract = self.contract
    order = sorted(contract.input_specs)

    def serve(*tensors):
      return predict_outputs(self._predict_fn, dict(zip(order, tensors)), contract)

    def serve_examples(examples):
      features = parse_examples(examples, contract.input_specs)
      return predict_outputs(self._predict_fn, features, contract)

    signatures = {
      SIGNATURE_DEFAULT: tf.function(serve, input_signature=contract.named_specs()),
      SIGNATURE_EXAMPLES: tf.function(
        serve_examples, input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_KEY)]
      ),
    }
    if self._sid_fn is not None:
      signatures[SIGNATURE_SEMANTIC_ID] = tf.function(
        self._semantic_id,
        input_signature=[contract.named_specs()[order.index(contract.embedding_key)]],
      )
    return {name: fn.get_concrete_function() for name, fn in signatures.items()}

  def _semantic_id(self, embedding: tf.Tensor) -> dict[str, tf.Tensor]:
    key = self.contract.embedding_key
    spec = {key: self.contract.input_specs[key]}
    embedding = validate_inputs({key: embedding}, spec, self.contract.max_batch_size)[key]
    codes = tf.cast(self._sid_fn(embedding), tf.int32)
    return {CODES_KEY: tf.identity(codes, name=CODES_KEY)}

  def save(self, export_dir: str) -> None:
    """Writes a SavedModel with all signatures to `export_dir` (which must not exist yet)."""
    tf.saved_model.save(self, export_dir, signatures=self.signatures())
