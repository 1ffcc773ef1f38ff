"""SID assignment at scale: the Beam job (DirectRunner, N worker processes) against the
single-process `trainers.assign_sids`, on the same synthetic items and RQ-VAE.

  .venv-beam/bin/python -m benchmarks.beam_throughput --output_dir=runs/bench_beam

Defaults: 1M items (D=128), L=8, K=2048, latent 256, 2 workers. The RQ-VAE keeps its initial
weights (training changes the codes, not the cost of assigning them). Both jobs run once, each
under `nice`, one after the other; each process's peak resident memory is sampled from /proc.
Reports items/s over each job's whole run (start-up included) and over the assignment alone (as
each job reports it), peak memory per process, and checks that both tables hold the same codes.
Writes results.json and results.md atomically.
"""

import json
import os
import sys
import time

import numpy as np
from absl import flags

from benchmarks import distribute_procs
from features import datasets, io_utils, sid_table, synthetic
from model import rqvae
from trainers import beam_assign_sids, beam_items, cli, job_flags

flags.DEFINE_integer("items", 1_000_000, "Synthetic items.")
flags.DEFINE_integer("dim", 128, "Content embedding width D.")
flags.DEFINE_integer("levels", 8, "L.")
flags.DEFINE_integer("codebook_size", 2048, "K.")
flags.DEFINE_integer("latent_dim", 256, "RQ-VAE latent width.")
flags.DEFINE_integer("workers", 2, "DirectRunner worker processes.")
flags.DEFINE_integer("input_files", 8, "TFRecord files the items are written to.")
flags.DEFINE_integer("num_shards", 8, "Shards of the Beam SID table.")
flags.DEFINE_integer("batch_size", 2048, "Items per encoding batch (both jobs).")
job_flags.define_output_dir("runs/bench_beam", "Where results.json/results.md go.")
FLAGS = flags.FLAGS

_SMALL = {"n_users": 1000, "n_interactions": 10_000}


def _data_flags():
  return [
    "--dataset=synthetic",
    f"--synthetic_items={FLAGS.items}",
    f"--synthetic_users={_SMALL['n_users']}",
    f"--synthetic_interactions={_SMALL['n_interactions']}",
    f"--synthetic_dim={FLAGS.dim}",
  ]


def _prepare(out: str):
  config = synthetic.SyntheticConfig(n_items=FLAGS.items, embedding_dim=FLAGS.dim, **_SMALL)
  dataset = datasets.load_dataset("synthetic", synthetic_config=config)
  model_dir = os.path.join(out, "rqvae")
  model = rqvae.build_rqvae(
    rqvae.RQVAEConfig(
      input_dim=FLAGS.dim,
      latent_dim=FLAGS.latent_dim,
      num_levels=FLAGS.levels,
      codebook_size=FLAGS.codebook_size,
    )
  )
  rqvae.save_rqvae(model, model_dir)
  start = time.perf_counter()
  prefix = os.path.join(out, "items", "items")
  ids = dataset.items["item_id"].to_numpy()
  beam_items.write_item_files(prefix, ids, dataset.embeddings, num_files=FLAGS.input_files)
  return model_dir, prefix + "-*", time.perf_counter() - start


def _summary(run: distribute_procs.Run, stats_path: str) -> dict:
  if run.returncode != 0:
    raise RuntimeError(f"{run.command[:3]} failed:\n{run.log_tail}")
  with open(stats_path) as f:
    stats = json.load(f)
  return {
    "wall_s": run.seconds,
    "items_per_s_wall": FLAGS.items / run.seconds,
    "items_per_s_reported": stats["items_per_second"],
    "processes": [  # (Wrapper shells of a few MiB left out.)
      {"role": _role(p.command), "pid": p.pid, "peak_mib": round(p.peak_mib, 1)}
      for p in run.peaks
      if p.peak_mib >= 16
    ],
  }


def _role(command: str) -> str:
  if "sdk_worker_main" in command:
    return "Beam SDK worker"
  if "beam_assign_sids" in command:
    return "Beam launcher + runner"
  if "assign_sids" in command:
    return "assign_sids"
  return command.split(" ")[0] or "?"


def _markdown(results: dict) -> str:
  lines = [
    f"# SID assignment: {results['items']:,} items, L={results['levels']}, "
    f"K={results['codebook_size']}, D={results['dim']}",
    "",
    "| job | wall s | items/s (whole run) | items/s (assignment, as reported) | peak MiB "
    "per process |",
    "|---|---|---|---|---|",
  ]
  for name in ("assign_sids", "beam"):
    r = results[name]
    peaks = ", ".join(f"{p['role']} {p['peak_mib']:.0f}" for p in r["processes"])
    lines.append(
      f"| {r['label']} | {r['wall_s']:.0f} | {r['items_per_s_wall']:,.0f} | "
      f"{r['items_per_s_reported']:,.0f} | {peaks} |"
    )
  lines += [
    "",
    f"Same codes in both tables: {results['codes_equal']}. Writing the items as "
    f"{results['input_files']} TFRecord files took {results['write_inputs_s']:.0f} s "
    "(not counted).",
  ]
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  out = FLAGS.output_dir
  os.makedirs(out, exist_ok=True)
  model_dir, pattern, write_s = _prepare(out)
  env = distribute_procs.job_env()
  single_path = os.path.join(out, "single.npz")
  single = distribute_procs.run_measured(
    [sys.executable, "-m", "trainers.assign_sids", *_data_flags(), f"--rqvae_dir={model_dir}",
     f"--output={single_path}", f"--batch_size={FLAGS.batch_size}"],
    env, os.path.join(out, "assign_sids.log"),
  )  # fmt: skip
  prefix = os.path.join(out, "beam", "sids")
  beam = distribute_procs.run_measured(
    [sys.executable, "-m", "trainers.beam_assign_sids", f"--input={pattern}",
     f"--output={prefix}", f"--rqvae_dir={model_dir}", f"--batch_size={FLAGS.batch_size}",
     f"--num_shards={FLAGS.num_shards}", "--overwrite", f"--direct_num_workers={FLAGS.workers}",
     "--direct_running_mode=multi_processing"],
    env, os.path.join(out, "beam.log"),
  )  # fmt: skip
  results = {
    "items": FLAGS.items,
    "levels": FLAGS.levels,
    "codebook_size": FLAGS.codebook_size,
    "dim": FLAGS.dim,
    "input_files": FLAGS.input_files,
    "write_inputs_s": write_s,
    "assign_sids": dict(
      _summary(single, single_path + ".stats.json"), label="assign_sids (1 process)"
    ),
    "beam": dict(
      _summary(beam, prefix + beam_assign_sids.STATS_SUFFIX),
      label=f"Beam DirectRunner, {FLAGS.workers} workers",
    ),
  }
  a, b = sid_table.read_sid_table(single_path), sid_table.read_sid_table(prefix)
  order = np.argsort(a.item_ids)
  results["codes_equal"] = bool(
    np.array_equal(a.item_ids[order], b.item_ids) and np.array_equal(a.codes[order], b.codes)
  )
  io_utils.write_json(os.path.join(out, "results.json"), results)
  io_utils.write_text(os.path.join(out, "results.md"), _markdown(results))
  print(_markdown(results))


if __name__ == "__main__":
  cli.run(main)
