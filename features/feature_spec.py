"""The one place that names every model input, label and output (name, dtype, shape).

The tf.data pipelines (`features.pipeline`, `features.history`), the item representations, the user
tower and the ranker (`model/`), the serving signatures, the `tf.Example` parsing spec and the
warm-up requests (`export/`) and the client all read the names and specs from here, as TFX's schema
does for a TFX pipeline.

Shapes are per example (no batch dimension); `D` is the content-embedding width and `H` the history
length, both fixed by the data and the ranker's config; `L` is the SID length and `T` the most
subword tokens an item has (both fixed by the item representation):

| name                        | dtype   | shape  | what                                         |
|-----------------------------|---------|--------|----------------------------------------------|
| `user_id`                   | string  | []     | the user (hashed by the user tower)          |
| `item_id`                   | string  | []     | the candidate item (hashed by `hash`)        |
| `content_embedding`         | float32 | [D]    | the candidate's content embedding            |
| `history_item_id`           | string  | [H]    | the user's last H clicked items, "" = pad    |
| `history_content_embedding` | float32 | [H, D] | their content embeddings (zeros = padding)   |
| `history_mask`              | float32 | [H]    | 1 for a real history item, 0 for padding     |
| `click`                     | float32 | []     | label of the click task                      |
| `second_label`              | float32 | []     | label of the second task                     |
| `ctr`                       | float32 | []     | output: p(click)                             |
| `codes`                     | int32   | [L]    | the candidate's SID: output of `semantic_id`,|
|                             |         |        | input of `predict_codes`                     |
| `history_codes`             | int32   | [H, L] | the history items' SIDs (zeros = padding)    |
| `sid_tokens`                | int64   | [T]    | training cache: the candidate's subword ids  |
|                             |         |        | (-1 = no token)                              |
| `history_sid_tokens`        | int64   | [H, T] | training cache: the history items' ids       |

Example:
>>> serving_specs(["user_id", "content_embedding"], content_dim=4)["content_embedding"]
TensorSpec(shape=(None, 4), dtype=tf.float32, name='content_embedding')
"""

import dataclasses
from typing import Dict, Iterable, Optional, Tuple

import tensorflow as tf

USER_ID = "user_id"
ITEM_ID = "item_id"
CONTENT_EMBEDDING = "content_embedding"
HISTORY_PREFIX = "history_"
HISTORY_ITEM_ID = HISTORY_PREFIX + ITEM_ID
HISTORY_CONTENT_EMBEDDING = HISTORY_PREFIX + CONTENT_EMBEDDING
HISTORY_MASK = "history_mask"
TIMESTAMP = "timestamp"
CLICK = "click"
SECOND_LABEL = "second_label"
CTR = "ctr"
CODES = "codes"
HISTORY_CODES = HISTORY_PREFIX + CODES
SID_TOKENS = "sid_tokens"
HISTORY_SID_TOKENS = HISTORY_PREFIX + SID_TOKENS

LABELS = (CLICK, SECOND_LABEL)
# Symbolic dimensions of the shapes below.
D = "D"
H = "H"
L = "L"
T = "T"


@dataclasses.dataclass(frozen=True)
class Feature:
  """One named tensor of the contract.

  Attributes:
    name: str. The key in feature dicts, signatures and `tf.Example`s.
    dtype: tf.DType.
    shape: tuple of int or str. Per-example shape; "D", "H", "L" and "T" stand for the content
      width, the history length, the SID length and the most subword tokens per item.
    doc: str. What it holds.
  """

  name: str
  dtype: tf.DType
  shape: Tuple = ()
  doc: str = ""

  def tensor_spec(self, content_dim: Optional[int] = None, history_length: Optional[int] = None):
    """The batch-major `tf.TensorSpec` ([None, ...]) with the symbolic dimensions filled in; an
    unknown symbol becomes None."""
    sizes = {D: content_dim, H: history_length}
    dims = [sizes.get(d) if isinstance(d, str) else d for d in self.shape]
    return tf.TensorSpec([None, *dims], self.dtype, name=self.name)


FEATURES: Dict[str, Feature] = {
  f.name: f
  for f in (
    Feature(USER_ID, tf.string, (), "the user id"),
    Feature(ITEM_ID, tf.string, (), "the candidate item id"),
    Feature(CONTENT_EMBEDDING, tf.float32, (D,), "the candidate's content embedding"),
    Feature(HISTORY_ITEM_ID, tf.string, (H,), "last H clicked item ids, '' for padding"),
    Feature(HISTORY_CONTENT_EMBEDDING, tf.float32, (H, D), "their content embeddings"),
    Feature(HISTORY_MASK, tf.float32, (H,), "1 for a real history item, 0 for padding"),
    Feature(TIMESTAMP, tf.int64, (), "Unix seconds of the interaction"),
    Feature(CLICK, tf.float32, (), "click label (0/1)"),
    Feature(SECOND_LABEL, tf.float32, (), "second task's label"),
    Feature(CODES, tf.int32, (L,), "the candidate's semantic ID, coarse to fine"),
    Feature(HISTORY_CODES, tf.int32, (H, L), "the history items' semantic IDs"),
    Feature(SID_TOKENS, tf.int64, (T,), "cached subword ids of the candidate, -1 = no token"),
    Feature(HISTORY_SID_TOKENS, tf.int64, (H, T), "cached subword ids of the history items"),
  )
}


def history_key(item_key: str) -> str:
  """The history input carrying item feature `item_key` for every history item."""
  return HISTORY_PREFIX + item_key


def is_history_key(key: str) -> bool:
  return key.startswith(HISTORY_PREFIX)


def serving_specs(
  keys: Iterable[str], content_dim: int, history_length: Optional[int] = None
) -> Dict[str, tf.TensorSpec]:
  """Batch-major TensorSpecs of the inputs `keys`, in the order given.

  Args:
    keys: input names (each one of `FEATURES`).
    content_dim: int. D.
    history_length: Optional int. H; None leaves the history axis variable.

  Raises:
    KeyError: if a key is not a declared feature.
  """
  unknown = [k for k in keys if k not in FEATURES]
  if unknown:
    raise KeyError(f"Undeclared features {unknown}; declared: {sorted(FEATURES)}")
  return {k: FEATURES[k].tensor_spec(content_dim, history_length) for k in keys}
