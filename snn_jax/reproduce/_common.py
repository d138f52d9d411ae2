"""Pieces every paper reproduction shares: training a given topology stack,
statistics over seeds, and the provenance record committed with a result.

Statistics over seeds (the reproduction issue asks for confidence intervals
"over seeds"):

* :func:`mean_ci` -- mean with a Student-t interval over independent runs.
* :func:`seed_bootstrap_corr` -- a rank (or linear) correlation across all
  runs of a grid, with a *cluster* bootstrap interval: whole seeds are drawn
  with replacement (every run of a drawn seed enters together), so the
  interval reflects seed-to-seed variation rather than treating the runs of
  one seed as independent.
* :func:`paired_difference` -- ``value(arm) - value(reference)`` paired by
  seed (same seed, same held-out set), with a t interval.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from snn_jax import data as data_lib
from snn_jax import topology as topology_lib
from snn_jax.nn import LeNet5
from snn_jax.training import (TrainConfig, finished_summary,
                              train_and_evaluate)

ACCURACY = "final_test_acc"


def reduced_data(base: TrainConfig) -> TrainConfig:
  """The data of a reduced configuration: from an IDX ``--data_dir`` with
  ``data_split="auto"``, the seeded 8,000/2,000 split of the 10,000 test
  images (``"test_only"``) on which the reduced results were committed --
  whether or not the folder also holds the training files. A split chosen
  explicitly (``"canonical"``) is kept."""
  if data_lib.reads_idx_dir(base.dataset, base.data_dir) and base.data_split == "auto":
    return dataclasses.replace(base, data_split="test_only")
  return base


def with_dense_output(hidden_stack: Sequence[topology_lib.Topology],
                      num_classes: int) -> list[topology_lib.Topology]:
  """``hidden_stack`` followed by a dense ``n_last -> num_classes`` layer."""
  last = hidden_stack[-1].n_out
  return list(hidden_stack) + [topology_lib.make("dense", last, num_classes)]


class NotFinished(Exception):
  """A report-only pass met a run that has not finished (it is left out of
  the report, not counted as failed)."""


NOT_FINISHED = "not finished (report-only pass)"
_REPORT_ONLY = contextvars.ContextVar("report_only", default=False)


@contextlib.contextmanager
def reporting_only(enabled: bool = True):
  """Within the block, :func:`train` and :func:`train_stack` train nothing:
  they return finished runs' summaries and raise :class:`NotFinished` for
  the others (which :func:`guarded` turns into rows with ``error ==
  NOT_FINISHED``) -- how a study of many runs is reported while, or between
  sessions in which, its runs continue."""
  token = _REPORT_ONLY.set(bool(enabled))
  try:
    yield
  finally:
    _REPORT_ONLY.reset(token)


def report_only_now() -> bool:
  """Whether the current pass only reports (:func:`reporting_only`)."""
  return _REPORT_ONLY.get()


def train(config: TrainConfig, workdir: str, dataset, *,
          report_only: bool | None = None) -> dict[str, Any]:
  """``train_and_evaluate``, or with ``report_only`` the finished run's
  summary (``NotFinished`` when it has not finished): a long study can be
  reported while, or between sessions in which, its runs continue. None:
  as :func:`reporting_only` says."""
  if report_only is None:
    report_only = _REPORT_ONLY.get()
  if report_only:
    s = finished_summary(workdir, config.epochs)
    if s is None:
      raise NotFinished(workdir)
    return s
  return train_and_evaluate(config, workdir, dataset=dataset)


def train_stack(base: TrainConfig, stack: Sequence[topology_lib.Topology],
                workdir: str, dataset, *, seed: int,
                report_only: bool | None = None,
                **overrides: Any) -> dict[str, Any]:
  """Trains ``base`` on the given topology stack (saved to
  ``workdir/topology`` and passed as ``topology_dir``, so the run can be
  rebuilt with ``snn_jax.training.restore_model``). ``overrides`` replace
  further TrainConfig fields. Returns train_and_evaluate's summary
  (``report_only``: see :func:`train`)."""
  tdir = os.path.join(workdir, "topology")
  if report_only is None:
    report_only = _REPORT_ONLY.get()
  if report_only:
    s = finished_summary(os.path.join(workdir, "train"),
                         overrides.get("epochs", base.epochs))
    if s is None:
      raise NotFinished(workdir)
    return s
  if os.path.isdir(tdir):
    if topology_lib.load_stack(tdir, chained=False) != list(stack):
      raise ValueError(f"{tdir} holds a different topology than this run; "
                       "use a fresh workdir")
  else:
    topology_lib.save_stack(stack, tdir)
  name = stack[0].name if stack[0].name in topology_lib.names() else "pruned"
  if base.model == "lenet5_alford":  # (conv2 channels, fully connected width)
    hidden = (stack[1].n_out, stack[2].n_out)
  else:
    fc = stack[len(LeNet5.CONV_CHANNELS):] if base.model == "lenet5" else stack
    hidden = tuple(t.n_out for t in fc[:-1])
  cfg = dataclasses.replace(
      base, hidden=hidden, topology=name,
      density=None,
      fan_in=None, topology_params={}, topology_dir=tdir, seed=seed,
      progress=False, **overrides)
  return train_and_evaluate(cfg, os.path.join(workdir, "train"),
                            dataset=dataset)


def run_row(summary: dict[str, Any]) -> dict[str, Any]:
  """The fields of a train_and_evaluate summary that go into result rows."""
  return {"final_test_acc": summary["final_test_acc"],
          "best_test_acc": summary["best_test_acc"],
          "final_train_loss": summary["final_train_loss"],
          "density": summary["density"], "nnz_params": summary["nnz_params"],
          "train_seconds": summary["train_seconds"]}


def guarded(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
  """Runs one grid point; a topology that cannot be built (ValueError) or a
  run that diverges (FloatingPointError) becomes a row with ``error`` set
  instead of ending the grid. Rows without error have ``error == ""``."""
  try:
    row = fn()
    row.setdefault("error", "")
  except (ValueError, FloatingPointError) as e:
    row = {"error": f"{type(e).__name__}: {e}"[:300]}
  except NotFinished:
    row = {"error": NOT_FINISHED}
  return row


def failed_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """Rows whose run failed (unfinished runs of a report-only pass are not
  failures)."""
  return [r for r in rows if r.get("error") and r["error"] != NOT_FINISHED]


def ok_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  return [r for r in rows if not r.get("error")]


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
                      **match: Any) -> dict[str, float]:
  """:func:`mean_ci` of ``value`` of the ``arm`` run minus that of the
  ``reference`` run over the seeds where both succeeded, among the rows
  whose fields equal ``match`` (e.g. ``paired_difference(rows, "init",
  "neurofabric", "sparse_he", depth=32)``)."""
  by: dict[tuple, float] = {}
  for r in ok_rows(rows):
    if r[arm_key] in (arm, reference) and all(
        r[k] == v for k, v in match.items()):
      by[(r[arm_key], r["seed"])] = r[value]
  seeds = sorted(s for a, s in by if a == arm and (reference, s) in by)
  return mean_ci([by[(arm, s)] - by[(reference, s)] for s in seeds])


def group_stats(rows: Sequence[dict[str, Any]], keys: Sequence[str],
                value: str = ACCURACY) -> list[dict[str, Any]]:
  """One row per distinct combination of ``keys`` among the successful
  rows: the keys, and :func:`mean_ci` of ``value`` over its runs."""
  groups: dict[tuple, list[float]] = {}
  for r in ok_rows(rows):
    groups.setdefault(tuple(r[k] for k in keys), []).append(r[value])
  out = []
  for k in sorted(groups, key=lambda t: tuple(str(v) if isinstance(v, str)
                                              else v for v in t)):
    ci = mean_ci(groups[k])
    out.append({**dict(zip(keys, k)), "mean": ci["mean"], "ci_low": ci["low"],
                "ci_high": ci["high"], "std": ci["std"], "runs": ci["n"]})
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


class Provenance:
  """Records what a reproduction ran on and how long it took; ``write``
  puts ``provenance.json`` next to the results.

  >>> prov = Provenance("bourely2017", config, dataset)
  >>> ...  # run
  >>> prov.write(workdir, summary)
  """

  def __init__(self, paper: str, config: Any, dataset):
    self.paper = paper
    self.config = config
    self.data_source = getattr(dataset, "source", str(dataset))
    self.data_fingerprint = getattr(dataset, "fingerprint", None)
    self.data_sizes = {"name": dataset.name,
                       "train_examples": int(len(dataset.y_train)),
                       "test_examples": int(len(dataset.y_test))}
    self.started = datetime.datetime.now(datetime.timezone.utc)
    self._t0 = time.perf_counter()

  def record(self) -> dict[str, Any]:
    from snn_jax.utils import device_info, versions
    cfg = self.config
    if dataclasses.is_dataclass(cfg):
      cfg = _jsonable(dataclasses.asdict(cfg))
    return {
        "paper": self.paper,
        "command": " ".join(sys.argv),
        "started_utc": self.started.isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - self._t0, 1),
        "host": {"platform": platform.platform(), **device_info()},
        "versions": versions(),
        "data": {"source": self.data_source, **self.data_sizes,
                 "fingerprint": self.data_fingerprint},
        "config": cfg,
    }

  def write(self, workdir: str, **extra: Any) -> dict[str, Any]:
    """Writes ``provenance.json`` (``extra`` fields added, e.g.
    ``report_only=True`` for a pass that trained nothing)."""
    rec = {**self.record(), **extra}
    with open(os.path.join(workdir, "provenance.json"), "w") as f:
      json.dump(rec, f, indent=1)
    return rec


def _jsonable(x):
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.integer, np.floating)):
    return x.item()
  return x


def write_summary(summary: dict[str, Any], workdir: str) -> None:
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(_jsonable(summary), f, indent=1)


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
  ``paper``, ``mean``, ``ci_low`` or ``ci_high``) to ``path``; returns the
  text -- what REPRODUCTION.md quotes, regenerated with the results."""
  pct = {"paper", "mean", "ci_low", "ci_high", "paper_low", "paper_high",
         "ours_low", "ours_high"}

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
