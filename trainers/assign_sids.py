"""Assigns a semantic ID to every item with a trained RQ-VAE and writes the SID table.

  python -m trainers.assign_sids --rqvae_dir=runs/rqvae/model --dataset=movielens \
      --output=runs/sids.npz [--collision_level]

The table (`features.sid_table`, one .npz written atomically) holds item_id, codes int32[N, L]
and, with --collision_level, TIGER's extra level that numbers items sharing a full SID. Its manifest
records the RQ-VAE fingerprint, L, K, the item count and a checksum, so a reader using another
RQ-VAE, or a corrupt file, fails with a clear error. Also prints and writes (--stats_json, default
OUTPUT.stats.json) the assignment's quality: unique-SID fraction, largest SID group, per-level
utilization and perplexity.
"""

import os
import time

import numpy as np
from absl import app, flags, logging

from features import io_utils, schema, sid_table
from model import rqvae, rqvae_metrics, semantic_id_encoder, sid_collisions
from trainers import cli, data_flags

data_flags.define()
flags.DEFINE_string("rqvae_dir", None, "The RQ-VAE directory written by train_rqvae (DIR/model).")
flags.DEFINE_string("output", None, "Path of the SID table (.npz) to write.")
flags.DEFINE_bool("collision_level", False, "Add TIGER's collision index (unique ID per item).")
flags.DEFINE_integer("batch_size", 2048, "Items per encoding batch.")
flags.DEFINE_string(
  "stats_json", None, "Where to write the SID quality (default: OUTPUT.stats.json)."
)
FLAGS = flags.FLAGS


def load_encoder(rqvae_dir: str):
  """(SemanticIdEncoder, fingerprint) of the RQ-VAE saved in `rqvae_dir`."""
  nested = os.path.join(rqvae_dir, "model")
  if not os.path.exists(os.path.join(rqvae_dir, rqvae.CONFIG_FILE)) and os.path.isdir(nested):
    rqvae_dir = nested  # Accept train_rqvae's --output_dir as well as its model/ folder.
  try:
    model = rqvae.load_rqvae(rqvae_dir)
  except rqvae.RQVAEFormatError as e:
    raise app.UsageError(f"--rqvae_dir={rqvae_dir}: {e}") from e
  return semantic_id_encoder.SemanticIdEncoder.from_rqvae(model), rqvae.fingerprint(model)


def assign(
  encoder: semantic_id_encoder.SemanticIdEncoder, embeddings: np.ndarray, batch_size: int
) -> np.ndarray:
  """codes int32[N, L] for `embeddings` [N, D], batch by batch with a progress bar."""
  try:
    return encoder.assign_codes(embeddings, batch_size, progress=True)
  except ValueError as e:
    raise app.UsageError(str(e)) from e


def build_table(dataset: schema.Dataset, rqvae_dir: str, batch_size: int, collision_level: bool):
  """(SidTable, stats) for every item of `dataset`."""
  encoder, digest = load_encoder(rqvae_dir)
  start = time.perf_counter()
  codes = assign(encoder, dataset.embeddings, batch_size)
  seconds = time.perf_counter() - start
  collisions = sid_collisions.collision_index(codes) if collision_level else None
  table = sid_table.make_table(
    dataset.items["item_id"].to_numpy(),
    codes,
    fingerprint=digest,
    codebook_size=encoder.codebook_size,
    collision_index=collisions,
    extra={"rqvae_dir": os.path.abspath(rqvae_dir), "data": data_flags.describe()},
  )
  stats = rqvae_metrics.sid_stats(codes, encoder.codebook_size)
  stats.update(
    n_items=int(len(codes)),
    seconds=seconds,
    items_per_second=len(codes) / max(seconds, 1e-9),
    fingerprint=digest,
  )
  if collisions is not None:
    stats["collision_level_size"] = sid_collisions.collision_level_size(collisions)
  return table, stats


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.rqvae_dir or not FLAGS.output:
    raise app.UsageError("--rqvae_dir and --output are required.")
  if FLAGS.batch_size <= 0:
    raise app.UsageError(
      f"--batch_size must be positive. Received: --batch_size={FLAGS.batch_size}"
    )
  logging.set_verbosity(logging.WARNING)
  table, stats = build_table(
    data_flags.load(), FLAGS.rqvae_dir, FLAGS.batch_size, FLAGS.collision_level
  )
  sid_table.write_sid_table(FLAGS.output, table)
  stats_path = FLAGS.stats_json or FLAGS.output + ".stats.json"
  io_utils.write_json(stats_path, stats)
  print(
    f"wrote {FLAGS.output}: {stats['n_items']:,} items, L={table.num_levels}, "
    f"K={table.manifest['codebook_size']}, unique-SID fraction {stats['unique_sid_fraction']:.3f}, "
    f"max items per SID {stats['max_items_per_sid']}, utilization per level "
    f"{[round(u, 3) for u in stats['utilization']]} ({stats['items_per_second']:,.0f} items/s); "
    f"stats: {stats_path}"
  )


if __name__ == "__main__":
  cli.run(main)
