"""SID-to-subword schemes side by side: table rows, tokens per item, Fig. 4, in-graph throughput.

  nice .venv/bin/python -m benchmarks.subword_stats --output_dir=runs/bench_subword

Schemes: unigram and bigram n-grams (exact), bigram and prefix-ngram hashed into `--hash_rows`, and
SentencePiece (unigram and BPE models, `--vocab_size` pieces) trained on the SIDs weighted by
impressions. For each: rows of the embedding table, mean and max tokens per item, and tokens per
item by item-popularity decile (the paper's Fig. 4: popular items get fewer, longer SPM pieces).

SIDs: by default `--num_items` (100k) synthetic SIDs with L=8, K=2048: codes depend on the parent
code so items share prefixes, and impressions are Zipf-distributed. With `--sids=TABLE` (and the
data flags, as in `trainers.train_spm`) the row and token figures use that table and the
training-period impressions instead. Throughput is always measured on the synthetic SIDs (L=8,
K=2048): items per second through a `tf.function` of each layer, in batches of `--batch_size`, best
of `--repeats` passes after a warm-up pass.

Writes results.json, results.md and tokens_by_decile.png under `--output_dir`, atomically.
"""

import os
import time
from typing import Any, Dict, List, Tuple

import numpy as np
import tensorflow as tf
import tqdm
from absl import app, flags

from benchmarks import synthetic_sids
from features import io_utils, sid_ngram, sid_prefix_ngram, sid_spm, spm_training
from trainers import (  # train_spm defines --sids, --vocab_size, data flags.
  cli,
  job_flags,
  train_spm,
)

job_flags.define_output_dir("runs/bench_subword", "Where the JSON, markdown and PNG go.")
flags.DEFINE_integer("num_items", 100_000, "Synthetic SIDs for throughput (and stats by default).")
flags.DEFINE_integer("hash_rows", 1 << 20, "Row budget of the hashed bigram and prefix-ngram.")
flags.DEFINE_integer("batch_size", 4096, "Items per tokenization call in the throughput pass.")
flags.DEFINE_integer("repeats", 3, "Timed passes per scheme (the best is reported).")
FLAGS = flags.FLAGS

NUM_LEVELS, CODEBOOK_SIZE = synthetic_sids.NUM_LEVELS, synthetic_sids.CODEBOOK_SIZE


def spm_budget(num_levels: int, codebook_size: int) -> int:
  """--vocab_size when it holds every symbol, else max(2^15, L*K + 1) (with a note)."""
  minimum = num_levels * codebook_size + 1
  if FLAGS.vocab_size and FLAGS.vocab_size >= minimum:
    return FLAGS.vocab_size
  if FLAGS.vocab_size:
    print(
      f"note: --vocab_size={FLAGS.vocab_size} < L*K + 1 = {minimum} for L={num_levels}, "
      f"K={codebook_size}; using {max(1 << 15, minimum)} for these SIDs."
    )
  return max(1 << 15, minimum)


def build_layers(
  codes: np.ndarray, impressions: np.ndarray, num_levels: int, codebook_size: int
) -> Dict[str, tf.keras.layers.Layer]:
  """Every scheme's layer for SIDs of shape [N, num_levels]; SPM models trained on `codes`."""
  budget = spm_budget(num_levels, codebook_size)
  layers = {
    "unigram": sid_ngram.SidNgram(num_levels, codebook_size, 1),
    "bigram": sid_ngram.SidNgram(num_levels, codebook_size, 2),
    "bigram (hashed)": sid_ngram.SidNgram(num_levels, codebook_size, 2, num_rows=FLAGS.hash_rows),
    "prefix-ngram (hashed)": sid_prefix_ngram.SidPrefixNgram(
      num_levels, codebook_size, num_rows=FLAGS.hash_rows
    ),
  }
  for model_type in spm_training.ModelType:
    start = time.perf_counter()
    config = spm_training.SpmTrainingConfig(vocab_size=budget, model_type=model_type)
    proto = spm_training.train_sid_spm(codes, impressions, codebook_size, config)
    name = f"SPM {model_type.value}"
    layers[name] = sid_spm.SidSentencePiece(proto, num_levels, codebook_size)
    print(f"trained {name}: {layers[name].num_rows:,} pieces in {time.perf_counter() - start:.1f}s")
  return layers


def token_stats(
  layer: tf.keras.layers.Layer, codes: np.ndarray, impressions: np.ndarray
) -> Dict[str, Any]:
  """Rows, tokens per item (mean, max, by popularity decile) of one scheme, via the layer."""
  lengths = []
  for start in range(0, len(codes), FLAGS.batch_size):
    ids = layer(tf.constant(codes[start : start + FLAGS.batch_size]))
    lengths.append(ids.row_lengths().numpy())
    if int(tf.reduce_min(ids.flat_values)) < 0 or int(tf.reduce_max(ids.flat_values)) >= (
      layer.num_rows
    ):
      raise AssertionError(f"{layer.name}: ids outside [0, {layer.num_rows}).")
  tokens = np.concatenate(lengths)
  return {
    "num_rows": int(layer.num_rows),
    "tokens_per_item_mean": float(tokens.mean()),
    "tokens_per_item_max": int(tokens.max()),
    "tokens_by_popularity_decile": spm_training.by_popularity_decile(tokens, impressions),
  }


def throughput(layer: tf.keras.layers.Layer, codes: np.ndarray) -> float:
  """Items per second of the layer under `tf.function`, best of `--repeats` timed passes."""
  fn = tf.function(layer, input_signature=[tf.TensorSpec([None, codes.shape[1]], tf.int32)])
  batches = [
    tf.constant(codes[i : i + FLAGS.batch_size]) for i in range(0, len(codes), FLAGS.batch_size)
  ]
  for batch in batches:  # Warm-up: tracing and first-call costs.
    fn(batch).flat_values.numpy()
  best = float("inf")
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    for batch in batches:
      fn(batch).flat_values.numpy()
    best = min(best, time.perf_counter() - start)
  return len(codes) / best


def markdown(results: Dict[str, Any]) -> str:
  lines = [
    f"# SID subword schemes ({results['stats_source']})",
    "",
    "| scheme | table rows | tokens/item mean | max | tokens/item by popularity decile (1 = top) "
    f"| throughput items/s ({results['throughput_items']:,} SIDs, L=8, K=2048) |",
    "|---|---:|---:|---:|---|---:|",
  ]
  for name, row in results["schemes"].items():
    deciles = " ".join(f"{v:.2f}" for v in row["tokens_by_popularity_decile"])
    lines.append(
      f"| {name} | {row['num_rows']:,} | {row['tokens_per_item_mean']:.2f} | "
      f"{row['tokens_per_item_max']} | {deciles} | {row['items_per_second']:,.0f} |"
    )
  return "\n".join(lines) + "\n"


def _stats_inputs(
  synthetic: Tuple[np.ndarray, np.ndarray],
) -> Tuple[np.ndarray, np.ndarray, int, str]:
  if not FLAGS.sids:
    return synthetic[0], synthetic[1], CODEBOOK_SIZE, f"synthetic, {FLAGS.num_items:,} items"
  table = train_spm._load_table(FLAGS.sids)  # pylint: disable=protected-access
  impressions = train_spm._impressions(table)  # pylint: disable=protected-access
  return table.codes, impressions, int(table.manifest["codebook_size"]), f"{FLAGS.sids}"


def main(argv: List[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  for name in ("num_items", "hash_rows", "batch_size", "repeats"):
    if FLAGS[name].value <= 0:
      raise app.UsageError(f"--{name} must be positive. Received: --{name}={FLAGS[name].value}")
  synthetic = synthetic_sids.synthetic_sids(FLAGS.num_items, FLAGS.seed)
  codes, impressions, codebook_size, source = _stats_inputs(synthetic)
  layers = build_layers(codes, impressions, codes.shape[1], codebook_size)
  bench_layers = layers if not FLAGS.sids else build_layers(*synthetic, NUM_LEVELS, CODEBOOK_SIZE)
  schemes = {}
  for name in tqdm.tqdm(layers, desc="schemes"):
    schemes[name] = token_stats(layers[name], codes, impressions)
    schemes[name]["items_per_second"] = throughput(bench_layers[name], synthetic[0])
  results = {
    "stats_source": source,
    "throughput_items": FLAGS.num_items,
    "batch_size": FLAGS.batch_size,
    "hash_rows": FLAGS.hash_rows,
    "schemes": schemes,
  }
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  io_utils.write_json(os.path.join(FLAGS.output_dir, "results.json"), results)
  io_utils.write_text(os.path.join(FLAGS.output_dir, "results.md"), markdown(results))
  train_spm.plot_deciles(
    os.path.join(FLAGS.output_dir, "tokens_by_decile.png"),
    {name: row["tokens_by_popularity_decile"] for name, row in schemes.items()},
    f"Tokens per item by popularity decile ({source})",
  )
  print(markdown(results))
  print(f"wrote results.json, results.md, tokens_by_decile.png under {FLAGS.output_dir}")


if __name__ == "__main__":
  cli.run(main)
