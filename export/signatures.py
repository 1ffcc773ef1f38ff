"""Serving signatures: named tensors, serialized `tf.Example`s and semantic IDs, checked in-graph.

TF Serving feeds request tensors straight into `Session::Run`: it checks neither the shapes
declared in the SignatureDef nor the values. Every signature built here therefore validates its
inputs inside the graph, with `tf.debugging` asserts that fail with `InvalidArgument` and name the
offending input: NaN or Inf values, a wrong inner width (an embedding's D, a SID's L), integer ids
outside their range (a code >= K), batch sizes that disagree across inputs, more rows than the
contract allows. An empty batch gives empty outputs; any string is a valid id (the ranker hashes
ids, so an unknown or empty user id gets an ordinary prediction). The graph holds core TF ops only
(the SentencePiece segmentation of SIDs too, `features.sid_segmentation`), so any TF runtime loads
it: the stock `tensorflow_model_server` whatever TF Text it embeds, and runtimes with none. (A wrong
dtype is rejected by the runtime itself before the graph runs, naming the argument's position:
"INVALID_ARGUMENT: Expects arg[i] to be float but double is provided".)

Signatures (`SIGNATURE_*` constants):
  * `serving_default`: one named tensor per contract input -> `ctr` float32[B] and the second task's
    output float32[B].
  * `predict_examples`: `examples` string[B] of serialized `tf.Example`s -> the same outputs; the
    feature spec is derived from the contract's input specs (`example_feature_spec`). The row limit
    is checked on the serialized strings, before any of them is parsed (`check_example_count`).
  * `semantic_id`: `content_embedding` float32[B, D] -> `codes` int32[B, L] (only when the
    model has a semantic-ID encoder).
  * `predict_codes`: the inputs of `serving_default` with the content embeddings replaced by
    precomputed SIDs, `codes` int32[B, L] and `history_codes` int32[B, H, L] (each code in
    [0, K); zeros for history padding) -> the same outputs, without the nearest-code search (for
    callers that keep SIDs in their item store; `semantic_id` or `trainers.assign_sids` makes
    them). Only when the model is built to take codes (`ServingModule(codes_fn=...)`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import tensorflow as tf

from features import feature_spec
from model import user_tower

SIGNATURE_DEFAULT = "serving_default"
SIGNATURE_EXAMPLES = "predict_examples"
SIGNATURE_SEMANTIC_ID = "semantic_id"
SIGNATURE_CODES = "predict_codes"
EXAMPLES_KEY = "examples"
CODES_KEY = feature_spec.CODES
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
    value_bounds: Integer input name -> bound: every value must lie in [0, bound) (SID codes in
      [0, K)). Defaults to none.
    shared_keys: Inputs that describe the user, not the candidate (the history): a request of one
      user repeats them on every row. When every row of each of them is bit-identical, the model
      gets them with ONE row (it must apply a one-row input to every row: `model.user_tower.
      UserTower` does) and their values are checked on that row only. Defaults to none.
  """

  input_specs: Mapping[str, tf.TensorSpec]
  output_names: tuple[str, ...] = (CTR_KEY, "second_label")
  embedding_key: str | None = "content_embedding"
  max_batch_size: int = 10_000
  value_bounds: Mapping[str, int] = dataclasses.field(default_factory=dict)
  shared_keys: tuple[str, ...] = ()

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
    for name, bound in self.value_bounds.items():
      spec = self.input_specs.get(name)
      if spec is None or not spec.dtype.is_integer or bound < 1:
        raise ValueError(
          "`value_bounds` must name integer inputs with positive bounds. Received: "
          f"{name}={bound} for input spec {spec}"
        )
    unknown = sorted(set(self.shared_keys) - set(self.input_specs))
    if (
      unknown
      or self.embedding_key in self.shared_keys
      or not set(self.input_specs) - set(self.shared_keys)
    ):
      raise ValueError(
        "`shared_keys` must name inputs other than the candidate's embedding, and not all of "
        "them. Received: "
        f"{self.shared_keys}, inputs={sorted(self.input_specs)}"
      )

  def named_specs(self) -> list[tf.TensorSpec]:
    """The input specs in a fixed order, each carrying its input name (the signature's keys)."""
    return [
      tf.TensorSpec(spec.shape, spec.dtype, name=name)
      for name, spec in sorted(self.input_specs.items())
    ]


def with_sid_length(
  specs: Mapping[str, tf.TensorSpec], num_levels: int
) -> dict[str, tf.TensorSpec]:
  """`specs` with the SID-length axes (`L` in `features.feature_spec`) set to `num_levels`, so the
  signatures check them."""
  out = {}
  for name, spec in specs.items():
    feature = feature_spec.FEATURES.get(name)
    dims = spec.shape.as_list()
    if feature is not None:
      symbols = (None, *feature.shape)  # The batch axis first.
      dims = [num_levels if s == feature_spec.L else d for s, d in zip(symbols, dims)]
    out[name] = tf.TensorSpec(dims, spec.dtype, name=spec.name)
  return out


def validate_inputs(
  features: Mapping[str, tf.Tensor],
  specs: Mapping[str, tf.TensorSpec],
  max_batch_size: int,
  value_bounds: Mapping[str, int] | None = None,
  shared_keys: tuple[str, ...] = (),
) -> dict[str, tf.Tensor]:
  """Asserts the request is well formed; returns the inputs gated on the asserts.

  Args:
    features: Input name -> tensor, as fed by the server.
    specs: Input name -> expected spec (batch-major).
    max_batch_size: Largest allowed number of rows.
    value_bounds: Optional integer input name -> bound; values must lie in [0, bound).
    shared_keys: Inputs that one user's request repeats on every row (`ServingContract`). When
      every row of each is bit-identical, they are returned with their first row only, and their
      values are checked on that row: one pass over a [B, H, D] history (the comparison) instead
      of two (the comparison and the finiteness check).

  Returns:
    The same tensors (`shared_keys` possibly with one row) behind control dependencies on every
    assert, so no model op runs on bad input.
  """
  names = sorted(features)
  first = batch_input(names, shared_keys)
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
    if name in shared_keys:
      checks.append(
        tf.debugging.Assert(
          tf.logical_or(tf.equal(shape[0], batch), tf.equal(shape[0], 1)),
          [f"Input `{name}` must have as many rows as `{first}`, or one row for all of them"],
        )
      )
    else:
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
  values = dict(features)
  shared = [name for name in names if name in shared_keys]
  if shared:
    # The comparison reads rows of the checked shapes.
    with tf.control_dependencies(checks), tf.name_scope("shared_inputs"):
      identical = tf.reduce_all(
        tf.stack([user_tower.rows_identical(features[name]) for name in shared])
      )
      values.update(
        tf.cond(
          identical,
          lambda: {name: features[name][:1] for name in shared},
          lambda: {name: tf.identity(features[name]) for name in shared},
        )
      )
  for name in names:
    value = values[name]
    if value.dtype.is_floating:
      checks.append(
        tf.debugging.Assert(all_finite(value), [f"Input `{name}` must be finite (no NaN or Inf)"])
      )
    bound = (value_bounds or {}).get(name)
    if bound is not None:  # Two reductions (an empty input passes: min = max int, max = min int).
      in_range = tf.logical_and(
        tf.reduce_min(value) >= 0, tf.reduce_max(value) < tf.constant(bound, value.dtype)
      )
      checks.append(
        tf.debugging.Assert(in_range, [f"Input `{name}` must hold values in [0, {bound})"])
      )
  with tf.control_dependencies(checks):
    return {name: tf.identity(values[name]) for name in names}


def batch_input(names, shared_keys: tuple[str, ...] = ()) -> str:
  """The input whose rows are the request's batch: the first name (sorted) not in `shared_keys`,
  which may come with one row (`ServingContract` ensures there is one; else the first name)."""
  names = sorted(names)
  return next((name for name in names if name not in shared_keys), names[0])


def all_finite(value: tf.Tensor) -> tf.Tensor:
  """bool scalar: no element of the float tensor `value` is NaN or infinite.

  Computed as the sum of `value @ 0` (rows of the last axis times a zero vector): every product
  is +-0 for a finite element and NaN for a NaN or an infinity (IEEE 754), so the sum is 0 or NaN.
  One `MatMul` reads the tensor at the speed of the BLAS kernel: on 1,000 x 128 floats it took
  about 0.03 ms here against about 0.3 ms for `is_finite` + `reduce_all` (whose `IsFinite` kernel
  took 0.36-1.0 ms in a serving profile, more than a hash-ID model's cross layer); `CheckNumerics`
  is slower still. The zero vector is built from the input's shape at run time, so no graph
  rewrite can fold `x @ 0` to 0.
  """
  with tf.name_scope("all_finite"):
    value = tf.convert_to_tensor(value)
    if value.shape.rank is None or value.shape.rank == 0:
      return tf.reduce_all(tf.math.is_finite(value))
    shape = tf.shape(value)
    width = shape[-1]
    rows = tf.reshape(value, tf.stack([tf.reduce_prod(shape[:-1]), width]))  # Also when empty.
    zeros = tf.zeros(tf.reshape(width, [1]), value.dtype)
    return tf.math.is_finite(tf.reduce_sum(tf.linalg.matvec(rows, zeros)))


def _batch_vector(value: tf.Tensor, name: str) -> tf.Tensor:
  """One float32 prediction per row, whatever shape ([B] or [B, 1]) the model returned."""
  return tf.reshape(tf.cast(value, tf.float32), [-1], name=name)


def predict_outputs(
  predict_fn: PredictFn, features: Mapping[str, tf.Tensor], contract: ServingContract
) -> dict[str, tf.Tensor]:
  """Validates `features` and runs the model; an empty batch returns empty outputs."""
  features = validate_inputs(
    features,
    contract.input_specs,
    contract.max_batch_size,
    contract.value_bounds,
    contract.shared_keys,
  )
  batch = tf.shape(features[batch_input(features, contract.shared_keys)])[0]

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


def check_example_count(serialized: tf.Tensor, max_batch_size: int) -> tf.Tensor:
  """`serialized` gated on holding at most `max_batch_size` strings, so an oversized request
  fails (InvalidArgument naming the input) before the parser spends time and memory on it."""
  check = tf.debugging.assert_less_equal(
    tf.size(serialized, out_type=tf.int64),
    tf.constant(max_batch_size, tf.int64),
    message=f"Input `{EXAMPLES_KEY}` has more rows than max_batch_size={max_batch_size}; split it",
  )
  with tf.control_dependencies([check]):
    return tf.identity(serialized)


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


def serving_state(model: tf.Module) -> tf.Module:
  """The variables and lookup tables (and other resources) of `model`, in a plain module.

  Tracking this instead of a Keras model saves the same serving graph without the Keras layers'
  own traced functions, which would about double the SavedModel's graph and its save and load time.
  """
  state = tf.Module(name="serving_state")
  state.model_variables = list(model.variables)
  resource = tf.saved_model.experimental.TrackableResource
  state.resources = list(model._flatten(predicate=lambda v: isinstance(v, resource)))  # noqa: SLF001
  return state


class ServingModule(tf.Module):
  """Holds the model (so its variables and lookup tables are saved) and builds the signatures.

  Args:
    predict_fn: Features dict -> outputs dict holding at least `contract.output_names`; usually a
      Keras model called with `training=False`.
    contract: The inputs and outputs to serve.
    sid_fn: Optional content embedding float32[B, D] -> codes [B, L]; adds `semantic_id`.
    trackables: Objects owning variables/resources used by the functions (e.g. the Keras model).
    codes_fn: Optional features dict with precomputed SIDs -> outputs, as `predict_fn`; adds
      `predict_codes` (needs `codes_contract`).
    codes_contract: Optional contract of `predict_codes`: its inputs (no content embedding), the
      same outputs and `value_bounds` for the codes.
  """

  def __init__(
    self,
    predict_fn: PredictFn,
    contract: ServingContract,
    sid_fn: SidFn | None = None,
    trackables: Mapping[str, tf.Module] | None = None,
    name: str | None = None,
    codes_fn: PredictFn | None = None,
    codes_contract: ServingContract | None = None,
  ):
    super().__init__(name=name)
    if sid_fn is not None and contract.embedding_key is None:
      raise ValueError("`sid_fn` needs a content-embedding input; the contract has none")
    if (codes_fn is None) != (codes_contract is None):
      raise ValueError(
        "`codes_fn` and `codes_contract` go together. Received: "
        f"codes_fn={codes_fn!r}, codes_contract={codes_contract!r}"
      )
    if codes_contract is not None and codes_contract.output_names != contract.output_names:
      raise ValueError(
        "`codes_contract` must have the outputs of `contract`. Received: "
        f"{codes_contract.output_names} and {contract.output_names}"
      )
    self._predict_fn = predict_fn
    self._sid_fn = sid_fn
    self._codes_fn = codes_fn
    self.contract = contract
    self.codes_contract = codes_contract
    self.tracked = dict(trackables or {})

  def signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
    """The concrete functions to pass as `signatures=` to `tf.saved_model.save`."""
    contract = self.contract
    order = sorted(contract.input_specs)

    def serve(*tensors):
      return predict_outputs(self._predict_fn, dict(zip(order, tensors)), contract)

    def serve_examples(examples):
      examples = check_example_count(examples, contract.max_batch_size)
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
    if self._codes_fn is not None:
      codes_contract = self.codes_contract
      codes_order = sorted(codes_contract.input_specs)

      def serve_codes(*tensors):
        features = dict(zip(codes_order, tensors))
        return predict_outputs(self._codes_fn, features, codes_contract)

      signatures[SIGNATURE_CODES] = tf.function(
        serve_codes, input_signature=codes_contract.named_specs()
      )
    return {name: fn.get_concrete_function() for name, fn in signatures.items()}

  def _semantic_id(self, embedding: tf.Tensor) -> dict[str, tf.Tensor]:
    key = self.contract.embedding_key
    spec = {key: self.contract.input_specs[key]}
    embedding = validate_inputs({key: embedding}, spec, self.contract.max_batch_size)[key]
    codes = tf.cast(self._sid_fn(embedding), tf.int32)
    return {CODES_KEY: tf.identity(codes, name=CODES_KEY)}

  def save(self, export_dir: str) -> None:
    """Writes a SavedModel with all signatures to `export_dir` (new, or an empty folder)."""
    tf.saved_model.save(self, export_dir, signatures=self.signatures())
