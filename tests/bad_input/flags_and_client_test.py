"""Bad-input probes of the command lines (flags that do not apply, out-of-range values) and of the
REST client (responses that are not a predict answer). Each must give one clear line."""

import ast
import json
import os

from export import client
from tests import base
from tests.base import tf

ENTRY_PACKAGES = ("benchmarks", "export", "trainers")

TINY = (
  "--synthetic_items=300",
  "--synthetic_users=30",
  "--synthetic_interactions=2000",
  "--synthetic_dim=8",
)

# (module, flags, the message stderr must contain).
FLAG_PROBES = (
  (
    "trainers.describe_data",
    ("--split=new_items", "--split_time=12345"),
    "--split_time applies only to --split=global_time. Received: --split=new_items",
  ),
  (
    "trainers.describe_data",
    ("--dataset=movielens", "--synthetic_items=5"),
    "--synthetic_items applies only to --dataset=synthetic. Received: --dataset=movielens",
  ),
  (
    "trainers.describe_data",
    ("--split=new_items", "--cold_item_fraction=1.5"),
    "--cold_item_fraction must be in (0, 1). Received: --cold_item_fraction=1.5",
  ),
  (
    "trainers.experiment",
    ("--output_dir=/tmp/never", "--table_rows=100,200"),
    "--table_rows must be at least three different positive integers",
  ),
  (
    "trainers.train_ranker",
    ("--output_dir=/tmp/never", "--learning_rate=-1", *TINY),
    "--learning_rate must be positive. Received: --learning_rate=-1",
  ),
  (
    "trainers.train_rqvae",
    ("--output_dir=/tmp/never", "--learning_rate=nan", *TINY),
    "--learning_rate and --beta must be finite. Received: --learning_rate=nan",
  ),
  (
    "export.export_model",
    ("--ranker_dir=/tmp/never", "--output_dir=/tmp/never_out", "--catalogue_match=exact"),
    "--catalogue_match applies only with --catalogue_embeddings. Received: "
    "--catalogue_match=exact without --catalogue_embeddings",
  ),
  (
    "benchmarks.serving_latency",
    ("--output_dir=/tmp/never", "--runtime=session,grpc"),
    "--runtime must name session, eager or both. Received: --runtime=session,grpc",
  ),
  (
    "trainers.train_spm",
    ("--sids=x.npz", "--vocab_size=100", "--output=y.model", "--max_piece_length=0"),
    "--max_piece_length must be positive (or unset for L). Received: --max_piece_length=0",
  ),
)


class FlagProbesTest(base.TestCase):
  def test_every_flag_probe_fails_with_its_message(self):
    modules = dict.fromkeys(module for module, _, _ in FLAG_PROBES)
    results = {}
    for module in modules:  # One interpreter per job runs all of its probes.
      probes = [args for m, args, _ in FLAG_PROBES if m == module]
      for args, result in zip(probes, base.run_module_probes(module, *probes, timeout=300)):
        results[module, args] = result
    for module, args, message in FLAG_PROBES:
      with self.subTest(module=module, args=args):
        result = results[module, args]
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(message, result.stderr)
        self.assertNotIn("Traceback", result.stderr)


def _entry_points():
  """{module path: parsed source} of every module with an `if __name__ == "__main__":` block."""
  out = {}
  for package in ENTRY_PACKAGES:
    for root, _, files in os.walk(os.path.join(base.ROOT, package)):
      for name in sorted(files):
        if name.endswith(".py"):
          path = os.path.join(root, name)
          with open(path, encoding="utf-8") as f:
            source = f.read()
          if '__name__ == "__main__"' in source:
            out[os.path.relpath(path, base.ROOT)] = ast.parse(source, path)
  return out


def _calls(tree, dotted: str):
  return [
    node
    for node in ast.walk(tree)
    if isinstance(node, ast.Call) and ast.unparse(node.func) == dotted
  ]


class EntryPointsTest(base.TestCase):
  def test_every_entry_point_starts_through_cli_run(self):
    entry_points = _entry_points()
    self.assertContainsSubset(
      {"export/client.py", "export/export_model.py", "benchmarks/ranker_throughput.py",
       "benchmarks/serving_latency.py", "trainers/tfx/pipeline.py"},
      entry_points,
    )  # fmt: skip
    wrong = [path for path, tree in entry_points.items() if _calls(tree, "app.run")]
    missing = [path for path, tree in entry_points.items() if not _calls(tree, "cli.run")]
    self.assertEqual((wrong, missing), ([], []))

  def test_no_output_default_under_tmp(self):
    found = []
    for path, tree in _entry_points().items():
      for call in _calls(tree, "job_flags.define_output_dir") + _calls(tree, "flags.DEFINE_string"):
        for arg in call.args[:2]:
          if isinstance(arg, ast.Constant) and str(arg.value).startswith("/tmp"):
            found.append(f"{path}:{call.lineno} {arg.value}")
    self.assertEqual(found, [])

  def test_client_and_benchmark_user_errors_are_one_line(self):
    listed = os.path.join(self.get_temp_dir(), "list.json")
    with open(listed, "w") as f:
      json.dump([1, 2], f)
    for module, args, line in (
      (
        "export.client",
        (f"--inputs_json={listed}",),
        f"error: --inputs_json={listed!r} must hold a JSON object {{input name: values}}; it "
        "holds a list. (see --help)",
      ),
      (
        "benchmarks.synthetic_oracle",
        ("--dataset=movielens",),
        "error: The oracle exists only for --dataset=synthetic. Received: movielens (see --help)",
      ),
    ):
      with self.subTest(module=module):
        result = base.run_module(module, *args, timeout=300)
        self.assertEqual(result.returncode, 2, result.stderr[-2000:])
        self.assertEqual(result.stderr.strip().splitlines()[-1], line)
        self.assertNotIn("Traceback", result.stderr)
    nowhere = os.path.join(self.get_temp_dir(), "nowhere")
    args = (f"--ranker_dir={nowhere}", f"--output_dir={nowhere}_out")
    plain, debug = base.run_module_probes("export.export_model", args, (*args, "--debug"))
    self.assertEqual(plain.returncode, 2)
    self.assertTrue(plain.stderr.strip().splitlines()[-1].startswith("error: FileNotFoundError: "))
    self.assertNotIn("Traceback", plain.stderr)
    self.assertNotEqual(debug.returncode, 0)
    self.assertIn("Traceback", debug.stderr)  # Only with --debug.


class RestResponseProbesTest(base.TestCase):
  def test_responses_that_are_not_a_predict_answer(self):
    rest = client.RestClient("http://127.0.0.1:1", model_name="m")
    for raw, message in (
      (b"<html>oops</html>", "not JSON"),
      (b"\xff\xfe\x00", "not JSON"),
      (b"", "not JSON"),
      (b"null", "no 'outputs' object"),
      (b"42", "no 'outputs' object"),
      (b'{"outputs": {"ctr": [[1.0], [2.0, 3.0]]}}', "output 'ctr' is a ragged array"),
      (b'{"outputs": {"ctr": 5}}', "output 'ctr' is not an array"),
    ):
      with self.subTest(raw=raw):
        with self.assertRaisesRegex(client.ServingError, message):
          rest._outputs(raw)
    self.assertEqual(rest._outputs(b'{"outputs": {"ctr": [0.5]}}')["ctr"].tolist(), [0.5])


if __name__ == "__main__":
  tf.test.main()
