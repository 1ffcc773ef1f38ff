"""How `benchmarks.serving_latency` runs and times one request (no flags, so it can be tested).

Runtimes (`RUNTIMES`):
  * `session`: `SessionSignature`, the SavedModel's MetaGraph in a TF1 `Session` and one
    `Session.run` of the SignatureDef's tensors per request, the path `tensorflow_model_server`
    takes (`tensorflow::LoadSavedModel`, then `Session::Run`);
  * `eager`: a `tf.saved_model.load`ed signature called from Python (a Python batch job).
`time_requests` times several such calls round robin, so drift on a shared machine hits all alike.
"""

import time

import numpy as np
import tensorflow as tf
import tqdm

# Each runtime and how a report describes it.
RUNTIMES = {
  "session": "session: the SavedModel's MetaGraph in a TF1 Session, one Session.run per request "
  "(as tensorflow_model_server runs it)",
  "eager": "eager: tf.saved_model.load + a signature call from Python",
}


class SessionSignature:
  """One signature of a SavedModel run as stock TF Serving runs it: the MetaGraph loaded into a
  TF1 `Session` (what `tensorflow::LoadSavedModel` gives a model server) and one `Session.run`
  of the SignatureDef's tensors per request, fed NumPy arrays."""

  def __init__(self, export_dir: str, signature: str):
    self.session = tf.compat.v1.Session(graph=tf.Graph())
    meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], export_dir)
    self.signature = meta.signature_def[signature]
    self.outputs = sorted(self.signature.outputs)
    self.fetches = [self.signature.outputs[k].name for k in self.outputs]

  def feeds(self, request: dict) -> dict:
    return {self.signature.inputs[k].name: np.asarray(v) for k, v in request.items()}

  def __call__(self, feeds: dict, **run_kwargs) -> dict:
    """The outputs {name: ndarray} of one request (`feeds` from `feeds`); `run_kwargs` go to
    `Session.run` (`options`, `run_metadata`)."""
    return dict(zip(self.outputs, self.session.run(self.fetches, feeds, **run_kwargs)))

  def close(self) -> None:
    self.session.close()


def time_requests(functions, requests, repetitions: int, warmup: int):
  """Round-robin timing: per repetition, one call of each function on its request (a call returns
  once the outputs are computed). Returns name -> (wall ms, CPU ms of this process, all threads)
  arrays."""
  times = {name: ([], []) for name in functions}
  for step in tqdm.trange(warmup + repetitions, leave=False, desc="requests"):
    for name, function in functions.items():
      start, cpu_start = time.perf_counter(), time.process_time()
      function(requests[name])
      if step >= warmup:
        times[name][0].append((time.perf_counter() - start) * 1e3)
        times[name][1].append((time.process_time() - cpu_start) * 1e3)
  return {name: (np.asarray(wall), np.asarray(cpu)) for name, (wall, cpu) in times.items()}


def caller(runtime: str, loaded, path: str, signature: str):
  """(call(request), request -> what call takes) of one export's `signature` in `runtime` (one
  of `RUNTIMES`; `loaded`: the export at `path`, `tf.saved_model.load`ed)."""
  if runtime == "session":
    session = SessionSignature(path, signature)
    return session, session.feeds
  function = loaded.signatures[signature]
  return (lambda request: function(**request)["ctr"].numpy()), (lambda request: request)
