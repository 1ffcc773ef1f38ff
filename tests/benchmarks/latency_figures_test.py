"""Tests of the serving-latency figures on hand-made results: the ratios they plot and the PNGs."""

import doctest
import json
import os

from benchmarks import latency_figures
from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import tf

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cell(median_ms: float) -> dict:
  return {"median_ms": median_ms, "p99_ms": 2 * median_ms, "cpu_median_ms": median_ms}


LATENCY = {
  "hash (history on)": {1: _cell(2.0), 100: _cell(4.0), 1000: _cell(10.0)},
  "spm, catalogue items (history on)": {1: _cell(2.5), 100: _cell(5.0), 1000: _cell(12.0)},
  "spm predict_codes, new items (history on)": {1: _cell(2.0), 100: _cell(4.4), 1000: _cell(9.0)},
  "hash (history off)": {1: _cell(1.0), 100: _cell(2.0)},
  "spm, new items (history off)": {1: _cell(3.0), 100: _cell(9.0), 1000: _cell(30.0)},
  "spm@head, new items (history unknown)": {1: _cell(1.0)},  # No hash row of that tag.
}


class LatencyRatiosTest(base.TestCase):
  def test_ratios_by_history_tag_without_the_reference(self):
    panels = latency_figures.latency_ratios({"latency": LATENCY})
    self.assertEqual(sorted(panels), ["history off", "history on"])
    on = panels["history on"]
    self.assertEqual(sorted(on), ["spm predict_codes, new items", "spm, catalogue items"])
    self.assertEqual(on["spm, catalogue items"], [(1, 1.25), (100, 1.25), (1000, 1.2)])
    self.assertEqual(on["spm predict_codes, new items"], [(1, 1.0), (100, 1.1), (1000, 0.9)])
    # Sizes the hash row lacks are left out, not divided by nothing.
    self.assertEqual(panels["history off"], {"spm, new items": [(1, 3.0), (100, 4.5)]})

  def test_json_round_trip_gives_the_same_ratios(self):
    # JSON turns the candidate keys into strings; the figures read saved results too.
    loaded = json.loads(json.dumps({"latency": LATENCY}))
    self.assertEqual(
      latency_figures.latency_ratios(loaded), latency_figures.latency_ratios({"latency": LATENCY})
    )

  def test_hash_row(self):
    self.assertEqual(
      latency_figures.hash_row("spm [exact], new items (history on)"), "hash (history on)"
    )

  def test_docstring_example(self):
    result = doctest.testmod(latency_figures, optionflags=doctest.NORMALIZE_WHITESPACE)
    self.assertEqual((result.failed, result.attempted), (0, 2))


class PlotTest(base.TestCase):
  def _check_png(self, folder: str, name: str):
    path = os.path.join(folder, name)
    with open(path, "rb") as f:
      self.assertEqual(f.read(8), PNG_MAGIC)
    self.assertEqual(os.listdir(folder), [name])  # Written atomically: no temporary file left.

  def test_ratio_figure(self):
    folder = os.path.join(self.get_temp_dir(), "experiment")
    os.makedirs(folder)
    latency_figures.plot("experiment", {"latency": LATENCY}, os.path.join(folder, "e.png"), 1.3)
    self._check_png(folder, "e.png")

  def test_ratio_figure_of_several_runtimes(self):
    # Rows tagged "(history on, session)" find the hash row of the same tag: four panels.
    latency = {
      f"{name[:-1]}, {runtime})": cells
      for runtime in ("session", "eager")
      for name, cells in LATENCY.items()
      if name.endswith(("(history on)", "(history off)"))
    }
    panels = latency_figures.latency_ratios({"latency": latency})
    self.assertCountEqual(
      panels,
      ["history on, session", "history on, eager", "history off, session", "history off, eager"],
    )
    self.assertEqual(panels["history off, eager"], {"spm, new items": [(1, 3.0), (100, 4.5)]})
    folder = os.path.join(self.get_temp_dir(), "runtimes")
    os.makedirs(folder)
    latency_figures.plot("experiment", {"latency": latency}, os.path.join(folder, "r.png"), 1.3)
    self._check_png(folder, "r.png")

  def test_profile_figure(self):
    folder = os.path.join(self.get_temp_dir(), "profile")
    os.makedirs(folder)
    result = {
      "candidates": 100,
      "profile": {
        "hash: serving_default": {"wall_ms": 3.0, "op_ms": {"DCN": 1.0, "other": 0.5}},
        "after: predict_codes": {"wall_ms": 4.0, "op_ms": {"DCN": 1.0, "pooling": 0.25}},
      },
    }
    latency_figures.plot("profile", result, os.path.join(folder, "p.png"), 1.3)
    self._check_png(folder, "p.png")


if __name__ == "__main__":
  tf.test.main()
