"""Tests for export/export_model.py: versioned TF Serving layout, signatures, assets, bad input."""

import os
import subprocess
import sys

import numpy as np

from export import export_model, serving_assets
from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import TestCase, tf
from tests.export import stand_in_model


class ExportModelTest(TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.ranker_dir = os.path.join(tf.compat.v1.test.get_temp_dir(), "ranker_run")
    stand_in_model.save_ranker(os.path.join(cls.ranker_dir, "saved_model"))

  def test_export_writes_versions_signatures_and_assets(self):
    base_dir = os.path.join(self.get_temp_dir(), "serving", "ranker")
    first = export_model.export(self.ranker_dir, base_dir)
    second = export_model.export(
      os.path.join(self.ranker_dir, "saved_model"), base_dir, export_model.ExportConfig()
    )
    self.assertEqual(first, os.path.join(base_dir, "1"))
    self.assertEqual(second, os.path.join(base_dir, "2"))
    self.assertCountEqual(
      os.listdir(base_dir), ["1", "2", "models.config", "batching_parameters.txt"]
    )
    loaded = tf.saved_model.load(second)
    self.assertCountEqual(loaded.signatures, ["serving_default", "predict_examples", "semantic_id"])
    inputs = stand_in_model.sample_inputs(3)
    ranker = tf.saved_model.load(os.path.join(self.ranker_dir, "saved_model"))
    expected = ranker.signatures["serving_default"](**inputs)
    outputs = loaded.signatures["serving_default"](**inputs)
    self.assertAllClose(outputs["ctr"], expected["ctr"], atol=1e-6)
    self.assertAllClose(outputs["second_label"], expected["second_label"], atol=1e-6)
    self.assertAllEqual(
      loaded.signatures["semantic_id"](content_embedding=inputs["content_embedding"])["codes"],
      ranker.signatures["semantic_id"](content_embedding=inputs["content_embedding"])["codes"],
    )
    logs = serving_assets.read_warmup_requests(second)
    self.assertEqual(
      [log.predict_log.request.inputs["user_id"].tensor_shape.dim[0].size for log in logs], [1, 100]
    )
    config = serving_assets.read_model_config(os.path.join(base_dir, "models.config"))
    self.assertEqual(config.model_config_list.config[0].base_path, "/models/ranker")

  def test_wrapped_ranker_validates_input(self):
    base_dir = os.path.join(self.get_temp_dir(), "validated")
    export_dir = export_model.export(self.ranker_dir, base_dir)
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    inputs = stand_in_model.sample_inputs(3)
    inputs["content_embedding"][2, 1] = np.inf
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "content_embedding.*finite"):
      serve(**inputs)
    empty = serve(**stand_in_model.sample_inputs(0))
    self.assertEqual(empty["ctr"].shape.as_list(), [0])

  def test_explicit_version_and_existing_version(self):
    base_dir = os.path.join(self.get_temp_dir(), "explicit")
    config = export_model.ExportConfig(model_name="sid_ranker", version=7, warmup_batch_sizes=(2,))
    self.assertEqual(export_model.export(self.ranker_dir, base_dir, config), base_dir + "/7")
    self.assertEqual(export_model.next_version(base_dir), 8)
    with self.assertRaisesRegex(FileExistsError, "Version 7 already exists"):
      export_model.export(self.ranker_dir, base_dir, config)
    self.assertCountEqual(os.listdir(base_dir), ["7", "models.config", "batching_parameters.txt"])
    (log,) = serving_assets.read_warmup_requests(base_dir + "/7")
    self.assertEqual(log.predict_log.request.model_spec.name, "sid_ranker")

  def test_optimizer_state_is_not_exported(self):
    ranker_dir = os.path.join(self.get_temp_dir(), "trained")
    stand_in_model.save_ranker(ranker_dir, with_optimizer=True)
    ranker_vars = tf.train.list_variables(os.path.join(ranker_dir, "variables", "variables"))
    self.assertTrue(any("optimizer" in name for name, _ in ranker_vars))
    export_dir = export_model.export(ranker_dir, os.path.join(self.get_temp_dir(), "pruned"))
    names = [name for name, _ in tf.train.list_variables(export_dir + "/variables/variables")]
    self.assertFalse([name for name in names if "optimizer" in name])
    self.assertTrue([name for name in names if "piece_embedding" in name or "ranker" in name])

  def test_command_line(self):
    base_dir = os.path.join(self.get_temp_dir(), "cli")
    command = [sys.executable, "-m", "export.export_model", f"--output_dir={base_dir}"]
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = lambda *args: subprocess.run(  # noqa: E731
      command + list(args), capture_output=True, text=True, cwd=repo
    )
    ok = run(f"--ranker_dir={self.ranker_dir}", "--check=none", "--model_name=sid")
    self.assertEqual(ok.returncode, 0, ok.stderr[-2000:])
    self.assertIn(f"exported {base_dir}/1", ok.stdout)
    self.assertIn("semantic_id: {'content_embedding': ('float32', [None, 8])}", ok.stdout)
    missing = run(f"--ranker_dir={base_dir}/nowhere")
    self.assertEqual(missing.returncode, 2)
    self.assertIn("error: FileNotFoundError: No SavedModel in --ranker_dir", missing.stderr)
    self.assertNotIn("Traceback", missing.stderr)
    unsafe = run(f"--ranker_dir={self.ranker_dir}", "--model_name=..")
    self.assertEqual(unsafe.returncode, 2)
    self.assertEqual(
      unsafe.stderr.strip().splitlines()[-1],
      "error: --model_name must be one path component: not empty, '.' or '..', without '/' or "
      "'\\'. Received: --model_name='..' (see --help)",
    )
    self.assertNotIn("Traceback", unsafe.stderr)
    self.assertCountEqual(os.listdir(base_dir), ["1", "models.config", "batching_parameters.txt"])

  def test_bad_arguments(self):
    with self.assertRaisesRegex(FileNotFoundError, "No SavedModel in --ranker_dir"):
      export_model.export(self.get_temp_dir(), os.path.join(self.get_temp_dir(), "out"))
    with self.assertRaisesRegex(ValueError, "version=0"):
      export_model.ExportConfig(version=0)
    with self.assertRaisesRegex(ValueError, "catalogue_match='id'"):
      export_model.ExportConfig(catalogue_match="id")
    with self.assertRaisesRegex(ValueError, "warmup_batch_sizes"):
      export_model.ExportConfig(max_batch_size=10, warmup_batch_sizes=(100,))
    for name in ("a/b", "..", ".", "", "a\\b", "../x"):
      with self.subTest(model_name=name):
        with self.assertRaises(ValueError) as raised:
          export_model.ExportConfig(model_name=name)
        self.assertEqual(
          str(raised.exception),
          "`model_name` must be a plain name, one path component: not empty, '.' or '..', "
          f"without '/' or '\\'. Received: model_name={name!r}",
        )
    self.assertEqual(
      export_model.ExportConfig(model_name="ranker.v2-a_b").model_name, "ranker.v2-a_b"
    )

  def test_failed_export_leaves_no_version_and_no_temp_folder(self):
    base_dir = os.path.join(self.get_temp_dir(), "failed")
    with self.assertRaisesRegex(ValueError, "The export differs from the ranker"):
      export_model.export(self.ranker_dir, base_dir, export_model.ExportConfig(tolerance=-1.0))
    self.assertEqual(os.listdir(base_dir), [])

  def test_export_never_writes_through_a_planted_temp_name(self):
    # The old code wrote to the predictable BASE/.tmp-<version>-<pid> after rmtree(ignore_errors),
    # which leaves a planted symlink in place and writes the export through it.
    base_dir = os.path.join(self.get_temp_dir(), "planted")
    victim = os.path.join(self.get_temp_dir(), "victim")
    os.makedirs(base_dir)
    os.makedirs(victim)
    planted = os.path.join(base_dir, f".tmp-1-{os.getpid()}")
    os.symlink(victim, planted)
    self.addCleanup(os.unlink, planted)  # The test framework's cleanup does not remove links.
    export_dir = export_model.export(self.ranker_dir, base_dir)
    self.assertEqual(os.listdir(victim), [])
    self.assertTrue(os.path.islink(planted))
    self.assertTrue(os.path.isfile(os.path.join(export_dir, "saved_model.pb")))
    umask = os.umask(0o022)
    os.umask(umask)
    self.assertEqual(os.stat(export_dir).st_mode & 0o777, 0o777 & ~umask)  # Not mkdtemp's 0700.

  def test_ranker_without_ctr_is_rejected(self):
    path = os.path.join(self.get_temp_dir(), "no_ctr")
    module = tf.Module()
    module.serve = tf.function(
      lambda content_embedding: {"score": tf.reduce_sum(content_embedding, 1)},
      input_signature=[tf.TensorSpec([None, 4], tf.float32, name="content_embedding")],
    )
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    with self.assertRaisesRegex(ValueError, "must return 'ctr'"):
      export_model.export(path, os.path.join(self.get_temp_dir(), "out"))


if __name__ == "__main__":
  tf.test.main()
