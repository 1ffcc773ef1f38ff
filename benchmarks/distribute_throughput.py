"""tf.distribute on this machine: ranker examples/s with 1 vs 2 local MultiWorkerMirroredStrategy
workers, and the largest hash table trained with ParameterServerStrategy.

  .venv/bin/python -m benchmarks.distribute_throughput --output_dir=runs/bench_distribute

Part 1 (`multi_worker`): trains the same ranker (`--mw_*` data, hash item ID, history on, the
same global batch) with --strategy=default, multi_worker with 1 worker and with 2 workers (all
127.0.0.1 processes, one run each, under `nice`), and reports each run's training examples/s
(metrics.json), wall time, peak memory per process and the test AUC (the 1- and 2-worker runs take
the same steps, so their AUCs should agree). Local workers share this machine's cores, so this
measures the cost of the collectives, not a speed-up a cluster of machines would give.

Part 2 (`parameter_server`): for each `--ps_rows`, a fresh cluster (2 ps, `--ps_workers`
workers, a coordinator) trains a ranker whose hash-ID table has that many rows of
`--ps_embedding_dim` floats, split across both servers, for one epoch; reports each server's peak
memory, the coordinator's wall time and examples/s. A size whose estimated peak
(`_estimated_peak_bytes`, fitted to the measured sizes) would not fit in the free memory with 4 GiB
to spare is skipped, not attempted: this machine's memory is shared.
Writes results.json and results.md atomically.
"""

import json
import os
import sys
import time

from absl import app, flags

from benchmarks import distribute_procs
from features import io_utils
from trainers import cli, job_flags

flags.DEFINE_list("parts", ["multi_worker", "parameter_server"], "Which parts to run.")
flags.DEFINE_integer("mw_items", 10_000, "Part 1: synthetic items.")
flags.DEFINE_integer("mw_users", 2_000, "Part 1: synthetic users.")
flags.DEFINE_integer("mw_interactions", 100_000, "Part 1: synthetic interactions.")
flags.DEFINE_integer("mw_batch_size", 1024, "Part 1: global batch.")
flags.DEFINE_list("ps_rows", ["1000000", "4000000", "16000000"], "Part 2: hash-table rows.")
flags.DEFINE_integer("ps_embedding_dim", 32, "Part 2: table width.")
flags.DEFINE_integer("ps_workers", 1, "Part 2: worker tasks.")
flags.DEFINE_integer("ps_interactions", 20_000, "Part 2: synthetic interactions.")
flags.DEFINE_integer("timeout_s", 1500, "Most seconds per run.")
job_flags.define_output_dir("runs/bench_distribute", "Where results.json/results.md go.")
FLAGS = flags.FLAGS


def _ranker_flags(out, items, users, interactions, batch_size, table_rows, dim, epochs):
  return [
    sys.executable, "-m", "trainers.train_ranker", "--dataset=synthetic", "--split=new_items",
    f"--synthetic_items={items}", f"--synthetic_users={users}",
    f"--synthetic_interactions={interactions}", "--item_representation=hash",
    f"--table_rows={table_rows}", f"--embedding_dim={dim}", f"--epochs={epochs}", "--patience=5",
    f"--batch_size={batch_size}", f"--output_dir={out}",
  ]  # fmt: skip


def _metrics(folder):
  with open(os.path.join(folder, "metrics.json")) as f:
    return json.load(f)


def _check(runs):
  for run in runs:
    if run.returncode != 0:
      raise RuntimeError(f"{run.command[:4]} failed ({run.returncode}):\n{run.log_tail}")


def multi_worker(out):
  """Part 1: default, multi_worker x1, multi_worker x2."""
  base = lambda folder: _ranker_flags(  # noqa: E731
    folder, FLAGS.mw_items, FLAGS.mw_users, FLAGS.mw_interactions, FLAGS.mw_batch_size, 4000, 32,
    1,
  )  # fmt: skip
  rows = []
  for name, workers in (("default", 0), ("multi_worker", 1), ("multi_worker", 2)):
    folder = os.path.join(out, f"{name}_{workers}")
    cluster = {"worker": distribute_procs.free_addresses(max(workers, 1))}
    jobs = []
    for index in range(max(workers, 1)):
      env = distribute_procs.job_env()
      if workers:
        env["TF_CONFIG"] = distribute_procs.tf_config(cluster, "worker", index)
      command = base(folder) + [f"--strategy={name}"]
      jobs.append((command, env, os.path.join(out, f"{name}_{workers}_{index}.log")))
    runs = distribute_procs.run_together(jobs, FLAGS.timeout_s)
    _check(runs)
    metrics = _metrics(folder)
    rows.append(
      {
        "strategy": name,
        "workers": workers,
        "train_examples_per_s": metrics["train_examples_per_s"],
        "train_time_s": metrics["train_time_s"],
        "wall_s": max(r.seconds for r in runs),
        "test_auc": metrics["test"]["all"]["auc"],
        "peak_mib_per_process": [round(max(p.peak_mib for p in r.peaks), 0) for r in runs],
      }
    )
  return rows


def _mem_available_bytes() -> int:
  with open("/proc/meminfo") as f:
    for line in f:
      if line.startswith("MemAvailable:"):
        return int(line.split()[1]) * 1024
  return 0


def _estimated_peak_bytes(table_bytes: int) -> float:
  """The cluster's peak memory for a table of `table_bytes`, as measured here: each of the 2 ps
  near 0.8 GiB + 12x its shard (Adam updates the whole shard densely every step: the shard, its
  two slots and about four full-size temporaries, plus checkpoint copies), the coordinator near
  1 GiB + 6x the table (early stopping and the backups read every weight), a worker 1 GiB."""
  gib = 2**30
  return 2 * (0.8 * gib + 12 * table_bytes / 2) + (gib + 6 * table_bytes) + gib


def parameter_server(out):
  """Part 2: one fresh cluster per table size."""
  rows = []
  for table_rows in (int(r) for r in FLAGS.ps_rows):
    table_bytes = table_rows * FLAGS.ps_embedding_dim * 4
    need, free = _estimated_peak_bytes(table_bytes), _mem_available_bytes()
    if need + (4 << 30) > free:
      rows.append(
        {
          "rows": table_rows,
          "table_mib": table_bytes / 2**20,
          "skipped": f"needs about {need / 2**30:.0f} GiB, {free / 2**30:.0f} GiB free",
        }
      )
      continue
    folder = os.path.join(out, f"ps_{table_rows}")
    cluster = {
      "chief": distribute_procs.free_addresses(1),
      "ps": distribute_procs.free_addresses(2),
      "worker": distribute_procs.free_addresses(FLAGS.ps_workers),
    }
    logs = lambda kind, i: os.path.join(out, f"ps_{table_rows}_{kind}{i}.log")  # noqa: E731
    servers = [
      distribute_procs.start_server(cluster, kind, i, logs(kind, i))
      for kind, count in (("ps", 2), ("worker", FLAGS.ps_workers))
      for i in range(count)
    ]
    samplers = [distribute_procs.TreeSampler(s.pid) for s in servers]
    try:
      command = _ranker_flags(
        folder, 10_000, 2_000, FLAGS.ps_interactions, 1024, table_rows, FLAGS.ps_embedding_dim, 1
      ) + ["--strategy=parameter_server"]
      env = distribute_procs.job_env(TF_CONFIG=distribute_procs.tf_config(cluster, "chief", 0))
      (run,) = distribute_procs.run_together(
        [(command, env, os.path.join(out, f"ps_{table_rows}_chief.log"))], FLAGS.timeout_s
      )
    finally:
      for server in servers:
        distribute_procs.stop(server)
    peaks = [max((p.peak_mib for p in s.stop()), default=0.0) for s in samplers]
    row = {"rows": table_rows, "table_mib": table_bytes / 2**20, "returncode": run.returncode}
    if run.returncode == 0:
      with open(os.path.join(folder, "distribution.json")) as f:
        placement = json.load(f)["variables"]
      (table,) = [v for name, v in placement.items() if "id_embedding" in name]
      metrics = _metrics(folder)
      row.update(
        shards=[[s["shape"][0], s["device"].split("/")[-2]] for s in table["shards"]],
        ps_peak_mib=[round(p) for p in peaks[:2]],
        worker_peak_mib=[round(p) for p in peaks[2:]],
        coordinator_peak_mib=round(max(p.peak_mib for p in run.peaks)),
        wall_s=run.seconds,
        train_time_s=metrics["train_time_s"],
        train_examples_per_s=metrics["train_examples_per_s"],
      )
    else:
      row["log_tail"] = run.log_tail[-1500:]
    rows.append(row)
    if run.returncode != 0:
      break
  return rows


def _markdown(results) -> str:
  lines = []
  if "multi_worker" in results:
    lines += [
      "# Ranker training, 1 vs 2 local workers (same global batch)",
      "",
      "| strategy | workers | train examples/s | train s | wall s | test AUC | peak MiB per "
      "process |",
      "|---|---|---|---|---|---|---|",
    ]
    for r in results["multi_worker"]:
      lines.append(
        f"| {r['strategy']} | {r['workers'] or '-'} | {r['train_examples_per_s']:,.0f} | "
        f"{r['train_time_s']:.0f} | {r['wall_s']:.0f} | {r['test_auc']:.6f} | "
        f"{', '.join(f'{p:.0f}' for p in r['peak_mib_per_process'])} |"
      )
    lines.append("")
  if "parameter_server" in results:
    lines += [
      "# Hash-ID table trained with ParameterServerStrategy (2 ps)",
      "",
      "| rows | table MiB | shards (rows, task) | peak MiB per ps | worker MiB | coordinator MiB | "
      "train examples/s | wall s |",
      "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["parameter_server"]:
      if "skipped" in r or r.get("returncode"):
        reason = r.get("skipped") or f"failed (status {r.get('returncode')})"
        lines.append(f"| {r['rows']:,} | {r['table_mib']:,.0f} | {reason} | | | | | |")
        continue
      lines.append(
        f"| {r['rows']:,} | {r['table_mib']:,.0f} | {r['shards']} | {r['ps_peak_mib']} | "
        f"{r['worker_peak_mib']} | {r['coordinator_peak_mib']} | "
        f"{r['train_examples_per_s']:,.0f} | {r['wall_s']:.0f} |"
      )
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  out = FLAGS.output_dir
  os.makedirs(out, exist_ok=True)
  results = {"cpus": os.cpu_count(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
  parts = {"multi_worker": multi_worker, "parameter_server": parameter_server}
  for name in FLAGS.parts:
    if name not in parts:
      raise app.UsageError(f"--parts: unknown part {name!r}; choose from {sorted(parts)}")
    results[name] = parts[name](out)
    io_utils.write_json(os.path.join(out, "results.json"), results)
  io_utils.write_text(os.path.join(out, "results.md"), _markdown(results))
  print(_markdown(results))


if __name__ == "__main__":
  cli.run(main)
