"""The item-representation knobs every ranker job shares: `--hybrid_sid_scheme`, `--id_dropout`,
`--token_dropout`, `--table_initializer`.

`define()` registers them once, with the experiments' measured protocol as defaults (README);
`item_config(...)` turns them into an `ItemRepresentationConfig`.
"""

from absl import flags

from model import item_representation as item_rep_lib
from model import schemes

FLAGS = flags.FLAGS
NAMES = ("hybrid_sid_scheme", "id_dropout", "token_dropout", "table_initializer")


def define(
  hybrid_sid_scheme: str = "unigram",
  id_dropout: float = 0.5,
  token_dropout: float = 0.5,
  table_initializer: str = "zeros",
) -> None:
  """Registers the four flags once. The defaults are the experiments' protocol (README)."""
  if "hybrid_sid_scheme" in FLAGS:
    return
  flags.DEFINE_enum(
    "hybrid_sid_scheme",
    hybrid_sid_scheme,
    list(schemes.sid_scheme_names()),
    "SID part of hybrid (unigram: a larger validation cold-GAUC gain than prefix on MovieLens).",
  )
  flags.DEFINE_float(
    "id_dropout", id_dropout, "hybrid: training-time dropout of the hash-ID vector."
  )
  flags.DEFINE_float(
    "token_dropout",
    token_dropout,
    "SID schemes: training-time dropout of tokens after the first (0.5: chosen on the MovieLens "
    "validation slice).",
  )
  flags.DEFINE_enum(
    "table_initializer",
    table_initializer,
    sorted(item_rep_lib.TABLE_INITIALIZERS),
    "Hash/subword tables start normal(0.05) or at zeros (unreached rows then add nothing).",
  )


def item_config(
  scheme: str, table_rows: int, embedding_dim: int = 32
) -> schemes.ItemRepresentationConfig:
  """The representation of `scheme` at `table_rows` with the flags' knobs (ID dropout: hybrid
  only)."""
  return schemes.ItemRepresentationConfig(
    scheme=scheme,
    embedding_dim=embedding_dim,
    table_rows=table_rows,
    hybrid_sid_scheme=FLAGS.hybrid_sid_scheme,
    id_dropout=FLAGS.id_dropout if scheme == schemes.HYBRID else 0.0,
    token_dropout=FLAGS.token_dropout,
    table_initializer=FLAGS.table_initializer,
  )


def values() -> dict:
  """The four flags' values, for a job's recorded settings."""
  return {name: FLAGS[name].value for name in NAMES}
