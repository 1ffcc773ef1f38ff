"""Findings, markdown tables and plots of `trainers.analyze_sids` (analysis.json -> analysis.md,
PNGs). Every figure is stated with its interval and its chance level, never against a target."""

import os
from typing import Any, Dict, List

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from trainers import report_format  # noqa: E402

REFERENCE = "reference"
PLOTS = ("agreement.png", "subtrie_sizes.png", "prefix_similarity.png", "category_agreement.png")


def _ci(d: Dict[str, float], digits: int = 3) -> str:
  return f"{d['value']:.{digits}f} [{d['low']:.{digits}f}, {d['high']:.{digits}f}]"


def _diff(d: Dict[str, float]) -> str:
  if not np.isfinite(d["diff"]):
    return "n/a"
  return f"{d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"


def gauc_text(entry: Dict[str, Any]) -> str:
  """A slice's GAUC, or "too small (n users)" when the slice has too few users to report one."""
  value = entry.get("gauc")
  if value is None or entry.get("gauc_too_small") or not np.isfinite(value):
    return f"too small ({entry.get('gauc_users', 0)} users)"
  return f"{value:.4f}"


def _agreement_line(title: str, part: Dict[str, Any]) -> str:
  cells = [
    f"n={r['prefix_length']} {_ci(r['agreement'])} (chance {r['chance']:.3f})"
    for r in part["agreement"]
  ]
  return (
    f"{title} ({part['items']:,} items), pairs sharing an n-prefix in A that share it in B: "
    + (", ".join(cells))
  )


def _run_label(run: Dict[str, Any]) -> str:
  """A ranker run's name in the findings: "early SIDs", or "reference SIDs, ranker seed 1 (ranker
  training alone)"."""
  if run.get("sids", REFERENCE) == REFERENCE:
    return f"{REFERENCE} SIDs, ranker seed {run['ranker_seed']} (ranker training alone)"
  return f"{run['sids']} SIDs"


def findings(results: Dict[str, Any]) -> List[str]:
  """One sentence per result, each with its 95% interval and the chance level it compares with."""
  out = []
  for name, comp in results["stability"].items():
    for subset, part in comp["subsets"].items():
      if subset == "in_window":
        continue
      title = f"{comp['a']} (A) vs {comp['b']} (B), {subset.replace('_', ' ')}"
      out.append(_agreement_line(title, part))
    mi = comp["subsets"]["all"]["mutual_information"][0]
    out.append(
      f"{comp['a']} vs {comp['b']}: level-1 codes share {_ci(mi['mi_bits'], 2)} bits of "
      f"{mi['entropy_a_bits']:.2f} (NMI {_ci(mi['nmi'])}; shuffled codes: "
      f"{mi['chance_mi_bits']:.2f} bits)"
    )
  rankers = results.get("rankers") or {}
  if rankers:
    ref = rankers[REFERENCE]["test"]
    parts = [
      f"{_run_label(r)}: Δ AUC {_diff(r['vs_reference']['auc_all'])}, Δ cold GAUC "
      f"{_diff(r['vs_reference']['gauc_cold'])}"
      for name, r in rankers.items()
      if name != REFERENCE
    ]
    out.append(
      f"Ranker ({rankers[REFERENCE]['scheme']}) test AUC with the reference SIDs "
      f"{ref['all']['auc']:.4f}, cold GAUC {gauc_text(ref['cold'])}; differences "
      f"(user-clustered 95% interval): " + "; ".join(parts)
    )
  hier = results["hierarchy"][REFERENCE]
  rows = hier["prefix_similarity"]
  cells = [
    f"n={r['prefix_length']} {r['mean_cosine']:.3f} [{r['mean_cosine_low']:.3f}, "
    f"{r['mean_cosine_high']:.3f}]"
    for r in rows
  ]
  out.append(
    "Reference SIDs: mean cosine of items sharing an n-prefix " + ", ".join(cells) + f"; random "
    f"pairs {rows[0]['random_pair_cosine']:.3f}"
  )
  for name, cat_rows in hier["categories"].items():
    r = cat_rows[0]
    out.append(
      f"Reference level-1 codes vs {name} ({r['items']:,} items): NMI {_ci(r['nmi'])} (shuffled "
      f"{r['chance_nmi']:.3f}), purity {_ci(r['purity'])} (shuffled {r['chance_purity']:.3f})"
    )
  return out


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
  return report_format.table(header, rows) + [""]


def _versions_table(results) -> List[str]:
  rows = [
    [
      name,
      v["description"],
      f"{v['trained_on_items']:,}",
      str(v["seed"]),
      f"{v['unique_sid_fraction']:.4f}",
      str(v["max_items_per_sid"]),
      " ".join(f"{u:.2f}" for u in v["utilization"]),
    ]
    for name, v in results["versions"].items()
  ]
  header = ["version", "trained on", "items", "seed", "unique-SID frac", "max items/SID"]
  return _table(header + ["utilization per level"], rows)


def _stability_tables(results) -> List[str]:
  agree, info = [], []
  for comp in results["stability"].values():
    for subset, part in comp["subsets"].items():
      label = f"{comp['a']} vs {comp['b']}, {subset}"
      for r in part["agreement"]:
        agree.append(
          [label, f"{part['items']:,}", str(r["prefix_length"]), _ci(r["agreement"]),
           f"{r['chance']:.3f}", _ci(r["reverse_agreement"]), f"{r['reverse_chance']:.3f}",
           f"{r['pairs_a']:,.0f}"]
        )  # fmt: skip
      for r in part["mutual_information"]:
        info.append(
          [label, str(r["level"]), _ci(r["mi_bits"], 2), f"{r['chance_mi_bits']:.2f}",
           _ci(r["nmi"]), f"{r['entropy_a_bits']:.2f}", f"{r['entropy_b_bits']:.2f}"]
        )  # fmt: skip
  lines = ["## Stability (A.2): agreement of the versions' prefixes", ""]
  lines += [
    "Of the item pairs sharing an n-prefix in A, the share that also share it in B (A→B) and the "
    "reverse, 95% bootstrap interval over items; chance: the share for B's group sizes drawn at "
    "random.",
    "",
  ]
  header = ["A vs B, items", "items", "n", "A→B", "chance", "B→A", "chance", "pairs in A"]
  lines += _table(header, agree)
  lines += ["## Stability (A.2): mutual information of each level's codes", ""]
  lines += [
    "Plug-in estimate in bits, 95% interval: estimate ± 1.96 bootstrap standard deviations "
    "(resamples over items); shuffled: the estimate for B's codes shuffled over the items (what "
    "unrelated codes of these sizes score: the estimate's bias).",
    "",
  ]
  header = ["A vs B, items", "level", "MI (bits)", "shuffled", "NMI", "H(A)", "H(B)"]
  return lines + _table(header, info)


def _ranker_table(results) -> List[str]:
  rankers = results.get("rankers") or {}
  if not rankers:
    return ["Rankers: not trained (--norankers).", ""]
  rows = []
  for r in rankers.values():
    t, vs = r["test"], r.get("vs_reference")
    rows.append(
      [r["sids"], str(r["ranker_seed"]), f"{t['all']['auc']:.4f}", f"{t['warm']['auc']:.4f}",
       f"{t['cold']['auc']:.4f}", gauc_text(t["cold"]), _diff(vs["auc_all"]) if vs else "",
       _diff(vs["gauc_cold"]) if vs else "", str(r["epochs_run"]), f"{r['train_time_s']:.0f}"]
    )  # fmt: skip
  scheme = next(iter(rankers.values()))["scheme"]
  lines = [f"## Stability (A.2): a {scheme} ranker trained and evaluated with each version", ""]
  lines += [
    "Test slice; Δ = run − the reference run (reference SIDs, first ranker seed), user-clustered "
    "bootstrap 95% interval. A second ranker seed on the reference SIDs shows what ranker "
    "training alone moves.",
    "",
  ]
  header = [
    "SIDs",
    "ranker seed",
    "AUC all",
    "AUC warm",
    "AUC cold",
    "GAUC cold",
    "Δ AUC all",
    "Δ GAUC cold",
  ]
  return lines + _table(header + ["epochs", "train s"], rows)


def _hierarchy_tables(results) -> List[str]:
  sim, cats = [], []
  for name, h in results["hierarchy"].items():
    for r, s in zip(h["prefix_similarity"], h["subtrie_sizes"]):
      sim.append(
        [name, str(r["prefix_length"]), f"{r['mean_cosine']:.3f} [{r['mean_cosine_low']:.3f}, "
         f"{r['mean_cosine_high']:.3f}]", f"{r['random_pair_cosine']:.3f}", f"{r['pairs']:,}",
         f"{s['groups']:,}", f"{s['p25']:g} / {s['p50']:g} / {s['p75']:g}", str(s["max"]),
         f"{s['singleton_item_share']:.3f}"]
      )  # fmt: skip
    for cat, rows in h["categories"].items():
      for r in rows:
        cats.append(
          [name, cat, str(r["prefix_length"]), f"{r['groups']:,}", _ci(r["nmi"]),
           f"{r['chance_nmi']:.3f}", _ci(r["purity"]), f"{r['chance_purity']:.3f}"]
        )  # fmt: skip
  lines = ["## Hierarchy (A.3/A.4): prefix similarity and sub-trie sizes", ""]
  lines += [
    "Mean cosine over the item pairs sharing an n-prefix (95% bootstrap interval over the "
    "n-prefixes) against every pair of items; sub-trie: items per n-prefix.",
    "",
  ]
  header = ["version", "n", "mean cosine", "random pairs", "pairs", "n-prefixes"]
  lines += _table(header + ["sub-trie p25 / p50 / p75", "max", "items alone"], sim)
  if cats:
    lines += ["## Hierarchy (A.3/A.4): n-prefixes vs known categories", ""]
    lines += [
      "NMI and purity, 95% interval: estimate ± 1.96 bootstrap standard deviations (resamples "
      "over items); shuffled: the categories shuffled over the items (what prefixes unrelated to "
      "them, with the same group sizes, score).",
      "",
    ]
    header = ["version", "categories", "n", "n-prefixes", "NMI", "shuffled", "purity", "shuffled"]
    lines += _table(header, cats)
  return lines


def markdown(results: Dict[str, Any]) -> str:
  """analysis.md: the findings, then every table."""
  lines = ["# SID analyses", "", f"Data: {results['data']['counts']}", "", "## Findings", ""]
  lines += [f"- {f}." for f in results["findings"]] + [""]
  lines += ["## RQ-VAE versions", ""] + _versions_table(results)
  lines += _stability_tables(results) + _ranker_table(results) + _hierarchy_tables(results)
  lines += [f"Wall time {results['wall_time_s']:.0f} s.", ""]
  return "\n".join(lines)


def _errorbar(ax, xs, intervals, **kwargs):
  ys = np.array([d["value"] for d in intervals])
  err = np.abs(np.array([[d["low"] for d in intervals], [d["high"] for d in intervals]]) - ys)
  return ax.errorbar(xs, ys, yerr=err, fmt="o-", capsize=3, **kwargs)


def _prefix_panel(ax, series, value_key: str, chance_key: str) -> None:
  """A share in [0, 1] against prefix length n: per (label, rows) a line with intervals
  (`rows[i][value_key]`) and its chance level (`chance_key`) dotted in the same colour."""
  for label, rows in series:
    xs = [r["prefix_length"] for r in rows]
    line = _errorbar(ax, xs, [r[value_key] for r in rows], label=label)
    ax.plot(xs, [r[chance_key] for r in rows], ":", color=line[0].get_color())
  ax.set_xticks(xs)
  ax.set_ylim(0, 1.02)
  ax.set_xlabel("prefix length n")
  ax.legend(fontsize="small")


def plot_agreement(results: Dict[str, Any], path: str) -> None:
  comps = list(results["stability"].values())
  fig, axes = plt.subplots(1, len(comps), figsize=(5 * len(comps), 3.8), squeeze=False)
  for ax, comp in zip(axes[0], comps):
    series = [(subset, part["agreement"]) for subset, part in comp["subsets"].items()]
    _prefix_panel(ax, series, "agreement", "chance")
    ax.set_ylabel(f"pairs sharing it in {comp['a']}:\nshare also in {comp['b']}")
    ax.set_title(f"{comp['a']} vs {comp['b']} (dotted: chance)", fontsize="medium")
  report_format.save_figure(fig, path)


def plot_subtrie_sizes(results: Dict[str, Any], path: str) -> None:
  hier = results["hierarchy"]
  levels = len(hier[REFERENCE]["subtrie_sizes"])
  fig, axes = plt.subplots(1, levels, figsize=(4.2 * levels, 3.6), squeeze=False)
  for n, ax in enumerate(axes[0]):
    for name, h in hier.items():
      row = h["subtrie_sizes"][n]
      hist = row["histogram"]
      edges = hist["bin_low"] + [2 * hist["bin_low"][-1]]
      ax.stairs(hist["groups"], edges, label=f"{name} (p50 {row['p50']:g})", linewidth=1.5)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(f"items per {n + 1}-prefix (bins [2^k, 2^(k+1)))")
    ax.set_ylabel("number of prefixes")
    ax.set_title(f"prefix length {n + 1}")
    ax.legend(fontsize="x-small")
  report_format.save_figure(fig, path)


def plot_prefix_similarity(results: Dict[str, Any], path: str) -> None:
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, h in results["hierarchy"].items():
    rows = h["prefix_similarity"]
    intervals = [
      {"value": r["mean_cosine"], "low": r["mean_cosine_low"], "high": r["mean_cosine_high"]}
      for r in rows
    ]
    _errorbar(ax, [r["prefix_length"] for r in rows], intervals, label=name)
  rows = results["hierarchy"][REFERENCE]["prefix_similarity"]
  ax.axhline(rows[0]["random_pair_cosine"], color="grey", linestyle=":", label="random pairs")
  ax.set_xticks([r["prefix_length"] for r in rows])
  ax.set_xlabel("prefix length n")
  ax.set_ylabel("mean cosine, items sharing the n-prefix")
  ax.legend(fontsize="small")
  report_format.save_figure(fig, path)


def plot_categories(results: Dict[str, Any], path: str) -> None:
  names = list(results["hierarchy"][REFERENCE]["categories"])
  fig, axes = plt.subplots(1, max(len(names), 1), figsize=(5 * max(len(names), 1), 3.8))
  axes = np.atleast_1d(axes)
  if not names:
    axes[0].text(0.5, 0.5, "no known categories for this dataset", ha="center", va="center")
    axes[0].set_axis_off()
  for ax, cat in zip(axes, names):
    series = [(name, h["categories"][cat]) for name, h in results["hierarchy"].items()]
    _prefix_panel(ax, series, "nmi", "chance_nmi")
    ax.set_ylabel(f"NMI(n-prefix, {cat})")
    ax.set_title(f"{cat} (dotted: shuffled)", fontsize="medium")
  report_format.save_figure(fig, path)


def plots(results: Dict[str, Any], directory: str) -> None:
  """Writes the `PLOTS` under `directory`."""
  for name, fn in zip(
    PLOTS, (plot_agreement, plot_subtrie_sizes, plot_prefix_similarity, plot_categories)
  ):
    fn(results, os.path.join(directory, name))
