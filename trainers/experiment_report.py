"""Aggregation, bootstrap intervals, model choice on validation, tables and plots for
`trainers.experiment`."""

import dataclasses
from typing import Any, Callable, Dict, List

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from features import synthetic as synthetic_lib  # noqa: E402
from model import metrics as metrics_lib  # noqa: E402
from model import schemes  # noqa: E402
from trainers import report_format  # noqa: E402

SLICES = ("all", "warm", "cold", "cold_known_user", "cold_new_user")
# The paper's popularity and item-age slices (`model.metrics.extra_slice_masks`).
BAND_SLICES = ("head", "torso", "tail", "age_under_1d", "age_1d_or_more")
# (name, slice, metric) of the differences to hashing with bootstrap intervals.
DIFFS = (
  ("auc_all", "all", "auc"),
  ("gauc_all", "all", "gauc"),
  ("gauc_cold", "cold", "gauc"),
  ("auc_cold", "cold", "auc"),
  ("auc_head", "head", "auc"),
  ("auc_tail", "tail", "auc"),
  ("auc_age_under_1d", "age_under_1d", "auc"),
)


@dataclasses.dataclass
class Run:
  history: str
  scheme: str
  rows: int  # the budget asked for
  seed: int

  @property
  def key(self) -> str:
    return f"{self.history}/{self.scheme}_{self.rows}/seed{self.seed}"


def _mean_std(values: List[float]) -> Dict[str, float]:
  arr = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
  arr = arr[~np.isnan(arr)]
  if not len(arr):
    return {"mean": float("nan"), "std": float("nan")}
  return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def _aggregate(results: List[Dict[str, Any]], part: str) -> Dict[str, Any]:
  out = {}
  for name in SLICES + BAND_SLICES:
    if not all(name in r[part] for r in results):
      continue  # A run from before the slice existed.
    out[name] = {
      metric: _mean_std([r[part][name][metric] for r in results]) for metric in ("auc", "gauc")
    }
    out[name]["rows"] = results[0][part][name]["rows"]
    out[name]["gauc_users"] = min(r[part][name].get("gauc_users", 0) for r in results)
    out[name]["gauc_too_small"] = any(r[part][name].get("gauc_too_small") for r in results)
  return out


def _slice_mask(preds: Dict[str, np.ndarray], slice_name: str):
  """The rows of `slice_name` in a predictions.npz (None when it predates the slice)."""
  cold = preds["cold"]
  if slice_name == "all":
    return np.ones_like(cold)
  if slice_name == "cold":
    return cold
  if "band" not in preds:
    return None
  masks = metrics_lib.extra_slice_masks(preds["band"], preds["age_s"])
  return masks[slice_name]


def _bootstrap(preds_a, preds_b, n_boot: int) -> Dict[str, Dict[str, float]]:
  labels, users = preds_a[0]["click"], preds_a[0]["user_id"]
  out = {}
  for name, slice_name, metric in DIFFS:
    mask = _slice_mask(preds_a[0], slice_name)
    if mask is None or not mask.any():
      continue
    out[name] = metrics_lib.bootstrap_difference(
      labels[mask],
      users[mask],
      [p["ctr"][mask] for p in preds_a],
      [p["ctr"][mask] for p in preds_b],
      metric=metric,
      n_resamples=n_boot,
    )
  return out


def summarize(
  runs, results, load_predictions: Callable, budgets: List[int], shown_at: Callable, n_boot: int
) -> Dict[str, Any]:
  """Groups runs by (history, scheme, budget), aggregates seeds, bootstraps against hashing."""
  groups: Dict[tuple, list] = {}
  for run in runs:
    groups.setdefault((run.history, run.scheme, run.rows), []).append(run)
  entries = []
  hash_groups = {(h, r): g for (h, s, r), g in groups.items() if s == schemes.HASH}
  for (history, scheme, rows), group in groups.items():
    res = [results[r.key] for r in group]
    base = {
      "history": history,
      "scheme": scheme,
      "run_rows": rows,
      "seeds": len(group),
      "table_rows": res[0]["table_rows"],
      "test": _aggregate(res, "test"),
      "validation": _aggregate(res, "validation"),
      "train_examples_per_s": _mean_std([r["train_examples_per_s"] for r in res]),
      "train_time_s": _mean_std([r["train_time_s"] for r in res]),
    }
    shown = [0] if scheme == schemes.NONE else shown_at(scheme, rows)
    for budget in shown:
      entry = dict(base, rows=budget)
      ref = hash_groups.get((history, budget))
      if scheme not in (schemes.HASH, schemes.NONE) and ref:
        entry["vs_hash"] = _bootstrap(
          [load_predictions(r) for r in group], [load_predictions(r) for r in ref], n_boot
        )
        entry["validation_vs_hash"] = {
          "auc_all": entry["validation"]["all"]["auc"]["mean"] - _val(results, ref, "all", "auc"),
          "gauc_cold": entry["validation"]["cold"]["gauc"]["mean"]
          - _val(results, ref, "cold", "gauc"),
        }
      entries.append(entry)
  entries.sort(key=lambda e: (e["history"], e["scheme"] != schemes.HASH, e["scheme"], e["rows"]))
  return {
    "entries": entries,
    "selection": select(entries),
    "selection_sid": select(entries, sid_based_schemes()),
    "budgets": budgets,
    "runs": {
      k: {
        "test": v["test"],
        "validation": v["validation"],
        "train_time_s": v["train_time_s"],
        "epochs_run": v["epochs_run"],
      }
      for k, v in results.items()
    },
  }


def _val(results, group, slice_name, metric):
  values = [results[r.key]["validation"][slice_name][metric] for r in group]
  values = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
  return float(np.nanmean(values)) if (~np.isnan(values)).any() else float("nan")


def sid_based_schemes() -> List[str]:
  """Every registered scheme built on semantic IDs (the SID schemes and hybrids)."""
  return [spec.name for spec in schemes.REGISTRY.values() if spec.uses_sid]


def select(entries: List[Dict[str, Any]], schemes=None) -> Dict[str, Any]:
  """The configuration chosen on VALIDATION among `schemes` (default: all): overall AUC not below
  hashing's (same budget and history), then the largest cold-GAUC gain. Its test differences are
  reported as they come."""
  candidates = [
    e
    for e in entries
    if "validation_vs_hash" in e
    and e["validation_vs_hash"]["auc_all"] >= 0.0
    and (schemes is None or e["scheme"] in schemes)
  ]
  if not candidates:
    return {"chosen": None, "rule": "no scheme matched hashing's validation AUC"}
  best = max(candidates, key=lambda e: np.nan_to_num(e["validation_vs_hash"]["gauc_cold"], nan=-1))
  target = best["vs_hash"]
  return {
    "rule": "validation AUC >= hashing's, then max validation cold-GAUC gain",
    "chosen": {k: best[k] for k in ("history", "scheme", "rows", "table_rows")},
    "validation_vs_hash": best["validation_vs_hash"],
    "test_vs_hash": target,
  }


def _fmt(ms: Dict[str, float]) -> str:
  return f"{ms['mean']:.4f}±{ms['std']:.4f}"


def _ci(d: Dict[str, float]) -> str:
  return f"{d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"


def _gauc_cell(entry: Dict[str, Any]) -> str:
  if entry.get("gauc_too_small"):
    return f"too small ({entry.get('gauc_users', 0)} users)"
  return _fmt(entry["gauc"])


def _finding(name: str, d: Dict[str, float]) -> str:
  """A finding in words: "+x [lo, hi]" and whether the interval excludes zero."""
  return f"{name} {_ci(d)} ({report_format.verdict(d['low'], d['high'])} hashing)"


# The paper's replication check: dense input vs hashing overall, on head items, on new items.
DENSE_CHECK = (("AUC all", "auc_all"), ("AUC head", "auc_head"), ("GAUC cold", "gauc_cold"))


def _findings(diffs: Dict[str, Dict[str, float]], labels) -> str:
  """`_finding` of each (label, key) in `labels` that `diffs` holds, joined by "; "."""
  return "; ".join(_finding(label, diffs[k]) for label, k in labels if k in diffs)


def _slice_table(entries: List[Dict[str, Any]]) -> List[str]:
  """Popularity bands (training impressions) and item age, per scheme."""
  header = (
    "| scheme | budget | "
    + " | ".join(f"AUC {s} | GAUC {s}" for s in BAND_SLICES)
    + " | Δ AUC head | Δ AUC tail | Δ AUC age<1d |"
  )
  lines = [header, "|" + "---|" * (2 + 2 * len(BAND_SLICES) + 3)]
  for e in entries:
    t, vs = e["test"], e.get("vs_hash") or {}
    if not all(s in t for s in BAND_SLICES):
      continue
    cells = [e["scheme"], str(e["rows"])]
    for s in BAND_SLICES:
      cells += [f"{_fmt(t[s]['auc'])} ({t[s]['rows']})", _gauc_cell(t[s])]
    cells += [_ci(vs[k]) if k in vs else "" for k in ("auc_head", "auc_tail", "auc_age_under_1d")]
    lines.append(report_format.row(cells))
  return lines


def markdown(summary: Dict[str, Any]) -> str:
  """results.md: one table per history setting, then the validation choice."""
  lines = ["# Item representations vs hashing", ""]
  counts = summary.get("data", {}).get("counts", {})
  if counts:
    lines += [f"Data: {counts}", ""]
  oracle = summary.get("oracle")
  if oracle:
    lines += [
      "Reference: the generator's own noiseless click logit scores AUC all "
      f"{oracle['all']['auc']:.4f}, AUC cold {oracle['cold']['auc']:.4f}, GAUC cold "
      f"{oracle['cold']['gauc']:.4f} on these test rows (no ranker can pass it).",
      "",
    ]
  for history in sorted({e["history"] for e in summary["entries"]}):
    lines += [
      f"## History feature {history}",
      "",
      "Test slice, mean±std over seeds. Δ = scheme − hashing at the same budget, user-clustered "
      "bootstrap 95% interval. Cold rows split by users with / without a click in training "
      "(a history).",
      "",
      "| scheme | budget | rows | AUC all | GAUC all | AUC warm | AUC cold | GAUC cold | "
      "GAUC cold (known users) | GAUC cold (new users) | Δ AUC all | Δ GAUC cold | val Δ AUC | "
      "val Δ GAUC cold | ex/s |",
      "|" + "---|" * 15,
    ]
    for e in (x for x in summary["entries"] if x["history"] == history):
      t = e["test"]
      vs = e.get("vs_hash")
      val = e.get("validation_vs_hash")
      cells = [
        e["scheme"],
        str(e["rows"]),
        str(e["table_rows"]),
        _fmt(t["all"]["auc"]),
        _fmt(t["all"]["gauc"]),
        _fmt(t["warm"]["auc"]),
        _fmt(t["cold"]["auc"]),
        _gauc_cell(t["cold"]),
        f"{_gauc_cell(t['cold_known_user'])} ({t['cold_known_user']['rows']} rows)",
        f"{_gauc_cell(t['cold_new_user'])} ({t['cold_new_user']['rows']} rows)",
        _ci(vs["auc_all"]) if vs else "",
        _ci(vs["gauc_cold"]) if vs else "",
        f"{val['auc_all']:+.4f}" if val else "",
        f"{val['gauc_cold']:+.4f}" if val else "",
        f"{e['train_examples_per_s']['mean']:.0f}",
      ]
      lines.append(report_format.row(cells))
    lines.append("")
    band_rows = _slice_table([x for x in summary["entries"] if x["history"] == history])
    if len(band_rows) > 2:
      lines += [
        f"### Popularity bands and item age, history {history}",
        "",
        "Head / torso / tail: the top 1% / next 9% / other 90% of the items with training "
        "impressions, by their count; age: the item's age at the impression (under one day: the "
        "paper's CTR/1D). Rows in parentheses; a GAUC over fewer than "
        f"{metrics_lib.MIN_GAUC_USERS} users with both labels is reported as too small.",
        "",
        *band_rows,
        "",
      ]
  for title, key in (("any scheme", "selection"), ("semantic-ID schemes", "selection_sid")):
    sel = summary.get(key)
    if sel is None:
      continue
    lines += [f"## Chosen on the validation slice: {title}", "", f"Rule: {sel['rule']}.", ""]
    if sel.get("chosen"):
      c, t = sel["chosen"], sel["test_vs_hash"]
      lines += [
        f"Chosen: {c['scheme']} at budget {c['rows']} ({c['table_rows'] or '-'} rows), history "
        f"{c['history']}.",
        "",
        f"Finding on the test slice, {c['scheme']} vs hashing: "
        + _findings(
          t,
          (
            ("AUC all", "auc_all"),
            ("GAUC all", "gauc_all"),
            ("GAUC cold", "gauc_cold"),
            ("AUC cold", "auc_cold"),
          ),
        )
        + ".",
        "",
      ]
  dense = [e for e in summary["entries"] if e["scheme"] == schemes.DENSE and "vs_hash" in e]
  if dense:
    lines += ["## Dense content input vs hashing (the paper's replication check)", ""]
    for e in dense:
      vs = e["vs_hash"]
      lines.append(f"- history {e['history']}, vs hash@{e['rows']}: " + _findings(vs, DENSE_CHECK))
    lines.append("")
  return "\n".join(lines) + "\n"


def oracle_reference(cfg, evaluation) -> Dict[str, Dict[str, float]]:
  """AUC / GAUC of the synthetic generator's noiseless click logit on the test rows (the ceiling
  no ranker can pass), for the all and cold slices."""
  from_generator = synthetic_lib.oracle_scores(cfg, evaluation)["full"]
  labels = evaluation["click"].to_numpy()
  users = evaluation["user_id"].astype(str).to_numpy()
  out = {}
  for name, mask in metrics_lib.slice_masks(evaluation["cold"].to_numpy()).items():
    out[name] = {
      "auc": metrics_lib.auc(labels[mask], from_generator[mask]),
      "gauc": metrics_lib.gauc(labels[mask], from_generator[mask], users[mask]),
    }
  return out


def plot(summary: Dict[str, Any], history: str, path: str) -> None:
  """AUC (all) and GAUC (cold) against table rows per scheme, for one history setting."""
  entries = [e for e in summary["entries"] if e["history"] == history]
  floor = [e for e in summary["entries"] if e["scheme"] == schemes.NONE]
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  for ax, (slice_name, metric, title) in zip(
    axes, (("all", "auc", "overall AUC"), ("cold", "gauc", "cold-start GAUC"))
  ):
    for scheme in dict.fromkeys(e["scheme"] for e in entries):
      pts = sorted(
        (e["rows"], e["test"][slice_name][metric])
        for e in entries
        if e["scheme"] == scheme and np.isfinite(e["test"][slice_name][metric]["mean"])
      )
      if not pts or all(p[0] <= 0 for p in pts):
        continue  # No finite value (e.g. every GAUC too small), or the user-only floor.
      xs = [p[0] for p in pts]
      ys = [p[1]["mean"] for p in pts]
      err = [p[1]["std"] for p in pts]
      style = "--" if scheme == schemes.DENSE else "-"
      ax.errorbar(xs, ys, yerr=err, fmt=style + "o", capsize=3, label=scheme)
    for e in floor:
      if np.isfinite(e["test"][slice_name][metric]["mean"]):
        ax.axhline(e["test"][slice_name][metric]["mean"], color="gray", ls=":", label="user-only")
    oracle = summary.get("oracle")
    if oracle:
      ax.axhline(oracle[slice_name][metric], color="black", ls="--", label="oracle (generator)")
    if ax.containers:  # At least one scheme's error bars.
      ax.set_xscale("log")
    else:
      ax.text(0.5, 0.5, "too few users with both labels", ha="center", transform=ax.transAxes)
    ax.set_xlabel("embedding-table budget (rows)")
    ax.set_ylabel(title)
    ax.set_title(f"{title}, history {history}")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  report_format.save_figure(fig, path)


def bar_plot(summary: Dict[str, Any], path: str) -> None:
  """Overall AUC and cold GAUC per scheme as bars (one budget), hashing first."""
  entries = summary["entries"]
  names = [e["scheme"] for e in entries]
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for ax, (slice_name, metric, title) in zip(
    axes, (("all", "auc", "overall AUC"), ("cold", "gauc", "cold-start GAUC"))
  ):
    values = [e["test"][slice_name][metric]["mean"] for e in entries]
    ax.bar(names, values, color=["gray" if n == schemes.HASH else "tab:blue" for n in names])
    if summary.get("oracle"):
      ceiling = summary["oracle"][slice_name][metric]
      ax.axhline(ceiling, color="black", ls="--", label="oracle (generator)")
      values = values + [ceiling]
      ax.legend(fontsize=8)
    finite = [v for v in values if np.isfinite(v)]
    if finite:
      ax.set_ylim(max(0.0, min(finite) - 0.05), max(finite) + 0.02)
    ax.set_title(f"{title} (test)")
    ax.tick_params(axis="x", rotation=30)
    ax.grid(axis="y", alpha=0.3)
  report_format.save_figure(fig, path)
