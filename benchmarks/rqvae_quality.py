"""RQ-VAE semantic-ID quality and assignment speed, side by side with faiss's ResidualQuantizer.

  nice .venv/bin/python -m benchmarks.rqvae_quality --output_dir=runs/bench_rqvae \
      [--synthetic_items=1000000] [--synthetic_epochs=5] [--movielens_epochs=150]

Needs `pip install -r benchmarks/requirements.txt` (faiss-cpu). In one run, on the same data:
1. Quality. MovieLens shared MiniLM embeddings at L=3, K=64 and K=256, and synthetic topic-tree
   embeddings at the paper's L=8, K=2048 (`--synthetic_items`, 1M for the paper's scale): per-level
   codebook utilization, unique-SID fraction, largest SID group and reconstruction MSE (in content
   space), for this project's RQ-VAE with and without dead-code reset and for faiss's greedy
   residual quantizer (max_beam_size=1, plain per-level k-means training, same L and K).
2. Throughput. Content embedding -> codes, items/s: the frozen SemanticIdEncoder (tf.function)
   against faiss `compute_codes` on the same items; best of `--repeats` passes each.
3. The paper's Table 1 analogue on MovieLens: per prefix length n, mean cosine similarity of items
   sharing an n-prefix and the 25/50/75th percentiles of prefix sub-trie sizes.
Writes results.json, results.md and PNGs (utilization, prefix similarity, throughput) under
--output_dir, and prints the markdown.
"""

import dataclasses
import math
import os
import time
from typing import Any, Dict, List, Tuple

import matplotlib

matplotlib.use("Agg")

import faiss  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from features import datasets, io_utils, synthetic  # noqa: E402
from model import rqvae, rqvae_metrics, semantic_id_encoder, sid_analysis  # noqa: E402
from trainers import cli, job_flags  # noqa: E402

job_flags.define_output_dir(None, "Where to write results.json, results.md and the PNGs.")
flags.DEFINE_string("movielens_dir", None, "ml-latest-small folder (default: the shared copy).")
flags.DEFINE_integer("movielens_epochs", 150, "RQ-VAE epochs on MovieLens.")
flags.DEFINE_integer("movielens_batch_size", 1024, "RQ-VAE batch size on MovieLens.")
flags.DEFINE_integer("synthetic_items", 1_000_000, "Synthetic items (the paper's scale: 1M).")
flags.DEFINE_integer("synthetic_dim", 128, "Synthetic embedding width D.")
flags.DEFINE_integer("synthetic_epochs", 5, "RQ-VAE epochs on the synthetic data.")
flags.DEFINE_integer("synthetic_batch_size", 2048, "RQ-VAE batch size on the synthetic data.")
flags.DEFINE_bool("skip_synthetic", False, "Run only the MovieLens parts.")
flags.DEFINE_bool("skip_movielens", False, "Run only the synthetic parts.")
flags.DEFINE_list(
  "variants",
  "rqvae_reset,rqvae_reset_split,rqvae_no_reset",
  "RQ-VAE variants to train (the throughput rows use the first).",
)
flags.DEFINE_float(
  "split_interpolation", 0.3, "reset_interpolation of the `rqvae_reset_split` variant."
)
flags.DEFINE_integer("faiss_niter", 10, "k-means iterations per level for faiss (ours: 10 too).")
flags.DEFINE_integer("assign_batch_size", 2048, "Items per SemanticIdEncoder call (throughput).")
flags.DEFINE_integer("repeats", 3, "Throughput passes (best is reported).")
flags.DEFINE_integer("seed", 0, "Seed.")
FLAGS = flags.FLAGS


@dataclasses.dataclass
class Setting:
  data: str
  num_levels: int
  codebook_size: int
  epochs: int
  batch_size: int


# --- faiss ---------------------------------------------------------------------------------------


def faiss_train(x: np.ndarray, num_levels: int, codebook_size: int, niter: int):
  nbits = int(math.log2(codebook_size))
  if 2**nbits != codebook_size:
    raise ValueError(f"faiss needs K = 2^nbits. Received: codebook_size={codebook_size}")
  rq = faiss.ResidualQuantizer(x.shape[1], num_levels, nbits)
  rq.max_beam_size = 1  # Greedy, like the RQ-VAE's quantizer.
  rq.train_type = faiss.ResidualQuantizer.Train_default  # Plain k-means per level.
  rq.cp.niter = niter
  rq.cp.seed = FLAGS.seed
  rq.train(x)
  return rq


def faiss_codes(rq, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """(codes int32[N, L], packed codes) via compute_codes; faiss packs nbits per level, LSB first."""
  packed = rq.compute_codes(x)
  nbits = int(faiss.vector_to_array(rq.nbits)[0])
  bits = np.unpackbits(packed, axis=1, bitorder="little")[:, : rq.M * nbits]
  bits = bits.reshape(len(x), rq.M, nbits).astype(np.int64)
  codes = (bits << np.arange(nbits)).sum(axis=-1).astype(np.int32)
  # Self-check of the unpacking: the sum of the chosen codewords is faiss's own decoding.
  k = 2**nbits
  books = faiss.vector_to_array(rq.codebooks).reshape(rq.M, k, rq.d)
  head = min(len(x), 100)
  summed = sum(books[level][codes[:head, level]] for level in range(rq.M))
  np.testing.assert_allclose(summed, rq.decode(packed[:head]), atol=1e-4)
  return codes, packed


# --- this project --------------------------------------------------------------------------------


VARIANTS = {  # name: (dead_code_reset, reset_interpolation or None for the flag)
  "rqvae_reset": (True, 1.0),
  "rqvae_reset_split": (True, None),
  "rqvae_no_reset": (False, 1.0),
}


def train_ours(x: np.ndarray, setting: Setting, variant: str) -> Tuple[rqvae.RQVAE, float]:
  reset, interpolation = VARIANTS[variant]
  tf.keras.utils.set_random_seed(FLAGS.seed)
  config = rqvae.RQVAEConfig(
    input_dim=x.shape[1],
    num_levels=setting.num_levels,
    codebook_size=setting.codebook_size,
    dead_code_reset=reset,
    reset_interpolation=interpolation or FLAGS.split_interpolation,
    seed=FLAGS.seed,
  )
  model = rqvae.build_rqvae(config)
  data = (
    tf.data.Dataset.from_tensor_slices(x)
    .shuffle(len(x), seed=FLAGS.seed)
    .batch(setting.batch_size)
    .prefetch(tf.data.AUTOTUNE)
  )
  start = time.perf_counter()
  model.fit(data, epochs=setting.epochs, verbose=2)
  return model, time.perf_counter() - start


def quality(codes: np.ndarray, codebook_size: int, mse: float, seconds: float) -> Dict[str, Any]:
  out = rqvae_metrics.sid_stats(codes, codebook_size)
  out.update(reconstruction_mse=mse, train_seconds=seconds)
  return out


def compare_quality(x: np.ndarray, setting: Setting) -> Tuple[Dict[str, Any], Dict[str, Any]]:
  """Quality rows for ours (reset on/off) and faiss; also returns the codes for further analysis."""
  rows, codes = {}, {}
  for name in FLAGS.variants:
    print(f"[{setting.data} L={setting.num_levels} K={setting.codebook_size}] training {name}")
    model, seconds = train_ours(x, setting, name)
    codes[name] = model.assign_codes(x, FLAGS.assign_batch_size)
    rows[name] = quality(codes[name], setting.codebook_size, model.reconstruction_mse(x), seconds)
    codes[name + "_model"] = model
  print(f"[{setting.data} L={setting.num_levels} K={setting.codebook_size}] training faiss")
  start = time.perf_counter()
  rq = faiss_train(x, setting.num_levels, setting.codebook_size, FLAGS.faiss_niter)
  seconds = time.perf_counter() - start
  codes["faiss"], packed = faiss_codes(rq, x)
  mse = float(np.mean(np.square(rq.decode(packed) - x)))
  rows["faiss"] = quality(codes["faiss"], setting.codebook_size, mse, seconds)
  codes["faiss_rq"] = rq
  for row in rows.values():
    row.update(dataclasses.asdict(setting), n_items=int(len(x)))
  return rows, codes


# --- throughput ----------------------------------------------------------------------------------


def _best_rate(fn, n: int) -> float:
  best = math.inf
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return n / best


def ours_rate(encoder: semantic_id_encoder.SemanticIdEncoder, x: np.ndarray) -> float:
  spec = [tf.TensorSpec([None, encoder.input_dim], tf.float32)]
  encode = tf.function(encoder.call, input_signature=spec)
  bs = FLAGS.assign_batch_size
  encode(tf.constant(x[:bs]))  # Trace once, outside the timing.

  def run():
    for i in range(0, len(x), bs):
      encode(tf.constant(x[i : i + bs])).numpy()

  return _best_rate(run, len(x))


def throughput(x: np.ndarray, model: rqvae.RQVAE, rq, label: str) -> List[Dict[str, Any]]:
  """Items/s of ours (trained latent d, and an untrained d = D encoder of equal cost) and faiss."""
  config = model.config
  rows = []
  trained = semantic_id_encoder.SemanticIdEncoder.from_rqvae(model)
  rows.append(
    {"method": f"SemanticIdEncoder (d={config.latent_dim})", "rate": ours_rate(trained, x)}
  )
  if config.latent_dim != x.shape[1]:
    # Speed does not depend on the weights' values: random weights of latent d = D give the cost of
    # quantizing in the input's width, which is what faiss does.
    same = semantic_id_encoder.SemanticIdEncoder(
      num_levels=config.num_levels,
      codebook_size=config.codebook_size,
      input_dim=x.shape[1],
      latent_dim=x.shape[1],
    )
    same.build(None)
    rng = np.random.default_rng(0)
    same.encoder_kernel.assign(np.eye(x.shape[1], dtype=np.float32))
    same.codebooks.assign(rng.normal(size=same.codebooks.shape).astype(np.float32) * 0.1)
    rows.append({"method": f"SemanticIdEncoder (d=D={x.shape[1]})", "rate": ours_rate(same, x)})
  rows.append(
    {"method": "faiss compute_codes", "rate": _best_rate(lambda: rq.compute_codes(x), len(x))}
  )
  for row in rows:
    row.update(
      data=label,
      n_items=int(len(x)),
      num_levels=config.num_levels,
      codebook_size=config.codebook_size,
      vs_faiss=row["rate"] / rows[-1]["rate"],
    )
  return rows


# --- data ----------------------------------------------------------------------------------------


def movielens_embeddings() -> np.ndarray:
  dataset = datasets.load_dataset("movielens", FLAGS.movielens_dir)
  return np.ascontiguousarray(dataset.embeddings, np.float32)


def synthetic_embeddings(n_items: int) -> np.ndarray:
  config = synthetic.SyntheticConfig(
    n_items=n_items,
    n_users=10,
    n_interactions=1000,
    embedding_dim=FLAGS.synthetic_dim,
    seed=FLAGS.seed,
  )
  dataset = datasets.load_dataset("synthetic", synthetic_config=config)
  return np.ascontiguousarray(dataset.embeddings, np.float32)


# --- report --------------------------------------------------------------------------------------


def _fmt_levels(values) -> str:
  return " ".join(f"{v:.2f}" for v in values)


def markdown(results: Dict[str, Any]) -> str:
  lines = ["# RQ-VAE semantic IDs vs faiss ResidualQuantizer", ""]
  lines += [f"Run: {results['environment']}", "", "## 1. Quality", ""]
  lines += [
    "| data | L | K | items | method | utilization per level | unique-SID frac | max items/SID "
    "| recon MSE | train s |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for row in results["quality"]:
    lines.append(
      f"| {row['data']} | {row['num_levels']} | {row['codebook_size']} | {row['n_items']:,} "
      f"| {row['method']} | {_fmt_levels(row['utilization'])} | {row['unique_sid_fraction']:.4f} "
      f"| {row['max_items_per_sid']} | {row['reconstruction_mse']:.3g} "
      f"| {row['train_seconds']:.0f} |"
    )
  lines += ["", "## 2. SID assignment throughput (content embedding -> codes)", ""]
  lines += [
    "| data | L | K | items | method | items/s | vs faiss |",
    "|---|---|---|---|---|---|---|",
  ]
  for row in results["throughput"]:
    lines.append(
      f"| {row['data']} | {row['num_levels']} | {row['codebook_size']} | {row['n_items']:,} "
      f"| {row['method']} | {row['rate']:,.0f} | {row['vs_faiss']:.2f}x |"
    )
  lines += ["", "## 3. Table 1 analogue (MovieLens)", ""]
  lines += [
    "| K | method | n | mean cosine within n-prefix | pairs | sub-trie p25 | p50 | p75 |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for row in results["prefix_table"]:
    lines.append(
      f"| {row['codebook_size']} | {row['method']} | {row['prefix_length']} "
      f"| {row['mean_cosine']:.3f} | {row['pairs']:,} | {row['subtrie_p25']:g} "
      f"| {row['subtrie_p50']:g} | {row['subtrie_p75']:g} |"
    )
  lines += ["", f"Mean cosine of two random MovieLens items: {results['random_pair_cosine']:.3f}"]
  lines += ["", *results["notes"]]
  return "\n".join(lines) + "\n"


def _save(fig, path):
  with io_utils.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=110)
  plt.close(fig)


def plots(results: Dict[str, Any], out: str) -> None:
  groups = sorted({(r["data"], r["codebook_size"]) for r in results["quality"]})
  fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.8), squeeze=False)
  for ax, (data, k) in zip(axes[0], groups):
    rows = [r for r in results["quality"] if r["data"] == data and r["codebook_size"] == k]
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
      levels = np.arange(len(row["utilization"]))
      ax.bar(levels + i * width, row["utilization"], width, label=row["method"])
    ax.set_xticks(levels + width * (len(rows) - 1) / 2, [str(v) for v in levels])
    ax.set_title(f"{data}, K={k}")
    ax.set_xlabel("level")
    ax.set_ylabel("fraction of codes used")
    ax.set_ylim(0, 1.05)
  axes[0][0].legend(fontsize="small")
  fig.tight_layout()
  _save(fig, os.path.join(out, "utilization.png"))

  fig, ax = plt.subplots(figsize=(6, 4))
  for key in sorted({(r["codebook_size"], r["method"]) for r in results["prefix_table"]}):
    rows = [r for r in results["prefix_table"] if (r["codebook_size"], r["method"]) == key]
    ax.plot(
      [r["prefix_length"] for r in rows],
      [r["mean_cosine"] for r in rows],
      "o-",
      label=f"K={key[0]} {key[1]}",
    )
  ax.axhline(results["random_pair_cosine"], color="grey", linestyle=":", label="random pair")
  ax.set_xticks(sorted({r["prefix_length"] for r in results["prefix_table"]}))
  ax.set_xlabel("prefix length n")
  ax.set_ylabel("mean cosine, items sharing the n-prefix")
  ax.legend(fontsize="small")
  fig.tight_layout()
  _save(fig, os.path.join(out, "prefix_similarity.png"))

  fig, ax = plt.subplots(figsize=(7, 3.5))
  labels = [f"{r['data']}\n{r['method']}" for r in results["throughput"]]
  ax.barh(range(len(labels)), [r["rate"] for r in results["throughput"]])
  ax.set_yticks(range(len(labels)), labels, fontsize="x-small")
  ax.set_xlabel("items/s (content embedding -> codes)")
  fig.tight_layout()
  _save(fig, os.path.join(out, "throughput.png"))


# --- main ----------------------------------------------------------------------------------------


def _quality_rows(rows: Dict[str, Any], data: str) -> List[Dict[str, Any]]:
  return [dict(row, method=name, data=data) for name, row in rows.items()]


def run() -> Dict[str, Any]:
  results: Dict[str, Any] = {"quality": [], "throughput": [], "prefix_table": [], "notes": []}
  results["environment"] = (
    f"{os.cpu_count()} CPUs, TensorFlow {tf.__version__}, faiss {faiss.__version__}, "
    f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
  )
  x = movielens_embeddings()
  results["random_pair_cosine"] = sid_analysis.mean_pair_cosine(x)  # Exact, over every pair.
  for k in () if FLAGS.skip_movielens else (64, 256):
    setting = Setting("movielens", 3, k, FLAGS.movielens_epochs, FLAGS.movielens_batch_size)
    rows, codes = compare_quality(x, setting)
    results["quality"] += _quality_rows(rows, "movielens")
    for method in (*FLAGS.variants, "faiss"):
      for row in rqvae_metrics.prefix_table(codes[method], x):
        results["prefix_table"].append(dict(row, codebook_size=k, method=method))
    if k == 256:
      results["throughput"] += throughput(
        x, codes[FLAGS.variants[0] + "_model"], codes["faiss_rq"], "movielens"
      )
  if not FLAGS.skip_synthetic:
    xs = synthetic_embeddings(FLAGS.synthetic_items)
    setting = Setting("synthetic", 8, 2048, FLAGS.synthetic_epochs, FLAGS.synthetic_batch_size)
    rows, codes = compare_quality(xs, setting)
    results["quality"] += _quality_rows(rows, "synthetic")
    results["throughput"] += throughput(
      xs, codes[FLAGS.variants[0] + "_model"], codes["faiss_rq"], "synthetic"
    )
    if FLAGS.synthetic_items < 1_000_000:
      results["notes"].append(
        f"Synthetic data ran at {FLAGS.synthetic_items:,} items, not the paper's 1M "
        "(--synthetic_items=1000000 runs the full size)."
      )
  results["notes"].append(
    "faiss: ResidualQuantizer, max_beam_size=1 (greedy), Train_default (k-means per level), "
    f"niter={FLAGS.faiss_niter}, quantizing the content embedding directly; ours: RQ-VAE "
    "(Dense encoder to d=256, k-means init on the first batch, Adam 1e-3), MSE through the "
    "decoder; "
    "rqvae_reset is the paper's reset (unused codes := residual of a random batch item), "
    f"rqvae_reset_split puts them {FLAGS.split_interpolation} of the way from that item's code to "
    "its residual (splitting a busy code)."
  )
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.output_dir:
    raise app.UsageError("--output_dir is required.")
  unknown = [v for v in FLAGS.variants if v not in VARIANTS]
  if unknown or not FLAGS.variants:
    raise app.UsageError(f"--variants must name some of {list(VARIANTS)}. Received: {unknown}")
  logging.set_verbosity(logging.WARNING)
  results = run()
  io_utils.write_json(os.path.join(FLAGS.output_dir, "results.json"), results)
  text = markdown(results)
  io_utils.write_text(os.path.join(FLAGS.output_dir, "results.md"), text)
  plots(results, FLAGS.output_dir)
  print(text)
  print(
    f"wrote results.json, results.md, utilization.png, prefix_similarity.png and throughput.png "
    f"under {FLAGS.output_dir}"
  )


if __name__ == "__main__":
  cli.run(main)
