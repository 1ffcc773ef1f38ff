"""What the reports share (`experiment_report`, `rolling_origin_report`, `analyze_sids_report`):
markdown tables, the verdict of a difference's interval, and figures written atomically as PNG.

Example:
>>> table(["scheme", "AUC"], [["hash", "0.71"]])
['| scheme | AUC |', '|---|---|', '| hash | 0.71 |']
>>> verdict(0.01, 0.03), verdict(-0.02, 0.01)
('above', 'not distinguishable from')
"""

from typing import Iterable, List, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from features import io_utils  # noqa: E402


def row(cells: Iterable[str]) -> str:
  """One markdown table row."""
  return "| " + " | ".join(cells) + " |"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> List[str]:
  """A markdown table's lines: header, separator, then one line per row."""
  return [row(header), "|" + "---|" * len(header)] + [row(r) for r in rows]


def verdict(low: float, high: float) -> str:
  """Where a difference's interval [low, high] lies against zero, in the reports' words."""
  if low > 0:
    return "above"
  if high < 0:
    return "below"
  return "not distinguishable from"


def save_figure(fig, path: str) -> None:
  """Lays `fig` out, writes it to `path` as a PNG (atomically) and closes it."""
  fig.tight_layout()
  with io_utils.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=110)
  plt.close(fig)
