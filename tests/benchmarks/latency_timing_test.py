"""Tests of `benchmarks.latency_timing` on a stand-in export: the TF1-session path (what
tensorflow_model_server runs) gives the eager signature's outputs, and both runtimes time alike.
The module defines no flags, so importing it beside any other test module cannot clash."""

import os

import numpy as np

from benchmarks import latency_timing
from export import signatures
from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import TestCase, tf
from tests.export import stand_in_model


class RuntimesTest(TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.export_dir = os.path.join(tf.compat.v1.test.get_temp_dir(), "latency_export")
    tf.keras.backend.clear_session()
    stand_in_model.export(cls.export_dir)
    cls.loaded = tf.saved_model.load(cls.export_dir)
    cls.inputs = stand_in_model.sample_inputs(6)

  def test_session_matches_the_eager_signature(self):
    for signature in (signatures.SIGNATURE_DEFAULT, signatures.SIGNATURE_CODES):
      with self.subTest(signature=signature):
        inputs = dict(self.inputs)
        if signature == signatures.SIGNATURE_CODES:
          codes = self.loaded.signatures[signatures.SIGNATURE_SEMANTIC_ID](
            content_embedding=tf.constant(inputs.pop("content_embedding"))
          )["codes"]
          inputs["codes"] = codes.numpy()
        session = latency_timing.SessionSignature(self.export_dir, signature)
        got = session(session.feeds(inputs))
        session.close()
        want = self.loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        self.assertCountEqual(got, ["ctr", "second_label"])
        for name, value in want.items():
          self.assertEqual(got[name].shape, (6,))
          self.assertAllClose(got[name], value, atol=1e-6)

  def test_session_rejects_bad_input_as_the_server_does(self):
    session = latency_timing.SessionSignature(self.export_dir, signatures.SIGNATURE_DEFAULT)
    inputs = dict(
      self.inputs, content_embedding=np.full_like(self.inputs["content_embedding"], np.nan)
    )
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "content_embedding"):
      session(session.feeds(inputs))
    session.close()

  def test_both_runtimes_time_every_repetition(self):
    functions, requests = {}, {}
    for runtime in ("session", "eager"):
      call, prepare = latency_timing.caller(
        runtime, self.loaded, self.export_dir, signatures.SIGNATURE_DEFAULT
      )
      functions[runtime] = call
      requests[runtime] = prepare({k: tf.constant(v) for k, v in self.inputs.items()})
    times = latency_timing.time_requests(functions, requests, repetitions=4, warmup=1)
    self.assertCountEqual(times, ["session", "eager"])
    for wall, cpu in times.values():
      self.assertEqual(wall.shape, (4,))
      self.assertEqual(cpu.shape, (4,))
      self.assertTrue(np.all(wall > 0))
    functions["session"].close()


if __name__ == "__main__":
  tf.test.main()
