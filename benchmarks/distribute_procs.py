"""Helpers of the scale-out benchmarks: run a command while sampling the peak memory of every
process in its tree, and start local tf.distribute clusters on 127.0.0.1.

Peak memory is each process's VmHWM (its resident-set high-water mark, from /proc; Linux only),
read every `interval_s` while it lives, so processes that exit before the command ends (Beam's
SDK workers) are counted too.
"""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class ProcessPeak:
  pid: int
  command: str
  peak_mib: float


def _children() -> Dict[int, List[int]]:
  out: Dict[int, List[int]] = {}
  for name in os.listdir("/proc"):
    if name.isdigit():
      try:
        with open(f"/proc/{name}/stat") as f:
          ppid = int(f.read().rsplit(")", 1)[1].split()[1])
      except (OSError, IndexError, ValueError):
        continue
      out.setdefault(ppid, []).append(int(name))
  return out


def _tree(pid: int) -> List[int]:
  children, out, todo = _children(), [], [pid]
  while todo:
    current = todo.pop()
    out.append(current)
    todo += children.get(current, [])
  return out


def _peak_kib(pid: int) -> Optional[int]:
  try:
    with open(f"/proc/{pid}/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1])
  except OSError:
    return None
  return None


def _command(pid: int) -> str:
  try:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
      return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
  except OSError:
    return ""


class TreeSampler:
  """Samples the peak memory of `pid` and its descendants in a thread until `stop()`."""

  def __init__(self, pid: int, interval_s: float = 0.5):
    self.pid, self.interval_s = pid, interval_s
    self.peaks: Dict[int, ProcessPeak] = {}
    self._done = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()

  def _run(self):
    while not self._done.is_set():
      for pid in _tree(self.pid):
        kib = _peak_kib(pid)
        if kib is None:
          continue
        peak = self.peaks.get(pid)
        if peak is None:
          peak = self.peaks[pid] = ProcessPeak(pid, _command(pid), 0.0)
        peak.peak_mib = max(peak.peak_mib, kib / 1024)
      self._done.wait(self.interval_s)

  def stop(self) -> List[ProcessPeak]:
    self._done.set()
    self._thread.join()
    return sorted(self.peaks.values(), key=lambda p: p.pid)


@dataclasses.dataclass
class Run:
  command: List[str]
  returncode: int
  seconds: float
  peaks: List[ProcessPeak]
  log_tail: str


def run_measured(
  command: Sequence[str], env: Optional[Mapping[str, str]] = None, log_path: Optional[str] = None
) -> Run:
  """Runs `command` (with `nice`) from the repository root; returns its status, wall time and
  the peak memory of every process of its tree."""
  log = open(log_path or os.devnull, "w")
  start = time.perf_counter()
  process = subprocess.Popen(
    ["nice", *command], cwd=ROOT, env=dict(env or os.environ), stdout=log, stderr=subprocess.STDOUT
  )
  sampler = TreeSampler(process.pid)
  process.wait()
  seconds = time.perf_counter() - start
  peaks = sampler.stop()
  log.close()
  tail = ""
  if log_path:
    with open(log_path, errors="replace") as f:
      tail = f.read()[-4000:]
  return Run(list(command), process.returncode, seconds, peaks, tail)


def run_together(
  jobs: Sequence[Tuple[Sequence[str], Mapping[str, str], str]], timeout_s: float = 1800
) -> List[Run]:
  """Runs (command, env, log path) jobs at once (each with `nice`); kills them past `timeout_s`."""
  started = []
  start = time.perf_counter()
  for command, env, log_path in jobs:
    log = open(log_path, "w")
    process = subprocess.Popen(
      ["nice", *command], cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
      start_new_session=True,
    )  # fmt: skip
    started.append((command, process, TreeSampler(process.pid), log, log_path))
  runs = []
  for command, process, sampler, log, log_path in started:
    try:
      process.wait(timeout=max(1.0, timeout_s - (time.perf_counter() - start)))
    except subprocess.TimeoutExpired:
      stop(process)
    seconds = time.perf_counter() - start
    log.close()
    with open(log_path, errors="replace") as f:
      tail = f.read()[-4000:]
    runs.append(Run(list(command), process.returncode, seconds, sampler.stop(), tail))
  return runs


def job_env(**extra: str) -> Dict[str, str]:
  """The environment a job runs in: Keras 2, quiet TensorFlow, no GPU."""
  return dict(
    os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", **extra
  )


def free_addresses(count: int) -> List[str]:
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
  for s in sockets:
    s.close()
  return addresses


def tf_config(cluster: Mapping[str, List[str]], kind: str, index: int) -> str:
  return json.dumps({"cluster": dict(cluster), "task": {"type": kind, "index": index}})


def start_server(cluster, kind: str, index: int, log_path: str) -> subprocess.Popen:
  """Starts `python -m trainers.distribute` serving task (kind, index) of `cluster`."""
  log = open(log_path, "w")
  return subprocess.Popen(
    ["nice", sys.executable, "-m", "trainers.distribute"],
    cwd=ROOT,
    env=job_env(TF_CONFIG=tf_config(cluster, kind, index)),
    stdout=log,
    stderr=subprocess.STDOUT,
    start_new_session=True,
  )


def stop(process: subprocess.Popen) -> None:
  if process.poll() is None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
