r"""Assigns semantic IDs with Apache Beam: sharded item files -> a sharded SID table + manifest.

  python -m trainers.beam_assign_sids --input='data/items-*.tfrecord' --output=runs/sids \
      --rqvae_dir=runs/rqvae/model [--collision_level] [--overwrite] \
      --direct_num_workers=2 --direct_running_mode=multi_processing   # any Beam pipeline options

The Beam counterpart of `trainers.assign_sids`, for catalogues that do not fit one machine; its
codes equal that job's exactly (both run `model.semantic_id_encoder.assign_codes`, the one SID
loop, with the same padded batch size). Flags this job does not define are Beam pipeline options
(`--runner`, `--direct_num_workers`, `--project`, ...); they may also follow a `--`.

Input (`--input`, a glob; `--input_format` auto-detects from the file names): sharded TFRecord files
of `tf.Example`s (gzip allowed) or Parquet files, each row an item: `item_id` one int64 and
`content_embedding` D floats (`--id_feature`, `--embedding_feature` rename them).

Pipeline: read (each file split across workers) -> batch (`BatchElements`) -> parse and validate ->
encode (a `DoFn` whose `setup` loads the frozen RQ-VAE once per worker and checks its fingerprint)
-> group by shard of the item id (repeated item ids found here) -> [--collision_level: group by
full SID (a hash of it), number the items of each SID by ascending item id, group by shard again]
-> write each shard -> write the manifest. A row with a missing or malformed id or embedding goes to
the dead-letter output with its reason (`DeadLetterReason`) and source file, never dropped silently.

Output (`--output=PREFIX`; paths may be gs://, hdfs://, ...):
  PREFIX-RUN-SSSSS-of-NNNNN.npz           one SID table per shard (`features.sid_table` format,
                                          sorted by item id, its own checksum)
  PREFIX-RUN.dead_letter-SSSSS-of-NNNNN.jsonl   rejected rows: {item_id, reason, detail, source}
  PREFIX.manifest.json                    written last (atomically), by the pipeline itself: RQ-VAE
                                          fingerprint, L, K, item count, one entry per shard (file,
                                          items, checksum), dead-letter count by reason and files
  PREFIX.stats.json                       SID quality (as trainers.assign_sids), after the run
RUN is a fresh id per run. A reader follows the manifest, so it never sees a half-written table:
`features.sid_table.read_sid_table(PREFIX)` reads the shards as one table wherever a SID table is
read (e.g. `trainers.train_spm --sids=PREFIX`). An existing table at PREFIX is refused; with
--overwrite the new run's shards are written next to the old ones, the manifest is swapped in (one
atomic rename: readers see the old table or the new one) and the old run's files are then deleted.
"""

import os
import sys
import time
import uuid
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import tensorflow as tf
from absl import app, flags, logging

from features import feature_spec, io_utils, sid_table
from model import rqvae, rqvae_metrics
from trainers import beam_items, beam_sid_pipeline, cli
from trainers.beam_items import beam  # Beam, behind beam_items' clear ImportError.

FLAGS = flags.FLAGS
STATS_SUFFIX = ".stats.json"


def define_flags() -> None:
  """The job's flags (defined when run as a program, so importing this module defines none)."""
  flags.DEFINE_string("input", None, "Glob of the item files (TFRecord of tf.Example, or Parquet).")
  flags.DEFINE_enum(
    "input_format",
    "auto",
    [f.value for f in beam_items.InputFormat],
    "Input format (auto: by file name).",
  )
  flags.DEFINE_string("output", None, "Prefix of the sharded SID table (PREFIX.manifest.json ...).")
  flags.DEFINE_string("rqvae_dir", None, "The RQ-VAE directory written by train_rqvae (DIR/model).")
  flags.DEFINE_bool("collision_level", False, "Add TIGER's collision index (unique ID per item).")
  flags.DEFINE_integer("batch_size", 2048, "Items per encoding batch (as trainers.assign_sids).")
  flags.DEFINE_integer("num_shards", 4, "Shards of the SID table.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing table at --output (atomically).")
  flags.DEFINE_string("id_feature", feature_spec.ITEM_ID, "Name of the item id feature/column.")
  flags.DEFINE_string(
    "embedding_feature", feature_spec.CONTENT_EMBEDDING, "Name of the embedding feature/column."
  )


def load_rqvae(rqvae_dir: str) -> Tuple[str, rqvae.RQVAE]:
  """(the model directory, the RQ-VAE) of `--rqvae_dir` (train_rqvae's DIR or DIR/model)."""
  nested = os.path.join(rqvae_dir, "model")
  if not tf.io.gfile.exists(os.path.join(rqvae_dir, rqvae.CONFIG_FILE)) and tf.io.gfile.isdir(
    nested
  ):
    rqvae_dir = nested
  try:
    return rqvae_dir, rqvae.load_rqvae(rqvae_dir)
  except rqvae.RQVAEFormatError as e:
    raise app.UsageError(f"--rqvae_dir={rqvae_dir}: {e}") from e


def check_output(prefix: str, overwrite: bool) -> None:
  """Refuses an existing table at `prefix` unless `overwrite`, and a prefix that is a folder."""
  if tf.io.gfile.isdir(prefix):
    raise app.UsageError(
      f"--output={prefix} is a folder; pass a file prefix inside it, e.g. {prefix}/sids."
    )
  manifest = prefix + sid_table.MANIFEST_SUFFIX
  if tf.io.gfile.exists(manifest) and not overwrite:
    raise FileExistsError(
      f"--output={prefix} already holds a SID table ({manifest}); pass --overwrite to replace it "
      "(the old table stays readable until the new one is complete), or choose another prefix."
    )


def pipeline_args(argv: Sequence[str], known: Iterable[str]) -> List[str]:
  """`argv` with every flag this process does not define moved behind `--`, where absl leaves it
  for Beam (`--runner=...`, `--direct_num_workers 2`)."""
  known = set(known) | {"help", "helpshort", "helpfull", "helpxml"}
  ours, beams = [argv[0]], []
  args = list(argv[1:])
  while args:
    arg = args.pop(0)
    if arg == "--":
      beams += args
      break
    name = arg.lstrip("-").split("=", 1)[0]
    if not arg.startswith("-") or name in known or (name[:2] == "no" and name[2:] in known):
      ours.append(arg)
      continue
    beams.append(arg)
    if "=" not in arg and args and not args[0].startswith("-"):
      beams.append(args.pop(0))
  return ours + (["--", *beams] if beams else [])


def run(
  pattern: str, prefix: str, rqvae_dir: str, beam_args: Sequence[str], **options
) -> Dict[str, Any]:
  """Runs the pipeline (blocking) and returns its manifest; `options`: input_format, num_shards,
  batch_size, collision_level, overwrite, id_feature, embedding_feature (the flags)."""
  fmt, files = beam_items.resolve_format(pattern, options.get("input_format", "auto"))
  check_output(prefix, options.get("overwrite", False))
  model_dir, model = load_rqvae(rqvae_dir)
  config = model.config
  meta = {
    "fingerprint": rqvae.fingerprint(model),
    "num_levels": config.num_levels,
    "codebook_size": config.codebook_size,
    "input_dim": config.input_dim,
    "has_collision_index": bool(options.get("collision_level", False)),
    "num_shards": options.get("num_shards", 4),
    "rqvae_dir": os.path.abspath(model_dir),
    "input": pattern,
    "input_format": fmt.value,
    "input_files": len(files),
  }
  project_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
  if project_root not in paths:  # So local multi-process workers import this project.
    os.environ["PYTHONPATH"] = os.pathsep.join([project_root, *paths])
  run_id = uuid.uuid4().hex[:12]
  beam_args = list(beam_args)
  if not any(a.startswith("--default_sdk_harness_log_level") for a in beam_args):
    beam_args.append("--default_sdk_harness_log_level=WARNING")
  try:
    _run_pipeline(
      beam.options.pipeline_options.PipelineOptions(beam_args),
      pattern,
      fmt,
      prefix,
      meta,
      run_id,
      options,
    )
  except BaseException:
    beam_sid_pipeline.remove_failed_run(prefix, run_id)
    raise
  return sid_table.read_manifest(prefix)


def _run_pipeline(beam_options, pattern, fmt, prefix, meta, run_id, options) -> None:
  with beam.Pipeline(options=beam_options) as pipeline:
    beam_sid_pipeline.build_pipeline(
      pipeline, pattern, fmt, prefix, meta["rqvae_dir"], meta, run_id, meta["num_shards"],
      options.get("batch_size", 2048), meta["has_collision_index"],
      options.get("id_feature", feature_spec.ITEM_ID),
      options.get("embedding_feature", feature_spec.CONTENT_EMBEDDING),
    )  # fmt: skip


def main(argv):
  for name in ("input", "output", "rqvae_dir"):
    if not FLAGS[name].value:
      raise app.UsageError(f"--{name} is required.")
  for name in ("batch_size", "num_shards"):
    cli_value = FLAGS[name].value
    if cli_value <= 0:
      raise app.UsageError(f"--{name} must be positive. Received: --{name}={cli_value}")
  logging.set_verbosity(logging.WARNING)
  start = time.perf_counter()
  manifest = run(
    FLAGS.input,
    FLAGS.output,
    FLAGS.rqvae_dir,
    argv[1:],
    input_format=FLAGS.input_format,
    num_shards=FLAGS.num_shards,
    batch_size=FLAGS.batch_size,
    collision_level=FLAGS.collision_level,
    overwrite=FLAGS.overwrite,
    id_feature=FLAGS.id_feature,
    embedding_feature=FLAGS.embedding_feature,
  )
  seconds = time.perf_counter() - start
  table = sid_table.read_sid_table(FLAGS.output, expected_fingerprint=manifest["fingerprint"])
  stats = rqvae_metrics.sid_stats(table.codes, manifest["codebook_size"])
  stats.update(
    n_items=manifest["n_items"],
    dead_letter=manifest["dead_letter"],
    seconds=seconds,
    items_per_second=manifest["n_items"] / max(seconds, 1e-9),
    fingerprint=manifest["fingerprint"],
  )
  io_utils.write_json(FLAGS.output + STATS_SUFFIX, stats)
  dead = manifest["dead_letter"]
  print(
    f"wrote {FLAGS.output}{sid_table.MANIFEST_SUFFIX}: {manifest['n_items']:,} items in "
    f"{len(manifest['shards'])} shards, L={manifest['num_levels']}, "
    f"K={manifest['codebook_size']}, unique-SID fraction {stats['unique_sid_fraction']:.3f}, "
    f"{dead['count']:,} rows in the dead-letter output {dead['by_reason']} "
    f"({stats['items_per_second']:,.0f} items/s); stats: {FLAGS.output}{STATS_SUFFIX}"
  )


if __name__ == "__main__":
  define_flags()
  sys.argv = pipeline_args(sys.argv, FLAGS)
  cli.run(main)
