"""SID tables on disk: item id -> semantic ID codes (and collision index), with a manifest.

One `.npz` file holds `item_id` int64[N], `codes` int32[N, L], optionally `collision_index`
int32[N], and `manifest`, a JSON string: the fingerprint of the RQ-VAE that made the codes,
`num_levels`, `codebook_size`, `n_items`, `checksum` (sha256 of the arrays) and `format_version`,
plus anything the writer adds. `write_sid_table` writes atomically (temp file in the same directory,
then `os.replace`); `read_sid_table` verifies the checksum, shapes and code range, and, when given,
that the fingerprint is the expected one. The fingerprint is computed in `model/`
(`model.rqvae.fingerprint`) and passed here as a string: `features/` never imports `model/`.

A sharded table (written by the Beam job `trainers.beam_assign_sids`) is a set of such `.npz`
shards plus one manifest, `PREFIX.manifest.json`, written last: the shared fields above (without
`checksum`), and `shards`, one entry per shard file (its name relative to the manifest's folder,
`n_items` and `checksum`). `read_sid_table(PREFIX)` (or the manifest's path) reads it as one table,
sorted by item id, verifying every shard as above plus its entry in the manifest, and the totals;
the shards of a run carry the run's id in their names, so a reader never mixes two runs. Paths go
through `tf.io.gfile`, so gs:// and hdfs:// tables read too.
"""

import dataclasses
import hashlib
import io
import json
import os
import zipfile
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf

from features import io_utils

FORMAT_VERSION = 1
_ARRAYS = ("item_id", "codes", "collision_index")
MANIFEST_SUFFIX = ".manifest.json"
SHARDED_KIND = "sharded_sid_table"
_SHARED_FIELDS = ("fingerprint", "num_levels", "codebook_size", "has_collision_index")


class SidTableError(ValueError):
  """Raised when a SID table is missing, corrupt, or was made by another RQ-VAE."""


@dataclasses.dataclass
class SidTable:
  """Semantic IDs of a catalogue.

  Attributes:
    item_ids: int64[N]. Unique item ids.
    codes: int32[N, L]. SIDs, coarse to fine, aligned with `item_ids`.
    collision_index: Optional int32[N]. TIGER's extra level (unique per item with `codes`), or None.
    manifest: dict. At least `fingerprint`, `num_levels`, `codebook_size`, `n_items`, `checksum`.
  """

  item_ids: np.ndarray
  codes: np.ndarray
  collision_index: Optional[np.ndarray] = None
  manifest: Dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def num_levels(self) -> int:
    return int(self.codes.shape[1])

  @property
  def fingerprint(self) -> str:
    return str(self.manifest.get("fingerprint", ""))

  def lookup(self, item_ids: np.ndarray) -> np.ndarray:
    """Rows of the table for `item_ids`; -1 where an id is not in the table."""
    item_ids = np.asarray(item_ids, np.int64)
    order = np.argsort(self.item_ids, kind="stable")
    sorted_ids = self.item_ids[order]
    if len(sorted_ids) == 0:
      return np.full(len(item_ids), -1, np.int64)
    pos = np.clip(np.searchsorted(sorted_ids, item_ids), 0, len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == item_ids, order[pos], -1)

  def codes_for(self, item_ids: np.ndarray) -> np.ndarray:
    """int32[len(item_ids), L] codes; raises SidTableError naming ids that are not in the table."""
    rows = self.lookup(item_ids)
    if (rows < 0).any():
      missing = np.asarray(item_ids)[rows < 0]
      raise SidTableError(
        f"{len(missing)} item ids have no SID in the table, e.g. {missing[:5].tolist()}."
      )
    return self.codes[rows]


def checksum(item_ids: np.ndarray, codes: np.ndarray, collisions: Optional[np.ndarray]) -> str:
  """sha256 of the arrays' shapes and little-endian bytes."""
  digest = hashlib.sha256()
  for name, array, dtype in (
    ("item_id", item_ids, "<i8"),
    ("codes", codes, "<i4"),
    ("collision_index", collisions, "<i4"),
  ):
    if array is None:
      continue
    array = np.ascontiguousarray(np.asarray(array, dtype=dtype))
    digest.update(f"{name}{array.shape};".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def _check_arrays(table: SidTable, codebook_size: Optional[int], where: str) -> None:
  ids, codes, coll = table.item_ids, table.codes, table.collision_index
  if ids.ndim != 1 or codes.ndim != 2 or len(ids) != len(codes):
    raise SidTableError(
      f"{where}: item_ids must be [N] and codes [N, L] with the same N. Received shapes "
      f"{ids.shape} and {codes.shape}."
    )
  if coll is not None and coll.shape != ids.shape:
    raise SidTableError(
      f"{where}: collision_index must be [N]={ids.shape}. Received shape {coll.shape}."
    )
  if len(np.unique(ids)) != len(ids):
    raise SidTableError(f"{where}: item ids are not unique.")
  if codebook_size is not None and codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
    raise SidTableError(
      f"{where}: codes must lie in [0, {codebook_size}). Received range "
      f"[{codes.min()}, {codes.max()}]."
    )


def make_table(
  item_ids: np.ndarray,
  codes: np.ndarray,
  *,
  fingerprint: str,
  codebook_size: int,
  collision_index: Optional[np.ndarray] = None,
  extra: Optional[Dict[str, Any]] = None,
) -> SidTable:
  """A SidTable with its manifest filled in (checksum included)."""
  ids = np.asarray(item_ids, np.int64)
  codes = np.asarray(codes, np.int32)
  coll = None if collision_index is None else np.asarray(collision_index, np.int32)
  manifest = dict(extra or {})
  manifest.update(
    {
      "format_version": FORMAT_VERSION,
      "fingerprint": fingerprint,
      "num_levels": int(codes.shape[1]) if codes.ndim == 2 else 0,
      "codebook_size": int(codebook_size),
      "n_items": int(len(ids)),
      "has_collision_index": coll is not None,
      "checksum": checksum(ids, codes, coll),
    }
  )
  table = SidTable(ids, codes, coll, manifest)
  _check_arrays(table, codebook_size, "make_table")
  return table


def write_sid_table(path: str, table: SidTable) -> None:
  """Writes `table` to `path` (.npz) atomically, recomputing the manifest's checksum and counts."""
  table = make_table(
    table.item_ids,
    table.codes,
    fingerprint=table.manifest.get("fingerprint", ""),
    codebook_size=table.manifest.get("codebook_size", int(np.max(table.codes, initial=0)) + 1),
    collision_index=table.collision_index,
    extra=table.manifest,
  )
  arrays = {"item_id": table.item_ids, "codes": table.codes}
  if table.collision_index is not None:
    arrays["collision_index"] = table.collision_index
  arrays["manifest"] = np.array(json.dumps(table.manifest, sort_keys=True))
  io_utils.write_npz(path, **arrays)


def read_manifest(path: str) -> Dict[str, Any]:
  """The manifest of the table at `path` (a .npz file, or a sharded table's prefix or manifest),
  without verifying the arrays."""
  manifest_path = sharded_manifest_path(path)
  if manifest_path is not None:
    return _read_sharded_manifest(manifest_path)
  return _load(path)[1]


def sharded_manifest_path(path: str) -> Optional[str]:
  """The manifest of the sharded table that `path` names (its prefix or the manifest itself), or
  None when `path` is not a sharded table."""
  if path.endswith(MANIFEST_SUFFIX):
    return path
  candidate = path + MANIFEST_SUFFIX
  return candidate if tf.io.gfile.exists(candidate) else None


def shard_file_name(prefix: str, run_id: str, shard: int, num_shards: int) -> str:
  """Path of one shard of a sharded table: `PREFIX-RUN-SSSSS-of-NNNNN.npz`."""
  return f"{prefix}-{run_id}-{shard:05d}-of-{num_shards:05d}.npz"


def write_sharded_manifest(prefix: str, manifest: Dict[str, Any]) -> str:
  """Writes `PREFIX.manifest.json` atomically (the commit point of a sharded table: write it after
  every shard); returns its path."""
  path = prefix + MANIFEST_SUFFIX
  io_utils.write_json(path, dict(manifest, kind=SHARDED_KIND, format_version=FORMAT_VERSION))
  return path


def _read_sharded_manifest(path: str) -> Dict[str, Any]:
  if not tf.io.gfile.exists(path):
    raise SidTableError(
      f"No sharded SID table at {path!r}. Write one with trainers.beam_assign_sids --output=..."
    )
  try:
    with tf.io.gfile.GFile(path) as f:
      manifest = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise SidTableError(f"Sharded SID table manifest {path!r} is corrupt: {e}") from e
  missing = [k for k in (*_SHARED_FIELDS, "n_items", "shards") if k not in manifest]
  if manifest.get("kind") != SHARDED_KIND or missing:
    raise SidTableError(
      f"{path!r} is not a sharded SID table manifest: kind={manifest.get('kind')!r}, missing "
      f"fields {missing}."
    )
  return manifest


def _read_shard(entry: Dict[str, Any], folder: str, manifest: Dict[str, Any], where: str):
  name = entry.get("path", "")
  shard = read_sid_table(os.path.join(folder, name), manifest.get("fingerprint"))
  differing = [k for k in _SHARED_FIELDS if shard.manifest.get(k) != manifest.get(k)]
  if shard.manifest.get("checksum") != entry.get("checksum"):
    differing.append("checksum")
  if len(shard.item_ids) != entry.get("n_items"):
    differing.append("n_items")
  if differing:
    raise SidTableError(
      f"{where}: shard {name!r} does not match its manifest entry (fields {differing}): it was "
      "replaced or belongs to another run."
    )
  return shard


def _read_sharded(path: str, expected_fingerprint: Optional[str]) -> SidTable:
  manifest = _read_sharded_manifest(path)
  where = f"Sharded SID table {path!r}"
  if expected_fingerprint is not None and manifest["fingerprint"] != expected_fingerprint:
    raise SidTableError(
      f"{where} was made by another RQ-VAE: its fingerprint is {manifest['fingerprint']!r}, "
      f"expected {expected_fingerprint!r}. Re-run trainers.beam_assign_sids with the RQ-VAE you "
      "use."
    )
  folder = os.path.dirname(path)
  shards: List[SidTable] = [_read_shard(e, folder, manifest, where) for e in manifest["shards"]]
  num_levels = int(manifest["num_levels"])
  ids = np.concatenate([s.item_ids for s in shards] + [np.zeros(0, np.int64)])
  codes = np.concatenate([s.codes for s in shards] + [np.zeros((0, num_levels), np.int32)])
  coll = None
  if manifest["has_collision_index"]:
    coll = np.concatenate([s.collision_index for s in shards] + [np.zeros(0, np.int32)])
  order = np.argsort(ids, kind="stable")
  table = SidTable(ids[order], codes[order], None if coll is None else coll[order], manifest)
  _check_arrays(table, manifest["codebook_size"], where)
  if len(ids) != manifest["n_items"]:
    raise SidTableError(
      f"{where} is corrupt: the manifest says n_items={manifest['n_items']}; its shards hold "
      f"{len(ids)}."
    )
  table.manifest = dict(
    manifest, checksum=checksum(table.item_ids, table.codes, table.collision_index)
  )
  return table


def _load(path: str):
  if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
    raise SidTableError(
      f"No SID table at {path!r}. Write one with trainers.assign_sids --output=..."
    )
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      raw = f.read()
    with np.load(io.BytesIO(raw), allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files}
    manifest = json.loads(str(arrays.pop("manifest")))
  except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as e:
    raise SidTableError(f"SID table {path!r} is corrupt or not a SID table: {e}") from e
  missing = [k for k in ("item_id", "codes") if k not in arrays]
  if missing:
    raise SidTableError(f"SID table {path!r} is corrupt: arrays {missing} are missing.")
  return arrays, manifest


def read_sid_table(path: str, expected_fingerprint: Optional[str] = None) -> SidTable:
  """Reads and verifies a table written by `write_sid_table`, or a sharded one.

  Args:
    path: str. The .npz file, or a sharded table's prefix or `PREFIX.manifest.json` (written by
      `trainers.beam_assign_sids`; read as one table sorted by item id, its manifest's `checksum`
      computed over the merged arrays).
    expected_fingerprint: Optional str. The fingerprint of the RQ-VAE the caller uses; a table made
      by another RQ-VAE is refused. Defaults to None (not checked).

  Raises:
    SidTableError: if the file (or a shard) is missing or corrupt (unreadable, checksum or shape
      mismatch, a shard that does not match its manifest entry, item ids repeated across shards),
      or its fingerprint differs from `expected_fingerprint`.
  """
  manifest_path = sharded_manifest_path(path)
  if manifest_path is not None:
    return _read_sharded(manifest_path, expected_fingerprint)
  arrays, manifest = _load(path)
  table = SidTable(
    arrays["item_id"].astype(np.int64, copy=False),
    arrays["codes"].astype(np.int32, copy=False),
    arrays.get("collision_index"),
    manifest,
  )
  actual = checksum(table.item_ids, table.codes, table.collision_index)
  if manifest.get("checksum") != actual:
    raise SidTableError(
      f"SID table {path!r} is corrupt: checksum {actual} does not match the manifest's "
      f"{manifest.get('checksum')}."
    )
  _check_arrays(table, manifest.get("codebook_size"), f"SID table {path!r}")
  if (
    manifest.get("n_items") != len(table.item_ids) or manifest.get("num_levels") != table.num_levels
  ):
    raise SidTableError(
      f"SID table {path!r} is corrupt: manifest says n_items={manifest.get('n_items')}, "
      f"num_levels={manifest.get('num_levels')}; arrays hold {len(table.item_ids)} x "
      f"{table.num_levels}."
    )
  if expected_fingerprint is not None and manifest.get("fingerprint") != expected_fingerprint:
    raise SidTableError(
      f"SID table {path!r} was made by another RQ-VAE: its fingerprint is "
      f"{manifest.get('fingerprint')!r}, expected {expected_fingerprint!r}. Re-run "
      "trainers.assign_sids with the RQ-VAE you use."
    )
  return table
