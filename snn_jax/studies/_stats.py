"""Statistics over the runs of a study (every study's, the reproductions'
and the general ones'), and the Markdown tables committed with results.

* :func:`mean_ci` -- mean with a Student-t interval over independent runs.
* :func:`seed_bootstrap_corr` -- a rank (or linear) correlation across all
  runs of a grid, with a *cluster* bootstrap interval: whole seeds are drawn
  with replacement (every run of a drawn seed enters together), so the
  interval reflects seed-to-seed variation rather than treating the runs of
  one seed as independent.
* :func:`paired_difference` -- ``value(arm) - value(reference)`` paired by
  seed (same seed, same held-out set), with a seed-bootstrap interval and
  the :func:`comparison_verdict` of the two arms.
* :func:`group_stats` -- :func:`bootstrap_mean_ci` per group of rows, with
  its range and its collapsed runs.
* :func:`bootstrap_mean_ci` -- mean with a seed-bootstrap percentile
  interval, which stays inside the range of the values (an accuracy
  interval inside [0, 100 %]; a t interval over three seeds with one
  collapsed run reached [28.7, 140.4]).
* :func:`accuracy_verdict` -- the paper's number against ours, in a
  vocabulary that can fail: "unstable (k of n runs collapsed)",
  "inconclusive (interval wider than X points)", "agree", "ours higher",
  "ours lower".
* :func:`comparison_verdict` -- one of our arms against another, seed by
  seed: "higher (n of n seeds)", "lower (n of n seeds)", "inconclusive (k
  of n seeds higher)", "unstable (k of n runs collapsed)".
* :func:`collapsed_runs` -- the collapse rule both verdicts share.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from snn_jax.studies._runs import ok_rows

ACCURACY = "final_test_acc"
# A run collapsed when it ends at most CHANCE or this far below its group's
# best (:func:`collapsed_runs`).
COLLAPSE_GAP_POINTS = 10.0
CHANCE = 0.15


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
  """Mean of independent runs with a two-sided Student-t interval.

  Returns ``{"mean", "low", "high", "std", "n"}``; with one value the
  interval is that value (``std`` 0), with none everything is NaN.
  """
  import scipy.stats
  x = np.asarray([v for v in values if v is not None], dtype=np.float64)
  n = int(x.size)
  if n == 0:
    nan = float("nan")
    return {"mean": nan, "low": nan, "high": nan, "std": nan, "n": 0}
  mean = float(x.mean())
  if n == 1:
    return {"mean": mean, "low": mean, "high": mean, "std": 0.0, "n": 1}
  std = float(x.std(ddof=1))
  half = float(scipy.stats.t.ppf(0.5 + level / 2, n - 1) * std / np.sqrt(n))
  return {"mean": mean, "low": mean - half, "high": mean + half, "std": std,
          "n": n}


def bootstrap_mean_ci(values: Sequence[float], level: float = 0.95,
                      n_boot: int = 10_000, seed: int = 0) -> dict[str, float]:
  """Mean of independent runs with a percentile interval from resampling
  the runs with replacement.

  The interval lies within ``[min, max]`` of the values, so an accuracy's
  interval never leaves [0, 1]. Returns ``{"mean", "low", "high", "min",
  "max", "n"}``; one value gives a point interval, none NaN everywhere.
  """
  x = np.asarray([v for v in values if v is not None], dtype=np.float64)
  n = int(x.size)
  nan = float("nan")
  if n == 0:
    return {"mean": nan, "low": nan, "high": nan, "min": nan, "max": nan,
            "n": 0}
  out = {"mean": float(x.mean()), "min": float(x.min()),
         "max": float(x.max()), "n": n}
  if n == 1:
    return {**out, "low": out["mean"], "high": out["mean"]}
  rng = np.random.default_rng(seed)
  means = x[rng.integers(n, size=(n_boot, n))].mean(axis=1)
  lo, hi = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
  return {**out, "low": float(lo), "high": float(hi)}


def accuracy_verdict(paper: float, values: Sequence[float], *,
                     margin_points: float = 0.5,
                     max_width_points: float = 2.0,
                     collapse_gap_points: float = COLLAPSE_GAP_POINTS,
                     chance: float = CHANCE) -> dict[str, Any]:
  """Whether our runs reproduce a paper's accuracy, in a verdict that can
  fail. Accuracies are fractions in [0, 1]; the ``*_points`` arguments are
  percentage points.

  In order:
    * no runs: ``"not run"``;
    * a run *collapsed* -- at most ``chance`` (about MNIST's chance level
      plus a margin), or more than ``collapse_gap_points`` below the best
      run of the group: ``"unstable (k of n runs collapsed)"``;
    * one run: ``"agree (1 run)"`` within ``margin_points`` of the paper,
      else ``"ours higher (1 run)"`` / ``"ours lower (1 run)"``;
    * the paper's number outside our seed-bootstrap interval
      (:func:`bootstrap_mean_ci`) widened by ``margin_points`` (a single run
      of theirs has seed noise of its own): ``"ours higher"`` /
      ``"ours lower"`` -- a wide interval that still excludes it differs;
    * inside it, but the interval wider than ``max_width_points``:
      ``"inconclusive (interval wider than X points)"``;
    * else ``"agree"``.

  Returns ``{"verdict", "mean", "low", "high", "min", "max", "n",
  "collapsed"}``.
  """
  ci = bootstrap_mean_ci(values)
  x = [float(v) for v in values if v is not None]
  out = {**ci, "collapsed": 0}
  if not x:
    return {**out, "verdict": "not run"}
  collapsed = collapsed_runs(x, collapse_gap_points=collapse_gap_points,
                             chance=chance)
  out["collapsed"] = collapsed
  margin = margin_points / 100
  if collapsed:
    return {**out, "verdict": f"unstable ({collapsed} of {len(x)} runs "
                              "collapsed)"}
  if len(x) == 1:
    if abs(x[0] - paper) <= margin:
      return {**out, "verdict": "agree (1 run)"}
    side = "higher" if x[0] > paper else "lower"
    return {**out, "verdict": f"ours {side} (1 run)"}
  if not ci["low"] - margin <= paper <= ci["high"] + margin:
    side = "higher" if ci["mean"] > paper else "lower"
    return {**out, "verdict": f"ours {side}"}
  if (ci["high"] - ci["low"]) * 100 > max_width_points:
    return {**out, "verdict": "inconclusive (interval wider than "
                              f"{max_width_points:g} points)"}
  return {**out, "verdict": "agree"}


def collapsed_runs(values: Sequence[float], *,
                   collapse_gap_points: float = COLLAPSE_GAP_POINTS,
                   chance: float = CHANCE) -> int:
  """How many of a group's accuracies (fractions) *collapsed*: at most
  ``chance`` (about MNIST's chance level plus a margin), or more than
  ``collapse_gap_points`` below the group's best run."""
  x = [float(v) for v in values if v is not None]
  if not x:
    return 0
  best = max(x)
  return int(sum(v <= chance or v < best - collapse_gap_points / 100
                 for v in x))


def comparison_verdict(arm: Sequence[float], reference: Sequence[float], *,
                       names: tuple[str, str] = ("higher", "lower"),
                       **collapse: float) -> str:
  """``arm`` against ``reference``, run for run (``arm[i]`` and
  ``reference[i]`` trained with the same seed), in a verdict that can
  fail:

    * no pairs: ``"not run"``;
    * a collapsed run in either arm (:func:`collapsed_runs`, each arm its
      own group): ``"unstable (k of n runs collapsed)"``;
    * ``arm`` ahead at every seed: ``"higher (n of n seeds)"`` (``names[0]``);
      behind at every seed: ``"lower (n of n seeds)"``; one seed says so with
      ``"(1 seed)"``;
    * else ``"inconclusive (k of n seeds higher)"``.

  With three seeds, "3 of 3" has probability 1/8 under no difference: a
  sign, not a test; the intervals beside it carry the size.
  """
  pairs = [(float(a), float(b)) for a, b in zip(arm, reference)
           if a is not None and b is not None]
  if not pairs:
    return "not run"
  n = len(pairs)
  k = (collapsed_runs([a for a, _ in pairs], **collapse)
       + collapsed_runs([b for _, b in pairs], **collapse))
  if k:
    return f"unstable ({k} of {2 * n} runs collapsed)"
  ahead = sum(a > b for a, b in pairs)
  behind = sum(a < b for a, b in pairs)
  seeds = "1 seed" if n == 1 else f"{n} of {n} seeds"
  if ahead == n:
    return f"{names[0]} ({seeds})"
  if behind == n:
    return f"{names[1]} ({seeds})"
  return f"inconclusive ({ahead} of {n} seeds higher)"


def _corr(x: np.ndarray, y: np.ndarray, method: str) -> float:
  import scipy.stats
  if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
    return float("nan")
  if method == "spearman":
    return float(scipy.stats.spearmanr(x, y).statistic)
  return float(scipy.stats.pearsonr(x, y).statistic)


def seed_bootstrap_corr(rows: Sequence[dict[str, Any]], x_key: str,
                        y_key: str = ACCURACY, *, method: str = "spearman",
                        group_key: str = "seed", n_boot: int = 2000,
                        level: float = 0.95, seed: int = 0) -> dict[str, Any]:
  """Correlation of ``y_key`` with ``x_key`` over ``rows`` (rows with an
  error or a missing/non-finite value are left out), with a percentile
  interval from a cluster bootstrap over ``group_key`` (module docstring).

  Args:
    method: ``"spearman"`` or ``"pearson"``.
    n_boot: bootstrap resamples; resamples whose correlation is undefined
      (constant values) are dropped and counted in ``n_boot_used``.

  Returns:
    ``{"estimate", "low", "high", "n", "n_groups", "n_boot_used", "method"}``
    (NaN estimate and interval with fewer than three usable rows; NaN
    interval with fewer than two groups).
  """
  if method not in ("spearman", "pearson"):
    raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}")
  use = []
  for r in ok_rows(rows):
    x, y = r.get(x_key), r.get(y_key)
    if x is None or y is None or not (np.isfinite(x) and np.isfinite(y)):
      continue
    use.append((r.get(group_key), float(x), float(y)))
  nan = float("nan")
  out = {"estimate": nan, "low": nan, "high": nan, "n": len(use),
         "n_groups": len({g for g, _, _ in use}), "n_boot_used": 0,
         "method": method}
  if len(use) < 3:
    return out
  x = np.array([u[1] for u in use])
  y = np.array([u[2] for u in use])
  out["estimate"] = _corr(x, y, method)
  groups = sorted({u[0] for u in use}, key=str)
  if len(groups) < 2:
    return out
  members = {g: np.array([i for i, u in enumerate(use) if u[0] == g])
             for g in groups}
  rng = np.random.default_rng(seed)
  stats = []
  for _ in range(n_boot):
    pick = rng.integers(len(groups), size=len(groups))
    idx = np.concatenate([members[groups[k]] for k in pick])
    c = _corr(x[idx], y[idx], method)
    if np.isfinite(c):
      stats.append(c)
  if stats:
    lo, hi = np.quantile(stats, [0.5 - level / 2, 0.5 + level / 2])
    out.update(low=float(lo), high=float(hi), n_boot_used=len(stats))
  return out


def paired_difference(rows: Sequence[dict[str, Any]], arm_key: str, arm: Any,
                      reference: Any, value: str = ACCURACY,
                      **match: Any) -> dict[str, Any]:
  """``value`` of the ``arm`` run minus that of the ``reference`` run over
  the seeds where both succeeded, among the rows whose fields equal
  ``match`` (e.g. ``paired_difference(rows, "init", "neurofabric",
  "sparse_he", depth=32)``): :func:`bootstrap_mean_ci` of the differences
  (``mean, low, high, min, max, n``; the interval stays within the
  seeds' differences), ``higher_in`` (seeds where ``arm`` is ahead) and
  the :func:`comparison_verdict` (``verdict``)."""
  by: dict[tuple, float] = {}
  for r in ok_rows(rows):
    if r[arm_key] in (arm, reference) and all(
        r[k] == v for k, v in match.items()):
      by[(r[arm_key], r["seed"])] = r[value]
  seeds = sorted(s for a, s in by if a == arm and (reference, s) in by)
  a = [by[(arm, s)] for s in seeds]
  b = [by[(reference, s)] for s in seeds]
  out = bootstrap_mean_ci([x - y for x, y in zip(a, b)])
  # Only accuracies collapse; other values compare by sign alone.
  never = {} if _is_accuracy(value) else {"chance": -np.inf,
                                          "collapse_gap_points": np.inf}
  return {**out, "higher_in": int(sum(x > y for x, y in zip(a, b))),
          "verdict": comparison_verdict(a, b, **never)}


def _is_accuracy(value: str) -> bool:
  return value.endswith("_acc")


def group_stats(rows: Sequence[dict[str, Any]], keys: Sequence[str],
                value: str = ACCURACY) -> list[dict[str, Any]]:
  """One row per distinct combination of ``keys`` among the successful
  rows: the keys, :func:`bootstrap_mean_ci` of ``value`` over its runs
  (``mean, ci_low, ci_high``: an accuracy's interval stays in [0, 1]),
  ``std``, ``min``, ``max``, ``runs`` and, for an accuracy (a ``*_acc``
  value), the ``collapsed`` runs (:func:`collapsed_runs`)."""
  groups: dict[tuple, list[float]] = {}
  for r in ok_rows(rows):
    groups.setdefault(tuple(r[k] for k in keys), []).append(r[value])
  out = []
  for k in sorted(groups, key=lambda t: tuple(str(v) if isinstance(v, str)
                                              else v for v in t)):
    values = groups[k]
    ci = bootstrap_mean_ci(values)
    out.append({**dict(zip(keys, k)), "mean": ci["mean"], "ci_low": ci["low"],
                "ci_high": ci["high"],
                "std": float(np.std(values, ddof=1)) if len(values) > 1
                else 0.0, "min": ci["min"], "max": ci["max"],
                "runs": ci["n"],
                **({"collapsed": collapsed_runs(values)}
                   if _is_accuracy(value) else {})})
  return out


def errorbar_ci(ax, x, stats: Sequence[dict[str, Any]], *,
                clip: tuple[float, float] | None = None, **kwargs) -> None:
  """Plots :func:`group_stats` rows at ``x``: means with their intervals,
  drawn clipped to ``clip`` where given (an accuracy interval from two
  seeds can reach past [0, 1]; the tables keep the unclipped bounds)."""
  y = np.array([s["mean"] for s in stats])
  low = np.array([s["ci_low"] for s in stats])
  high = np.array([s["ci_high"] for s in stats])
  if clip is not None:
    low, high = np.clip(low, *clip), np.clip(high, *clip)
  ax.errorbar(x, y, yerr=[y - low, high - y], capsize=3, **kwargs)


def _cell(v: Any) -> str:
  if v is None or (isinstance(v, float) and not np.isfinite(v)):
    return "–"
  if isinstance(v, float):
    return f"{v:.4g}"
  return str(v)


def write_markdown_table(rows: Sequence[dict[str, Any]],
                         columns: Sequence[tuple[str, str]], path: str,
                         title: str = "") -> str:
  """Writes ``rows`` as a Markdown table (``columns``: (key, header)
  pairs; accuracies as percentages where the key ends in ``acc``, is
  ``paper``, ``mean``, ``ci_low``, ``ci_high``, ``min`` or ``max``) to ``path``; returns the
  text -- what REPRODUCTION.md quotes, regenerated with the results."""
  pct = {"paper", "mean", "ci_low", "ci_high", "paper_low", "paper_high",
         "ours_low", "ours_high", "min", "max"}

  def fmt(key, v):
    if (key in pct or key.endswith("acc")) and isinstance(v, float) \
        and np.isfinite(v):
      return f"{100 * v:.2f}"
    return _cell(v)
  lines = [f"{title}\n" if title else "",
           "| " + " | ".join(h for _, h in columns) + " |",
           "|" + "---|" * len(columns)]
  for r in rows:
    lines.append("| " + " | ".join(fmt(k, r.get(k)) for k, _ in columns) + " |")
  text = "\n".join(l for l in lines if l) + "\n"
  with open(path, "w") as f:
    f.write(text)
  return text
