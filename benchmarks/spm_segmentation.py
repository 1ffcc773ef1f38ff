"""SentencePiece segmentation of SIDs: core-TF layer vs TF Text vs the `sentencepiece` library.

  nice .venv/bin/python -m benchmarks.spm_segmentation --output_dir=runs/bench_spm_segmentation

SIDs: `--num_items` (100k) synthetic SIDs with L=8, K=2048 (each code depends on its parent, so
items share prefixes; impressions are Zipf-distributed), as in `benchmarks.subword_stats`. For each
model type in `--model_types`, a SentencePiece model of `--vocab_size` pieces is trained on them
(weighted by impressions), and the same 100k SIDs are segmented by:

- core TF: `sid_spm.SidSentencePiece` (trie lookups + Viterbi / BPE merges, no TF Text ops), under
  `tf.function`, from codes int32[B, 8];
- TF Text, codes -> ids: the previous layer, `sid_symbols.sid_strings_tf` then TF Text's
  `SentencepieceTokenizer.tokenize`, under `tf.function`, from the same codes;
- TF Text, strings -> ids: `SentencepieceTokenizer.tokenize` alone over precomputed SID strings;
- sentencepiece: `SentencePieceProcessor.encode` over precomputed SID strings (Python lists out).

Each is timed in batches of `--batch_size`, best of `--repeats` passes after a warm-up pass, and
reported in items per second; every method's ids are checked against the library's. Writes
results.json and results.md under `--output_dir`, atomically.
"""

import os  # noqa: I001  (features first: it selects Keras 2 before TensorFlow loads)
import time
from typing import Any, Callable, Dict, List, Sequence

from benchmarks import synthetic_sids
from features import io_utils, sid_spm, sid_symbols, spm_training

import numpy as np
import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text
from absl import app, flags
from trainers import cli, job_flags

job_flags.define_output_dir("runs/bench_spm_segmentation", "Where the JSON and markdown go.")
flags.DEFINE_integer("num_items", 100_000, "Synthetic SIDs (L=8, K=2048) to train on and segment.")
flags.DEFINE_integer("vocab_size", 32_768, "SentencePiece vocabulary budget (>= L*K + 1).")
flags.DEFINE_list("model_types", ["unigram", "bpe"], "SentencePiece model types to measure.")
flags.DEFINE_integer("batch_size", 4096, "Items per segmentation call.")
flags.DEFINE_integer("repeats", 3, "Timed passes per method (the best is reported).")
flags.DEFINE_integer("seed", 0, "Seed of the synthetic SIDs.")
FLAGS = flags.FLAGS

NUM_LEVELS, CODEBOOK_SIZE = synthetic_sids.NUM_LEVELS, synthetic_sids.CODEBOOK_SIZE
LIBRARY = "sentencepiece library, strings -> ids"


def best_items_per_second(run: Callable[[Any], Any], batches: Sequence[Any], items: int) -> float:
  """Items per second of `run` over all batches, best of `--repeats` passes after a warm-up."""
  for batch in batches:
    run(batch)
  best = float("inf")
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    for batch in batches:
      run(batch)
    best = min(best, time.perf_counter() - start)
  return items / best


def methods(proto: bytes) -> Dict[str, Callable]:
  """Each method as a function of one batch (codes for the graph ones, strings for the others)."""
  layer = sid_spm.SidSentencePiece(proto, NUM_LEVELS, CODEBOOK_SIZE)
  tokenizer = tf_text.SentencepieceTokenizer(model=proto, out_type=tf.int32)
  codes_spec = [tf.TensorSpec([None, NUM_LEVELS], tf.int32)]
  core = tf.function(layer, input_signature=codes_spec)
  text_codes = tf.function(
    lambda codes: tokenizer.tokenize(sid_symbols.sid_strings_tf(codes, CODEBOOK_SIZE)),
    input_signature=codes_spec,
  )
  text_strings = tf.function(tokenizer.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
  processor = spm.SentencePieceProcessor(model_proto=proto)
  return {
    "core TF (SidSentencePiece), codes -> ids": lambda b: _numpy(core(b["codes"])),
    "TF Text SentencepieceTokenizer, codes -> ids": lambda b: _numpy(text_codes(b["codes"])),
    "TF Text SentencepieceTokenizer, strings -> ids": lambda b: _numpy(
      text_strings(b["strings_tf"])
    ),
    LIBRARY: lambda b: _flat(processor.encode(b["strings"])),
  }


def _numpy(ids: tf.RaggedTensor):
  return ids.flat_values.numpy().astype(np.int64), ids.row_lengths().numpy()


def _concat(parts):
  return np.concatenate([values for values, _ in parts]), np.concatenate(
    [lens for _, lens in parts]
  )


def _flat(encoded: List[List[int]]):
  lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
  return np.fromiter((i for ids in encoded for i in ids), np.int64, int(lengths.sum())), lengths


def measure(model_type: str, codes: np.ndarray, impressions: np.ndarray) -> Dict[str, Any]:
  start = time.perf_counter()
  config = spm_training.SpmTrainingConfig(
    vocab_size=FLAGS.vocab_size, model_type=spm_training.ModelType(model_type)
  )
  proto = spm_training.train_sid_spm(codes, impressions, CODEBOOK_SIZE, config)
  train_s = time.perf_counter() - start
  strings = sid_symbols.sid_strings(codes, CODEBOOK_SIZE)
  batches = []
  for i in range(0, len(codes), FLAGS.batch_size):
    part = strings[i : i + FLAGS.batch_size]
    batches.append(
      {
        "codes": tf.constant(codes[i : i + FLAGS.batch_size]),
        "strings": part,
        "strings_tf": tf.constant([s.encode("utf-8") for s in part]),
      }
    )
  runs = methods(proto)
  outputs = {name: _concat([run(batch) for batch in batches]) for name, run in runs.items()}
  reference = outputs[LIBRARY]
  rows = {}
  for name, run in runs.items():
    rows[name] = {
      "items_per_second": best_items_per_second(run, batches, len(codes)),
      "ids_identical_to_sentencepiece": all(
        np.array_equal(got, want) for got, want in zip(outputs[name], reference)
      ),
    }
    print(f"{model_type:7s} {name:48s} {rows[name]['items_per_second']:>12,.0f} items/s")
  return {
    "num_rows": spm.SentencePieceProcessor(model_proto=proto).get_piece_size(),
    "pieces_per_item_mean": float(reference[1].mean()),
    "train_s": train_s,
    "methods": rows,
  }


def markdown(results: Dict[str, Any]) -> str:
  lines = [
    f"# SID SentencePiece segmentation throughput ({results['num_items']:,} SIDs, L=8, K=2048, "
    f"batches of {results['batch_size']:,}, {results['cpu_count']} CPUs)",
    "",
    "| model | pieces | pieces/item | method | items/s | x core TF | ids identical |",
    "|---|---:|---:|---|---:|---:|---|",
  ]
  for model_type, row in results["models"].items():
    core = next(iter(row["methods"].values()))["items_per_second"]
    for name, method in row["methods"].items():
      lines.append(
        f"| {model_type} | {row['num_rows']:,} | {row['pieces_per_item_mean']:.2f} | {name} | "
        f"{method['items_per_second']:,.0f} | {method['items_per_second'] / core:.2f} | "
        f"{'yes' if method['ids_identical_to_sentencepiece'] else 'NO'} |"
      )
  return "\n".join(lines) + "\n"


def main(argv: List[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  for name in ("num_items", "batch_size", "repeats"):
    if FLAGS[name].value <= 0:
      raise app.UsageError(f"--{name} must be positive. Received: --{name}={FLAGS[name].value}")
  for model_type in FLAGS.model_types:
    if model_type not in [t.value for t in spm_training.ModelType]:
      raise app.UsageError(f"--model_types: unknown type. Received: {model_type!r}")
  codes, impressions = synthetic_sids.synthetic_sids(FLAGS.num_items, FLAGS.seed)
  results = {
    "num_items": FLAGS.num_items,
    "batch_size": FLAGS.batch_size,
    "vocab_size": FLAGS.vocab_size,
    "repeats": FLAGS.repeats,
    "cpu_count": os.cpu_count(),
    "tensorflow": tf.__version__,
    "tensorflow_text": tf_text.__version__,
    "sentencepiece": spm.__version__,
    "models": {t: measure(t, codes, impressions) for t in FLAGS.model_types},
  }
  for model_type, row in results["models"].items():
    if not all(m["ids_identical_to_sentencepiece"] for m in row["methods"].values()):
      print(f"WARNING: {model_type}: the methods disagree on some ids.")
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  io_utils.write_json(os.path.join(FLAGS.output_dir, "results.json"), results)
  io_utils.write_text(os.path.join(FLAGS.output_dir, "results.md"), markdown(results))
  print(markdown(results))
  print(f"wrote results.json, results.md under {FLAGS.output_dir}")


if __name__ == "__main__":
  cli.run(main)
