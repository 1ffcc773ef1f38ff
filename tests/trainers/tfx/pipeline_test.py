"""The TFX pipeline end to end on tiny synthetic data, its ML Metadata, its cache and bad input.

Needs the optional TFX environment: `bash scripts/setup_tfx.sh`, then
`.venv-tfx/bin/python -m pytest -q tests/trainers/tfx`. In the core environment every test that
needs TFX is skipped (with that reason); the import-guard test runs everywhere.
"""

import fnmatch
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import tf

HAS_TFX = importlib.util.find_spec("tfx") is not None
NO_TFX = (
  "tfx is not importable in this Python (the core environment); run `bash scripts/setup_tfx.sh` "
  "and `.venv-tfx/bin/python -m pytest -q tests/trainers/tfx`"
)
if HAS_TFX:  # Conditional, so the core environment collects this file and skips (DESIGN: optional).
  from tfx.components.example_gen.import_example_gen.component import ImportExampleGen
  from tfx.orchestration import metadata
  from tfx.orchestration import pipeline as tfx_pipeline
  from tfx.orchestration.local.local_dag_runner import LocalDagRunner
  from tfx.proto import example_gen_pb2

  from export import contract_check
  from features import sid_table
  from model import rqvae
  from trainers.tfx import artifact_types, component, examples_io, metadata_report

TINY = (
  "--synthetic_items=300",
  "--synthetic_users=60",
  "--synthetic_interactions=3000",
  "--synthetic_dim=8",
  "--sid_levels=2",
  "--sid_codebook_size=4",
  "--rqvae_epochs=1",
  "--epochs=1",
  "--table_rows=40",
  "--item_representation=spm",
)
OUR_TYPES = {"SemanticIdModel", "SidTable", "SidSpmModel"}
NODES = ("ItemsExampleGen", "InteractionsExampleGen", "SemanticIdGen", "SidRankerTrainer", "Pusher")


def _by_type(report, name):
  return {i: a for i, a in report["artifacts"].items() if a["type"] == name}


def _one(report, name):
  (artifact,) = _by_type(report, name).values()
  return artifact


def _executions(report, run):
  return {e["node"]: e for e in report["runs"][run]["executions"]}


class ImportGuardTest(base.TestCase):
  def test_import_without_tfx_says_how_to_install_it(self):
    code = "import sys; sys.modules['tfx'] = None\nimport trainers.tfx"
    result = subprocess.run(
      [sys.executable, "-c", code], cwd=base.ROOT, capture_output=True, text=True, timeout=300
    )
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("ImportError: trainers.tfx needs the optional TFX environment", result.stderr)
    self.assertIn("bash scripts/setup_tfx.sh", result.stderr)


@unittest.skipUnless(HAS_TFX, NO_TFX)
class PipelineTest(base.TestCase):
  """One pipeline run and one cached re-run through the job (`python -m trainers.tfx.pipeline`)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.out = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    args = (*TINY, f"--output_dir={cls.out}")
    cls.first = base.run_module("trainers.tfx.pipeline", *args, check=True)
    cls.second = base.run_module("trainers.tfx.pipeline", *args, check=True)
    cls.report = metadata_report.read(os.path.join(cls.out, "metadata.sqlite"))

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.out, ignore_errors=True)
    super().tearDownClass()

  def pushed_dir(self):
    return _one(self.report, "PushedModel")["properties"]["pushed_destination"]

  def test_every_artifact_is_recorded_with_its_type_and_uri(self):
    root = os.path.join(self.out, "pipeline_root")
    self.assertContainsSubset(
      OUR_TYPES | {"Examples", "Model", "ModelRun", "PushedModel"}, self.report["artifact_types"]
    )
    self.assertLen(_by_type(self.report, "Examples"), 2)
    made = {}  # artifact id -> the URI TFX gives an output: <root>/<node>/<output key>/<execution>
    for node, execution in _executions(self.report, 0).items():
      made.update(
        {a: os.path.join(root, node, "*", str(execution["id"])) for a in execution["outputs"]}
      )
    self.assertEqual(sorted(made), sorted(self.report["artifacts"]))
    for artifact_id, artifact in self.report["artifacts"].items():
      self.assertEqual(artifact["state"], "LIVE", artifact)
      self.assertTrue(fnmatch.fnmatch(artifact["uri"], made[artifact_id]), artifact)
      self.assertTrue(os.path.isdir(artifact["uri"]), artifact)
    for type_name, path in (
      ("SemanticIdModel", "rqvae/config.json"),
      ("SemanticIdModel", "metrics.json"),
      ("SidTable", "sid_table.npz"),
      ("SidSpmModel", "spm.model"),
      ("Model", "Format-Serving/saved_model.pb"),
      ("ModelRun", "ranker/metrics.json"),
      ("PushedModel", "saved_model.pb"),
    ):
      self.assertTrue(os.path.isfile(os.path.join(_one(self.report, type_name)["uri"], path)), path)
    sid_model = _one(self.report, "SemanticIdModel")["properties"]
    self.assertEqual((sid_model["num_levels"], sid_model["codebook_size"]), (2, 4))
    self.assertEqual((sid_model["input_dim"], sid_model["n_items"]), (8, 300))
    self.assertEqual(_one(self.report, "SidTable")["properties"]["n_items"], 300)
    self.assertGreaterEqual(_one(self.report, "SidSpmModel")["properties"]["vocab_size"], 2 * 4 + 1)
    executions = _executions(self.report, 0)
    self.assertEqual(sorted(executions), sorted(NODES))
    self.assertEqual(executions["SemanticIdGen"]["type"], "trainers.tfx.component.SemanticIdGen")
    self.assertEqual(
      executions["SidRankerTrainer"]["type"], "trainers.tfx.ranker_trainer.SidRankerTrainer"
    )
    self.assertEqual({e["state"] for e in executions.values()}, {"COMPLETE"})

  def test_lineage_links_the_semantic_id_artifacts_to_the_trainer_and_pusher(self):
    executions = _executions(self.report, 0)
    ids = {name: next(iter(_by_type(self.report, name))) for name in OUR_TYPES | {"Model"}}
    sid_gen, trainer = executions["SemanticIdGen"], executions["SidRankerTrainer"]
    self.assertContainsSubset(
      [ids["SemanticIdModel"], ids["SidTable"], ids["SidSpmModel"]], sid_gen["outputs"]
    )
    self.assertContainsSubset([ids["SemanticIdModel"], ids["SidSpmModel"]], trainer["inputs"])
    self.assertIn(ids["Model"], trainer["outputs"])
    self.assertIn(ids["Model"], executions["Pusher"]["inputs"])

  def test_fingerprint_is_carried_from_semantic_id_gen_to_the_export(self):
    sid_model = _one(self.report, "SemanticIdModel")
    fingerprint = sid_model["properties"]["fingerprint"]
    loaded = rqvae.load_rqvae(os.path.join(sid_model["uri"], artifact_types.RQVAE_DIR))
    self.assertEqual(rqvae.fingerprint(loaded), fingerprint)
    table_artifact = _one(self.report, "SidTable")
    table = sid_table.read_sid_table(
      os.path.join(table_artifact["uri"], artifact_types.SID_TABLE_FILE), fingerprint
    )
    self.assertEqual(table_artifact["properties"]["checksum"], table.manifest["checksum"])
    self.assertEqual(table_artifact["properties"]["fingerprint"], fingerprint)
    self.assertEqual(_one(self.report, "SidSpmModel")["properties"]["fingerprint"], fingerprint)
    model = _one(self.report, "Model")["properties"]
    self.assertEqual((model["sid_fingerprint"], model["scheme"]), (fingerprint, "spm"))
    with open(os.path.join(self.pushed_dir(), "assets.extra", "semantic_id.json")) as f:
      exported = json.load(f)
    self.assertEqual(exported["fingerprint"], fingerprint)
    self.assertEqual(exported["semantic_id_model"], sid_model["uri"])

  def test_second_run_is_served_from_the_cache(self):
    self.assertLen(self.report["runs"], 2)
    first, second = _executions(self.report, 0), _executions(self.report, 1)
    self.assertEqual({e["state"] for e in second.values()}, {"CACHED"})
    for node in NODES:
      self.assertEqual(second[node]["outputs"], first[node]["outputs"], node)
    self.assertIn("rewritten: none (unchanged)", self.second.stdout)
    self.assertIn("0 complete, 5 cached", self.second.stdout)
    serving = os.path.join(self.out, "serving", "ranker")
    self.assertLen([d for d in os.listdir(serving) if d.isdigit()], 1)
    self.assertTrue(os.path.isfile(os.path.join(serving, "models.config")))

  def test_pushed_model_serves_the_sid_table_codes(self):
    pushed = self.pushed_dir()
    self.assertTrue(
      os.path.isfile(os.path.join(pushed, "assets.extra", "tf_serving_warmup_requests"))
    )
    loaded = tf.saved_model.load(pushed)
    self.assertContainsSubset(
      ["serving_default", "predict_examples", "semantic_id"], list(loaded.signatures)
    )
    items, embeddings = examples_io.read_items([os.path.join(self.out, "data", "items")])
    codes = loaded.signatures["semantic_id"](content_embedding=tf.constant(embeddings))["codes"]
    table_uri = _one(self.report, "SidTable")["uri"]
    table = sid_table.read_sid_table(os.path.join(table_uri, artifact_types.SID_TABLE_FILE))
    np.testing.assert_array_equal(codes.numpy(), table.codes_for(items["item_id"].to_numpy()))

  def test_pushed_model_passes_the_contract_check(self):
    results = contract_check.run_checks(self.pushed_dir(), skip_cpp=True)
    self.assertTrue(all(r.passed for r in results), contract_check.format_summary(results))
    self.assertContainsSubset(["fresh_python", "fresh_python_examples"], [r.name for r in results])


@unittest.skipUnless(HAS_TFX, NO_TFX)
class BadInputTest(base.TestCase):
  """SemanticIdGen on bad items Examples: the run fails naming the feature; nothing registered."""

  def run_semantic_id_gen(self, columns):
    work = self.get_temp_dir()
    examples_io.write_records(
      os.path.join(work, "items", "items.tfrecord"), examples_io.serialize(columns)
    )
    items = ImportExampleGen(
      input_base=os.path.join(work, "items"),
      output_config=example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
          splits=[example_gen_pb2.SplitConfig.Split(name="items", hash_buckets=1)]
        )
      ),
    )
    sid_gen = component.SemanticIdGen(
      items=items.outputs["examples"], num_levels=2, codebook_size=4, epochs=1, embedding_dim=8
    )
    db = os.path.join(work, "metadata.sqlite")
    pipeline = tfx_pipeline.Pipeline(
      pipeline_name="bad_input",
      pipeline_root=os.path.join(work, "root"),
      components=[items, sid_gen],
      metadata_connection_config=metadata.sqlite_metadata_connection_config(db),
      beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"],
    )
    return lambda: LocalDagRunner().run(pipeline), db, os.path.join(work, "root", "SemanticIdGen")

  @base.parameterized.named_parameters(
    (
      "missing_embedding",
      {"item_id": np.arange(20)},
      r"no record has the feature 'content_embedding' \(float32\[8\]\); the records carry "
      r"\['item_id'\]",
    ),
    (
      "wrong_width",
      {"item_id": np.arange(20), "content_embedding": np.ones((20, 6), np.float32)},
      r"feature 'content_embedding' has width 6 in record 0 \(item_id=\d+\); expected 8",
    ),
  )
  def test_bad_items_fail_the_component_and_register_nothing(self, columns, message):
    run, db, outputs = self.run_semantic_id_gen(columns)
    with self.assertRaisesRegex(ValueError, message):
      run()
    report = metadata_report.read(db)
    states = {e["node"]: e["state"] for e in report["runs"][-1]["executions"]}
    self.assertEqual(states["SemanticIdGen"], "FAILED")
    self.assertEqual([a for a in report["artifacts"].values() if a["type"] in OUR_TYPES], [])
    written = [os.path.join(r, f) for r, _, files in os.walk(outputs) for f in files]
    self.assertEqual(written, [])


@unittest.skipUnless(HAS_TFX, NO_TFX)
class ExamplesIoTest(base.TestCase):
  def test_records_round_trip_and_unchanged_files_keep_their_mtime(self):
    rng = np.random.default_rng(0)
    columns = {
      "item_id": np.array([3, 1, 2]),
      "content_embedding": rng.normal(size=(3, 4)).astype(np.float32),
    }
    path = os.path.join(self.get_temp_dir(), "items", "items.tfrecord")
    self.assertTrue(examples_io.write_records(path, examples_io.serialize(columns)))
    before = os.stat(path).st_mtime_ns
    self.assertFalse(examples_io.write_records(path, examples_io.serialize(columns)))
    self.assertEqual(os.stat(path).st_mtime_ns, before)
    items, embeddings = examples_io.read_items([os.path.dirname(path)], expected_dim=4)
    self.assertEqual(items["item_id"].tolist(), [1, 2, 3])
    self.assertEqual(items["first_seen"].tolist(), [0, 0, 0])
    np.testing.assert_array_equal(embeddings, columns["content_embedding"][[1, 2, 0]])


if __name__ == "__main__":
  tf.test.main()
