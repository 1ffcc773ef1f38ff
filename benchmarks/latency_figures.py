"""Figures of `benchmarks.serving_latency` results, next to their JSON and markdown.

A result's `latency` maps row names such as "spm predict_codes, catalogue items (history on)" to
{candidates: {"median_ms", "p99_ms", "cpu_median_ms"}}; the hash export's row of the same history
tag, "hash (history on)", is the reference.

>>> latency = {"hash (history on)": {1: {"median_ms": 2.0}, 100: {"median_ms": 4.0}},
...            "spm, new items (history on)": {1: {"median_ms": 3.0}, 100: {"median_ms": 5.0}}}
>>> latency_ratios({"latency": latency})
{'history on': {'spm, new items': [(1, 1.5), (100, 1.25)]}}
"""

import numpy as np

from trainers import report_format

plt = report_format.plt


def hash_row(name: str) -> str:
  """The hash export's row of `name`'s history tag: "x (history on)" -> "hash (history on)"."""
  return "hash (" + name.split("(", 1)[1]


def latency_ratios(result: dict) -> dict:
  """{history tag: {export row without its tag: [(candidates, median ratio to hash)]}} of the
  `experiment` and `paper` suites' rows (hash, the reference, left out)."""
  latency, panels = result["latency"], {}
  for name, cells in latency.items():
    base = latency.get(hash_row(name)) if "(" in name else None
    if not base or name.startswith("hash"):
      continue
    label, tag = name.rsplit(" (", 1)
    points = [
      (int(c), cells[c]["median_ms"] / base[c]["median_ms"])
      for c in sorted(cells, key=int)
      if c in base
    ]
    panels.setdefault(tag.rstrip(")"), {})[label] = points
  return panels


def plot(suite: str, result: dict, path: str, target: float) -> None:
  """`path` (PNG): median latency relative to hash against candidates per request, a panel per
  row tag ("history on" or, with several runtimes, "history on, session"), two per row, with the
  target line (`experiment`, `paper`); op time per component of each profiled case as stacked
  bars (`profile`)."""
  if suite == "profile":
    _profile_figure(result, path)
  else:
    _ratio_figure(result, path, suite, target)


def _profile_figure(result: dict, path: str) -> None:
  cases = result["profile"]
  components = sorted({k for case in cases.values() for k in case["op_ms"]})
  fig, ax = plt.subplots(figsize=(9, 1.2 + 0.7 * len(cases)))
  left = np.zeros(len(cases))
  colours = plt.cm.tab20(np.linspace(0, 1, max(len(components), 2)))
  for component, colour in zip(components, colours):
    widths = np.array([case["op_ms"].get(component, 0.0) for case in cases.values()])
    ax.barh(list(cases), widths, left=left, label=component, color=colour)
    left += widths
  ax.invert_yaxis()
  ax.set_xlabel(f"op time, ms (one request of {result['candidates']} candidates, history on)")
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  report_format.save_figure(fig, path)


def _ratio_figure(result: dict, path: str, suite: str, target: float) -> None:
  panels = latency_ratios(result)
  columns = min(max(len(panels), 1), 2)  # Tags "history on, session", ...: a row per history.
  grid_rows = -(-max(len(panels), 1) // columns)
  fig, axes = plt.subplots(
    grid_rows, columns, figsize=(9 * columns, 4.8 * grid_rows), sharey=True, squeeze=False
  )
  labels = sorted({label for rows in panels.values() for label in rows})
  colours = plt.cm.tab20(np.linspace(0, 1, max(len(labels), 2)))
  for ax in axes.flat[len(panels) :]:
    ax.set_visible(False)
  for ax, tag in zip(axes.flat, sorted(panels, reverse=True)):  # "history on" first.
    for label, points in sorted(panels[tag].items()):
      ax.plot(
        *zip(*points),
        "--" if "predict_codes" in label else "-",  # Dashed: the codes signature.
        marker="x" if "new items" in label else "o",
        ms=4,
        color=colours[labels.index(label)],
        label=label,
      )
    ax.axhline(target, color="red", ls=":", label=f"target {target}x")
    ax.axhline(1.0, color="gray", ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("candidates per request")
    ax.set_title(tag)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  for ax in axes[:, 0]:
    ax.set_ylabel("median latency / hash's, same run")
  if max((r for rows in panels.values() for p in rows.values() for _, r in p), default=1) > 4:
    axes[0][0].set_yscale("log")  # Shared by every panel (sharey).
  fig.suptitle(f"Serving latency relative to hash ({suite} suite)")
  report_format.save_figure(fig, path)
