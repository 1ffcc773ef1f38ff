"""Per-cut and pooled analysis, tables and plots for `trainers.rolling_origin`.

Per cut: `trainers.experiment_report.summarize` (mean±std over seeds, each scheme's difference to
hashing with a user-clustered bootstrap) plus bootstrap intervals of each scheme's AUC all / warm /
cold and cold GAUC. Pooled: the test rows of every cut together, one row set per scheme (seed k of
every cut forms seed k of the pool). `clustered_bootstrap` resamples clusters (users) and scores
GAUC over groups ((cut, user) pairs: one model ranks a user's rows within a cut), so a user's rows
in every cut are drawn, or not, together. A GAUC over fewer than `metrics_lib.MIN_GAUC_USERS` groups
with both labels is reported as too small, as everywhere in the project.
"""

import datetime
import os
from typing import Any, Callable, Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from features import io_utils  # noqa: E402
from model import metrics as metrics_lib  # noqa: E402
from model import schemes  # noqa: E402
from trainers import experiment_report, report_format  # noqa: E402

# (name, slice, metric): the per-cut values with intervals.
VALUES = (
  ("auc_all", "all", "auc"),
  ("auc_warm", "warm", "auc"),
  ("auc_cold", "cold", "auc"),
  ("gauc_cold", "cold", "gauc"),
)
# (name, slice, metric): the pooled differences to hashing.
POOLED_DIFFS = (
  ("auc_cold", "cold", "auc"),
  ("gauc_cold", "cold", "gauc"),
  ("auc_all", "all", "auc"),
  ("gauc_all", "all", "gauc"),
)
LABELS = {
  "auc_all": "AUC all",
  "auc_warm": "AUC warm",
  "auc_cold": "AUC cold",
  "gauc_cold": "GAUC cold",
  "gauc_all": "GAUC all",
}


def resample_weights(clusters: np.ndarray, n_resamples: int, seed: int = 0):
  """(cluster code per row, float[n_resamples, n_clusters]): how often each cluster is drawn in
  each resample (clusters drawn with replacement, as many as there are)."""
  _, codes = np.unique(np.asarray(clusters), return_inverse=True)
  n = int(codes.max()) + 1 if len(codes) else 0
  rng = np.random.default_rng(seed)
  draws = np.stack(
    [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_resamples)]
  ).astype(np.float64)
  return codes, draws.reshape(n_resamples, n)


# Resamples scored at once: a [chunk, N] weight matrix of about this many entries.
_CHUNK_ENTRIES = 1_000_000


class WeightedAuc:
  """The AUC of one score array under many weightings of its rows' clusters at once (ties count
  one half): the formula of `metrics_lib.auc`, vectorised over weightings; rows sorted once.

  Args:
    labels: float[N]. Click labels.
    scores: float[N].
    cluster_codes: int[N]. Each row's cluster (0..C-1).

  Call arguments:
    weights: float[R, C]. R weightings of the clusters (a row weighs its cluster's weight).

  Returns:
    float[R]: one AUC per weighting (NaN where a label has no weight).
  """

  def __init__(self, labels: np.ndarray, scores: np.ndarray, cluster_codes: np.ndarray):
    scores = np.asarray(scores)
    order = np.argsort(scores, kind="stable")
    self.codes = np.asarray(cluster_codes)[order]
    self.pos = np.asarray(labels)[order] > 0.5
    s = scores[order]
    self.starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])

  def __call__(self, weights: np.ndarray) -> np.ndarray:
    w = np.ascontiguousarray(weights.T)[self.codes]  # [N, R]: rows in score order.
    wp = np.add.reduceat(w * self.pos[:, None], self.starts, axis=0)  # [ties, R]
    wn = np.add.reduceat(w, self.starts, axis=0) - wp
    total_p, total_n = wp.sum(axis=0), wn.sum(axis=0)
    below = np.cumsum(wn, axis=0) - wn
    with np.errstate(invalid="ignore", divide="ignore"):
      out = (wp * (below + 0.5 * wn)).sum(axis=0) / (total_p * total_n)
    return np.where((total_p > 0) & (total_n > 0), out, np.nan)


def _metric(labels, cluster_codes, groups, scores, metric: str) -> Callable:
  """f(cluster weights float[R, C]) -> float[R], the mean over seeds of `metric` of `scores`."""
  if metric == "auc":
    aucs = [WeightedAuc(labels, s, cluster_codes) for s in scores]

    def auc_values(w):
      return np.mean([f(w) for f in aucs], axis=0)

    return auc_values
  _, group_codes = np.unique(groups, return_inverse=True)
  group_cluster = np.zeros(int(group_codes.max()) + 1, np.int64)
  group_cluster[group_codes] = cluster_codes
  if not np.array_equal(group_cluster[group_codes], cluster_codes):
    raise ValueError("Every GAUC group must lie inside one cluster (a group spans two users).")
  parts = []
  for s in scores:  # Per-group AUCs (NaN without both labels) and rows, as `metrics_lib.gauc`.
    _, aucs, counts = metrics_lib.per_user_auc(labels, np.asarray(s), groups)
    ok = ~np.isnan(aucs)
    parts.append((np.flatnonzero(ok), aucs[ok], counts[ok]))

  def gauc_values(w):
    out = []
    for keep, aucs, counts in parts:
      weight = w[:, group_cluster[keep]] * counts
      with np.errstate(invalid="ignore", divide="ignore"):
        out.append((weight * aucs).sum(axis=1) / weight.sum(axis=1))
    return np.mean(out, axis=0)

  return gauc_values


def clustered_bootstrap(
  labels: np.ndarray,
  clusters: np.ndarray,
  groups: np.ndarray,
  scores_a: Sequence[np.ndarray],
  scores_b: Optional[Sequence[np.ndarray]] = None,
  metric: str = "auc",
  n_resamples: int = 1000,
  seed: int = 0,
  level: float = 0.95,
  min_groups: int = metrics_lib.MIN_GAUC_USERS,
) -> Dict[str, Any]:
  """Bootstrap of mean_s metric(a_s), or of mean_s metric(a_s) - mean_s metric(b_s), on the same
  rows, resampling `clusters` with replacement (a cluster drawn k times weighs k).

  Args:
    labels: float[N]. Click labels.
    clusters: [N]. What is resampled (users): all rows of a cluster are drawn together.
    groups: [N]. GAUC groups, each inside one cluster ((cut, user) pairs); unused for AUC.
    scores_a: list of float[N], one per seed.
    scores_b: Optional list of float[N], one per seed: the reference (hashing).
    metric: "auc" or "gauc".
    n_resamples: int. Defaults to 1000.
    seed: int. RNG seed (both models see the same resamples). Defaults to 0.
    level: float. Confidence level of the percentile interval. Defaults to 0.95.
    min_groups: int. GAUC with fewer groups having both labels is too small (no numbers).

  Returns:
    {"value", "low", "high", "p_below_zero", "groups", "too_small"}; `value` is the difference
    when `scores_b` is given. Numbers are None when too small or undefined (one label only).

  Raises:
    ValueError: unknown metric, or a group spanning two clusters.
  """
  if metric not in ("auc", "gauc"):
    raise ValueError(f"`metric` must be 'auc' or 'gauc'. Received: metric={metric!r}")
  labels = np.asarray(labels, np.float64)
  groups = np.asarray(groups if metric == "gauc" else clusters).astype(str)
  codes, draws = resample_weights(clusters, n_resamples, seed)
  _, aucs, _ = metrics_lib.per_user_auc(labels, np.zeros(len(labels)), groups)
  n_groups = int(np.sum(~np.isnan(aucs)))
  out = {"groups": n_groups, "too_small": metric == "gauc" and n_groups < min_groups}
  nothing = {"value": None, "low": None, "high": None, "p_below_zero": None}
  if out["too_small"] or len(labels) == 0:
    return {**out, **nothing}
  value_a = _metric(labels, codes, groups, scores_a, metric)
  value_b = _metric(labels, codes, groups, scores_b, metric) if scores_b is not None else None

  def value(w):
    return value_a(w) - (value_b(w) if value_b is not None else 0.0)

  point = float(value(np.ones((1, draws.shape[1])))[0])
  chunk = max(1, _CHUNK_ENTRIES // len(labels))
  samples = np.concatenate([value(draws[i : i + chunk]) for i in range(0, len(draws), chunk)])
  samples = samples[~np.isnan(samples)]
  if np.isnan(point) or not len(samples):
    return {**out, **nothing}
  alpha = (1.0 - level) / 2.0
  low, high = np.quantile(samples, [alpha, 1.0 - alpha])
  return {
    **out,
    "value": point,
    "low": float(low),
    "high": float(high),
    "p_below_zero": float(np.mean(samples < 0)),
  }


def _slice(preds: Dict[str, np.ndarray], slice_name: str) -> np.ndarray:
  return metrics_lib.slice_masks(preds["cold"])[slice_name]


def value_intervals(seed_preds: Sequence[Dict[str, np.ndarray]], n_boot: int, seed: int = 0):
  """One scheme's `VALUES` on one cut's test rows (seeds averaged), with user-bootstrap
  intervals."""
  first = seed_preds[0]
  users = first["user_id"].astype(str)
  out = {}
  for name, slice_name, metric in VALUES:
    m = _slice(first, slice_name)
    scores = [p["ctr"][m] for p in seed_preds]
    out[name] = clustered_bootstrap(
      first["click"][m], users[m], users[m], scores, None, metric, n_boot, seed
    )
  return out


def pool(per_cut: Sequence[Sequence[Dict[str, np.ndarray]]]) -> Dict[str, np.ndarray]:
  """One scheme's test predictions [cut][seed] as one row set: `click`, `user_id`, `cut` (index),
  `group` ("<cut>:<user>"), `cold`, and `ctr` float[seeds, N].

  Raises:
    ValueError: when the cuts have different numbers of seeds.
  """
  if len({len(p) for p in per_cut}) != 1:
    raise ValueError(f"Every cut needs the same seeds. Received: {[len(p) for p in per_cut]}")
  users = [p[0]["user_id"].astype(str) for p in per_cut]
  cut = np.concatenate([np.full(len(u), i) for i, u in enumerate(users)])
  user_id = np.concatenate(users)
  return {
    "click": np.concatenate([p[0]["click"] for p in per_cut]).astype(np.float64),
    "user_id": user_id,
    "cut": cut,
    "group": np.char.add(np.char.add(cut.astype(str), ":"), user_id),
    "cold": np.concatenate([p[0]["cold"] for p in per_cut]).astype(bool),
    "ctr": np.stack(
      [np.concatenate([p[k]["ctr"] for p in per_cut]) for k in range(len(per_cut[0]))]
    ),
  }


def pooled_comparison(a, b, n_boot: int, seed: int = 0, diffs=POOLED_DIFFS) -> Dict[str, Any]:
  """`diffs` of pooled scheme `a` minus pooled hashing `b` (both from `pool`, same rows)."""
  for key in ("click", "user_id", "cut"):
    if not np.array_equal(a[key], b[key]):
      raise ValueError(f"The pooled row sets differ in `{key}`: not the same test rows.")
  out = {}
  for name, slice_name, metric in diffs:
    m = metrics_lib.slice_masks(a["cold"])[slice_name]
    out[name] = clustered_bootstrap(
      a["click"][m],
      a["user_id"][m],
      a["group"][m],
      list(a["ctr"][:, m]),
      list(b["ctr"][:, m]),
      metric,
      n_boot,
      seed,
    )
  return out


def pooled_values(a, n_boot: int, seed: int = 0) -> Dict[str, Any]:
  out = {}
  for name, slice_name, metric in POOLED_DIFFS:
    m = metrics_lib.slice_masks(a["cold"])[slice_name]
    out[name] = clustered_bootstrap(
      a["click"][m],
      a["user_id"][m],
      a["group"][m],
      list(a["ctr"][:, m]),
      None,
      metric,
      n_boot,
      seed,
    )
  return out


def _validation_mean(cut_entries: List[Dict[str, Any]], key: str) -> float:
  values = np.array(
    [e["validation_vs_hash"][key] for e in cut_entries if "validation_vs_hash" in e], np.float64
  )
  return float(np.nanmean(values)) if (~np.isnan(values)).any() else float("nan")


def _select(entries: List[Dict[str, Any]], among=None) -> Dict[str, Any]:
  """`experiment_report.select`'s rule on the validation differences averaged over the cuts."""
  sel = experiment_report.select(entries, among)
  sel["rule"] += " (validation differences averaged over the cuts)"
  return sel


def summarize(
  cuts: List[Dict[str, Any]],
  runs: List[experiment_report.Run],
  results: Dict[str, Dict[str, Any]],
  load_predictions: Callable,
  n_boot: int,
  seed: int = 0,
) -> Dict[str, Any]:
  """The per-cut and pooled summary.

  Args:
    cuts: one dict per cut with at least `name` (the key of `results`).
    runs: the runs of every cut (one budget, one history).
    results: cut name -> run key -> `ranker_training.fit_and_evaluate`'s metrics.
    load_predictions: (cut index, run) -> that run's predictions.npz arrays.
    n_boot: int. Bootstrap resamples.
    seed: int. Bootstrap seed.
  """
  budget, history = runs[0].rows, runs[0].history
  names = list(dict.fromkeys(r.scheme for r in runs))
  per_cut, preds = [], []
  for i, cut in enumerate(cuts):
    loaded = {r.key: load_predictions(i, r) for r in runs}
    s = experiment_report.summarize(
      runs,
      results[cut["name"]],
      lambda r: loaded[r.key],
      [budget],
      lambda sc, rows: [budget],
      n_boot,
    )
    by_scheme = {n: [loaded[r.key] for r in runs if r.scheme == n] for n in names}
    intervals = {n: value_intervals(p, n_boot, seed) for n, p in by_scheme.items()}
    per_cut.append({**cut, **s, "intervals": intervals})
    preds.append(by_scheme)
  pooled = {n: pool([p[n] for p in preds]) for n in names}
  ref = pooled[schemes.HASH]
  entries = []
  for n in names:
    cut_entries = [next(e for e in c["entries"] if e["scheme"] == n) for c in per_cut]
    entry = {
      "history": history,
      "scheme": n,
      "rows": budget,
      "table_rows": cut_entries[0]["table_rows"],
      "seeds": len(ref["ctr"]),
      "values": pooled_values(pooled[n], n_boot, seed),
    }
    if n != schemes.HASH:
      entry["vs_hash"] = pooled_comparison(pooled[n], ref, n_boot, seed)
      entry["validation_vs_hash"] = {
        k: _validation_mean(cut_entries, k) for k in ("auc_all", "gauc_cold")
      }
    entries.append(entry)
  cold = ref["cold"]
  return {
    "cuts": per_cut,
    "pooled": {
      "rows": int(len(cold)),
      "cold_rows": int(cold.sum()),
      "users": int(len(np.unique(ref["user_id"]))),
      "cold_users": int(len(np.unique(ref["user_id"][cold]))),
      "cold_groups": int(len(np.unique(ref["group"][cold]))),
      "entries": entries,
    },
    "selection": _select(entries),
    "selection_sid": _select(entries, experiment_report.sid_based_schemes()),
    "budget": budget,
    "history": history,
  }


def _ci(d: Optional[Dict[str, Any]], signed: bool = True) -> str:
  if not d:
    return ""
  if d.get("too_small"):
    return f"too small ({d['groups']} groups)"
  if d.get("value") is None:
    return "n/a"
  f = "+.4f" if signed else ".4f"
  return f"{d['value']:{f}} [{d['low']:{f}}, {d['high']:{f}}]"


def _as_value(d: Optional[Dict[str, float]]) -> Optional[Dict[str, Any]]:
  """An interval of `metrics_lib.bootstrap_difference` ("diff") in this module's form ("value")."""
  return {"value": d["diff"], "low": d["low"], "high": d["high"]} if d else None


def _cut_diff(cut: Dict[str, Any], entry: Dict[str, Any], key: str) -> Optional[Dict[str, Any]]:
  """A cut's difference to hashing, or the too-small marker of a GAUC slice with too few users
  (`experiment_report` bootstraps it anyway)."""
  own = cut["intervals"][entry["scheme"]].get(key)
  if own and own.get("too_small"):
    return own
  return _as_value((entry.get("vs_hash") or {}).get(key))


def _signed(value: float) -> str:
  return f"{value:+.4f}" if np.isfinite(value) else "n/a"


VALIDATION_HEADER = ("val Δ AUC all", "val Δ GAUC cold")


def _validation_cells(val: Optional[Dict[str, float]]) -> List[str]:
  """The validation differences' cells (`VALIDATION_HEADER`); empty for hashing itself."""
  return [_signed(val["auc_all"]), _signed(val["gauc_cold"])] if val else ["", ""]


def _finding(label: str, d: Dict[str, Any]) -> str:
  if d.get("value") is None:
    return f"{label} {_ci(d)}"
  return f"{label} {_ci(d)} ({report_format.verdict(d['low'], d['high'])} hashing)"


def _date(t: Optional[int]) -> str:
  if t is None:
    return "end"
  return datetime.datetime.fromtimestamp(t, tz=datetime.timezone.utc).strftime("%Y-%m-%d")


def _flag_value(value: Any) -> str:
  return ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def _protocol_lines(summary: Dict[str, Any]) -> List[str]:
  p = summary.get("protocol")
  if not p:
    return []
  deviations = p.get("deviations") or {}
  followed = (
    "This run follows it."
    if not deviations
    else "This run departs from it: "
    + ", ".join(f"--{k}={_flag_value(v)}" for k, v in sorted(deviations.items()))
    + " (its figures are not the protocol's)."
  )
  return [
    f"Protocol fixed in code on {p['fixed_on']}, before any test figure of it was produced "
    f"(`trainers/rolling_origin.py`). {followed}",
    "",
  ]


def _cut_table(summary: Dict[str, Any]) -> List[str]:
  header = [
    "cut", "test window (UTC)", "train rows", "fit", "validation", "test rows", "cold rows",
    "cold items", "users with cold rows", "items for SIDs",
  ]  # fmt: skip
  rows = []
  for c in summary["cuts"]:
    n = c.get("counts", {})
    cells = [
      c["name"],
      f"{_date(c.get('start'))} .. {_date(c.get('end'))}",
      *(str(n.get(k, "")) for k in ("n_train", "n_fit", "n_validation", "n_eval", "n_cold_eval")),
      str(n.get("n_cold_items", "")),
      str(n.get("n_cold_users", "")),
      str(c.get("sid_items", "")),
    ]
    rows.append(cells)
  return report_format.table(header, rows)


def _pooled_table(summary: Dict[str, Any]) -> List[str]:
  header = [
    "scheme", "rows", "AUC cold", "GAUC cold", "Δ AUC cold", "Δ GAUC cold", "Δ AUC all",
    "Δ GAUC all", *VALIDATION_HEADER,
  ]  # fmt: skip
  rows = []
  for e in summary["pooled"]["entries"]:
    vs, val = e.get("vs_hash") or {}, e.get("validation_vs_hash")
    cells = [
      e["scheme"],
      str(e["table_rows"] or "-"),
      _ci(e["values"]["auc_cold"], signed=False),
      _ci(e["values"]["gauc_cold"], signed=False),
      *(_ci(vs.get(k)) for k in ("auc_cold", "gauc_cold", "auc_all", "gauc_all")),
      *_validation_cells(val),
    ]
    rows.append(cells)
  return report_format.table(header, rows)


def _per_cut_table(cut: Dict[str, Any]) -> List[str]:
  header = [
    "scheme", "AUC all", "AUC warm", "AUC cold", "GAUC cold", "Δ AUC all", "Δ AUC cold",
    "Δ GAUC cold", *VALIDATION_HEADER,
  ]  # fmt: skip
  rows = []
  for e in cut["entries"]:
    iv, val = cut["intervals"][e["scheme"]], e.get("validation_vs_hash")
    cells = [
      e["scheme"],
      *(_ci(iv[k], signed=False) for k, _, _ in VALUES),
      *(_ci(_cut_diff(cut, e, k)) for k in ("auc_all", "auc_cold", "gauc_cold")),
      *_validation_cells(val),
    ]
    rows.append(cells)
  return report_format.table(header, rows)


def markdown(summary: Dict[str, Any]) -> str:
  """results.md: the protocol, the cuts, the pooled comparison, the validation choice, per cut."""
  pooled = summary["pooled"]
  lines = ["# Rolling-origin evaluation: item representations vs hashing", ""]
  lines += _protocol_lines(summary)
  lines += [
    f"Budget {summary['budget']} rows, history {summary['history']}, "
    f"training seeds per scheme and cut: {pooled['entries'][0]['seeds']}.",
    "",
    "## Cuts",
    "",
    *_cut_table(summary),
    "",
    "## Pooled over the cuts",
    "",
    f"The test rows of every cut together: {pooled['rows']} rows, {pooled['cold_rows']} cold "
    f"({pooled['cold_users']} users, {pooled['cold_groups']} (cut, user) groups). Values are means "
    "over seeds; Δ = scheme − hashing; 95% intervals from a bootstrap over users (a user's rows in "
    "every cut are drawn together); GAUC groups are (cut, user) pairs. val Δ: the validation "
    "slices' differences, averaged over the cuts.",
    "",
    *_pooled_table(summary),
    "",
  ]
  for title, key in (("any scheme", "selection"), ("semantic-ID schemes", "selection_sid")):
    sel = summary.get(key) or {}
    lines += [f"## Chosen on the validation slices: {title}", "", f"Rule: {sel.get('rule')}.", ""]
    if sel.get("chosen"):
      c, t = sel["chosen"], sel["test_vs_hash"]
      lines += [
        f"Chosen: {c['scheme']} at budget {c['rows']} ({c['table_rows'] or '-'} rows).",
        "",
        f"Pooled test finding, {c['scheme']} vs hashing: "
        + "; ".join(_finding(LABELS[k], t[k]) for k, _, _ in POOLED_DIFFS if k in t)
        + ".",
        "",
      ]
  lines += ["## Per cut", ""]
  for cut in summary["cuts"]:
    lines += [
      f"### Cut {cut['name']} (test {_date(cut.get('start'))} .. {_date(cut.get('end'))})",
      "",
      "Values: mean over seeds [user-bootstrap 95% interval]; Δ: scheme − hashing with its "
      "user-bootstrap interval.",
      "",
      *_per_cut_table(cut),
      "",
    ]
  return "\n".join(lines) + "\n"


def _errorbar(ax, x: float, d: Optional[Dict[str, Any]], **kwargs) -> bool:
  """One point with its interval; False (nothing drawn) when the value is missing."""
  if not d or d.get("value") is None or not np.isfinite(d["value"]):
    return False
  err = [[d["value"] - d["low"]], [d["high"] - d["value"]]]
  ax.errorbar([x], [d["value"]], yerr=err, fmt="o", capsize=3, **kwargs)
  return True


def plot_per_cut(summary: Dict[str, Any], path: str) -> None:
  """AUC all / warm / cold and cold GAUC per cut and scheme, with bootstrap intervals."""
  cuts = summary["cuts"]
  names = [e["scheme"] for e in summary["pooled"]["entries"]]
  fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
  colors = {n: f"C{i}" for i, n in enumerate(names)}
  for ax, (key, _, _) in zip(axes.flat, VALUES):
    drawn = False
    for j, n in enumerate(names):
      dx = (j - (len(names) - 1) / 2) * 0.08
      for i, cut in enumerate(cuts):
        label = n if i == 0 else None
        drawn |= _errorbar(ax, i + dx, cut["intervals"][n][key], color=colors[n], label=label)
    if not drawn:
      ax.text(0.5, 0.5, "too few users with both labels", ha="center", transform=ax.transAxes)
    ax.set_xticks(range(len(cuts)), [c["name"] for c in cuts])
    ax.set_title(f"{LABELS[key]} (test)")
    ax.grid(alpha=0.3)
  axes.flat[0].legend(fontsize=8)
  report_format.save_figure(fig, path)


def plot_vs_hash(summary: Dict[str, Any], path: str) -> None:
  """Each scheme's difference to hashing per cut and pooled (the last position), with intervals."""
  cuts = summary["cuts"]
  entries = [e for e in summary["pooled"]["entries"] if "vs_hash" in e]
  fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
  for ax, key in zip(axes, ("auc_all", "auc_cold", "gauc_cold")):
    for j, e in enumerate(entries):
      dx = (j - (len(entries) - 1) / 2) * 0.08
      for i, cut in enumerate(cuts):
        cut_entry = next(x for x in cut["entries"] if x["scheme"] == e["scheme"])
        _errorbar(
          ax,
          i + dx,
          _cut_diff(cut, cut_entry, key),
          color=f"C{j + 1}",
          label=e["scheme"] if i == 0 else None,
        )
      _errorbar(ax, len(cuts) + dx, e["vs_hash"][key], color=f"C{j + 1}")
    ax.axhline(0.0, color="gray", lw=1)
    ax.axvline(len(cuts) - 0.5, color="gray", ls=":", lw=1)
    ax.set_xticks(range(len(cuts) + 1), [c["name"] for c in cuts] + ["pooled"])
    ax.set_title(f"Δ {LABELS[key]} vs hashing (test)")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  report_format.save_figure(fig, path)


def write(summary: Dict[str, Any], output_dir: str) -> None:
  """results.json, results.md, per_cut.png and vs_hash.png in `output_dir`, each atomically."""
  io_utils.write_json(os.path.join(output_dir, "results.json"), summary)
  io_utils.write_text(os.path.join(output_dir, "results.md"), markdown(summary))
  plot_per_cut(summary, os.path.join(output_dir, "per_cut.png"))
  plot_vs_hash(summary, os.path.join(output_dir, "vs_hash.png"))
