"""The item-representation knobs every ranker job shares: `--hybrid_sid_scheme`, `--id_dropout`,
`--token_dropout`, `--table_initializer`.

`define(...)` registers them with a job's defaults (the experiments' measured protocol by default;
`trainers.train_ranker` passes the plain ones); `item_config(...)` turns them into an
`ItemRepresentationConfig`.
"""

from absl import flags

from model import item_representation as item_rep_lib

FLAGS = flags.FLAGS
NAMES = ("hybrid_sid_scheme", "id_dropout", "token_dropout", "table_initializer")


def define(
  hybrid_sid_scheme: str = "unigram",
  id_dropout: float = 0.5,
  token_dropout: float = 0.5,
  table_initializer: str = "zeros",
) -> None:
  """Registers the four flags. The defaults are the experiments' protocol (README)."""
  flags.DEFINE_enum(
    "hybrid_sid_scheme",
    hybrid_sid_scheme,
    [s.value for s in item_rep_lib.SID_SCHEMES],
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
) -> item_rep_lib.ItemRepresentationConfig:
  """The representation of `scheme` at `table_rows` with the flags' knobs (ID dropout: hybrid
  only)."""
  return item_rep_lib.ItemRepresentationConfig(
    scheme=scheme,
    embedding_dim=embedding_dim,
    table_rows=table_rows,
    hybrid_sid_scheme=FLAGS.hybrid_sid_scheme,
    id_dropout=FLAGS.id_dropout
    if item_rep_lib.Scheme(scheme) is item_rep_lib.Scheme.HYBRID
    else 0.0,
    token_dropout=FLAGS.token_dropout,
    table_initializer=FLAGS.table_initializer,
  )


def values() -> dict:
  """The four flags' values, for a job's recorded settings."""
  return {name: FLAGS[name].value for name in NAMES}
