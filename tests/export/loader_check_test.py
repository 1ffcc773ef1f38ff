"""Tests for export/loader_check.py and export/contract_check.py.

The C++ tests COMPILE the loader once per class (g++, about 20-50 s on two cores; skipped with a
reason when g++ is missing); set SEMANTIC_IDS_LOADER_BUILD_DIR to a persistent directory to reuse
the binary between runs. The stand-in export holds core TF ops only and runs with no op library
loaded; its TF Text twin is the negative control: it fails every check until TF Text's kernels are
loaded.
"""

import os
import shutil

import numpy as np

from export import contract_check, loader_check
from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import TestCase, tf
from tests.export import stand_in_model


class LoaderCheckTest(TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.base_dir = os.path.join(tf.compat.v1.test.get_temp_dir(), "loader_export")
    cls.export_dir = os.path.join(cls.base_dir, "1")
    stand_in_model.export(cls.export_dir)

  def test_named_tensor_list_round_trip(self):
    path = os.path.join(self.get_temp_dir(), "tensors.ntl")
    tensors = {
      "content_embedding": np.arange(6, dtype=np.float32).reshape(2, 3),
      "user_id": np.array([b"", b"a\x00b"], dtype=object),
      "codes": np.array([[1, 2]], dtype=np.int32),
    }
    loader_check.write_named_tensors(path, tensors)
    read = loader_check.read_named_tensors(path)
    self.assertEqual(list(read), list(tensors))
    for name, value in tensors.items():
      self.assertAllEqual(read[name], value)
      self.assertEqual(read[name].dtype, value.dtype)

  def test_tf_text_op_libraries_are_only_found_on_request(self):
    names = [os.path.basename(path) for path in loader_check.tf_text_op_libraries()]
    self.assertIn("_sentencepiece_tokenizer.so", names)  # The negative control below needs it.

  def test_resolve_export_dir_picks_the_latest_version(self):
    base_dir = os.path.join(self.get_temp_dir(), "base")
    for version in ("2", "10", "tmp-11"):
      os.makedirs(os.path.join(base_dir, version))
    open(os.path.join(base_dir, "10", "saved_model.pb"), "w").close()
    self.assertEqual(contract_check.resolve_export_dir(base_dir), os.path.join(base_dir, "10"))
    with self.assertRaisesRegex(FileNotFoundError, "No SavedModel"):
      contract_check.resolve_export_dir(self.get_temp_dir() + "/missing")

  def test_fresh_python_process_gets_the_same_predictions(self):
    results = contract_check.run_checks(self.base_dir + "/1", batch_size=5, skip_cpp=True)
    summary = contract_check.format_summary(results)
    self.assertEqual(
      [r.name for r in results],
      ["core_ops_only", "fresh_python", "fresh_python_examples", "fresh_python_codes"],
    )
    self.assertTrue(all(r.passed for r in results), summary)
    self.assertIn("project modules imported: none; TF Text modules: none", summary)
    self.assertIn("non-core: none", summary)

  def _binary(self):
    if shutil.which("g++") is None:
      self.skipTest("g++ is not installed: the C++ LoadSavedModel check needs it")
    build_dir = os.environ.get("SEMANTIC_IDS_LOADER_BUILD_DIR") or os.path.join(
      tf.compat.v1.test.get_temp_dir(), "loader_build"
    )
    return loader_check.build_binary(build_dir), build_dir

  def test_cpp_loader_matches_python_and_rejects_bad_input(self):
    """COMPILES load_and_run.cc once, then runs the contract's C++ checks with it."""
    binary, build_dir = self._binary()
    inputs = stand_in_model.sample_inputs(6)
    run = loader_check.run_signature(binary, self.export_dir, inputs)
    self.assertTrue(run.ok, run.log)
    self.assertEqual((run.libraries_loaded, run.tf_text_mapped), (0, ()))
    python = tf.saved_model.load(self.export_dir).signatures["serving_default"](**inputs)
    for name in ("ctr", "second_label"):
      self.assertAllClose(run.outputs[name], python[name], atol=1e-5, rtol=0)
    semantic = loader_check.run_signature(
      binary, self.export_dir, {"content_embedding": inputs["content_embedding"]}, "semantic_id"
    )
    self.assertAllEqual(
      semantic.outputs["codes"],
      tf.saved_model.load(self.export_dir).signatures["semantic_id"](
        content_embedding=inputs["content_embedding"]
      )["codes"],
    )
    empty = loader_check.run_signature(binary, self.export_dir, stand_in_model.sample_inputs(0))
    self.assertEqual(empty.outputs["ctr"].shape, (0,))
    double = dict(inputs, content_embedding=inputs["content_embedding"].astype(np.float64))
    status = loader_check.run_signature(binary, self.export_dir, double).status
    self.assertRegex(status, "^INVALID_ARGUMENT: Expects arg.* float but double is provided")
    short = dict(inputs, item_id=inputs["item_id"][:5])
    status = loader_check.run_signature(binary, self.export_dir, short).status
    self.assertRegex(status, "^INVALID_ARGUMENT: .*item_id.*as many rows")
    wrong_rank = loader_check.run_signatures(
      binary,
      self.export_dir,
      [
        ("serving_default", dict(inputs, content_embedding=inputs["content_embedding"].ravel())),
        ("serving_default", dict(inputs, user_id=inputs["user_id"].reshape(-1, 1))),
      ],
    )
    self.assertEqual(
      [run.status for run in wrong_rank],
      [
        "INVALID_ARGUMENT: input `content_embedding` of signature serving_default must have rank "
        "2, shape [?,8]; received shape [48]",
        "INVALID_ARGUMENT: input `user_id` of signature serving_default must have rank 1, shape "
        "[?]; received shape [6,1]",
      ],
    )

    codes = dict(inputs, codes=semantic.outputs["codes"])
    del codes["content_embedding"]
    runs = loader_check.run_signatures(
      binary,
      self.export_dir,
      [
        ("predict_codes", codes),
        ("predict_codes", dict(codes, codes=codes["codes"] + 4)),
        ("predict_codes", dict(codes, codes=codes["codes"].astype(np.int64))),
      ],
    )
    self.assertAllClose(runs[0].outputs["ctr"], python["ctr"], atol=1e-6, rtol=0)
    self.assertRegex(runs[1].status, r"^INVALID_ARGUMENT: .*Input `codes` must hold values in")
    self.assertRegex(runs[2].status, "^INVALID_ARGUMENT: Expects arg.* int32 but int64 is provided")

    reference = {k: v.numpy() for k, v in python.items()}
    requests = {"serving_default": inputs, "predict_codes": codes}
    results = contract_check.cpp_checks(self.export_dir, requests, reference, build_dir=build_dir)
    summary = contract_check.format_summary(results)
    self.assertTrue(all(r.passed for r in results), summary)
    self.assertIn("op libraries loaded: 0, TF Text libraries mapped: none", summary)
    names = [r.name for r in results]
    self.assertEqual(
      names,
      ["cpp_loader", "cpp_codes", "cpp_bad_input_nan", "cpp_bad_input_width"]
      + ["cpp_bad_codes_range", "cpp_bad_codes_length", "cpp_bad_codes_dtype"],
    )

  def test_a_tf_text_export_fails_every_check_without_tf_text(self):
    """The negative control: the same model tokenizing with TF Text's kernels."""
    export_dir = os.path.join(self.get_temp_dir(), "tf_text_export")
    stand_in_model.export(export_dir, model_class=stand_in_model.TfTextStandInRanker)
    self.assertContainsSubset(
      {"SentencepieceOp", "SentencepieceTokenizeOp"}, contract_check.non_core_ops(export_dir)
    )
    results = contract_check.run_checks(export_dir, batch_size=3, skip_cpp=True)
    self.assertEqual(
      [(r.name, r.passed) for r in results], [("core_ops_only", False), ("fresh_python", False)]
    )
    self.assertIn("Op type not registered 'Sentencepiece", results[1].detail)
    binary, _ = self._binary()
    inputs = stand_in_model.sample_inputs(3)
    with self.assertRaisesRegex(loader_check.LoaderCheckError, "Op type not registered"):
      loader_check.run_signature(binary, export_dir, inputs)
    run = loader_check.run_signature(
      binary, export_dir, inputs, op_libraries=loader_check.tf_text_op_libraries()
    )
    self.assertTrue(run.ok, run.log)
    self.assertGreater(run.libraries_loaded, 0)
    self.assertNotEmpty(run.tf_text_mapped)  # What the core-ops checks require to be empty.


if __name__ == "__main__":
  tf.test.main()
