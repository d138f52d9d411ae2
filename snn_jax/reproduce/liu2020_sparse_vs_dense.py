"""Liu et al. 2020's second claim at paper scale: sparse MLPs -- static
Erdős–Rényi and SET-evolved -- against the dense MLP of the same widths,
over several densities, on full MNIST and full Fashion-MNIST (canonical
60,000/10,000 splits), trained until the curves flatten.

The setup is SET's (``../shared/papers/README.md``: SET-MLP 784-1000-1000-
1000-10, Erdős–Rényi layers at density ``epsilon (n_in + n_out) / (n_in
n_out)``, ζ = 0.3 after every epoch but the last) with SET's own optimiser
(:data:`~snn_jax.reproduce.liu2020.SET_SETTING`) for all three methods.
Per dataset, seed and epsilon: ``static`` and ``set`` start from the same
graph; ``dense`` once per seed. Reported (``summary.json``,
``accuracy_vs_density.png``, ``sparse_vs_dense.md``): accuracy per method
and density with seed-bootstrap intervals over seeds, and the paired differences
``static - dense`` and ``set - dense`` (same seed) -- the claim holds at a
density where such a difference is positive with its interval above 0.
Whether each run's curve has flattened is checked, not assumed: the mean
test accuracy of its last ``window`` epochs against the ``window`` before
(``flattened``: gain below ``flat_tolerance``).

Our choices where SET's and Liu's material is silent (``choices``): 60
epochs (SET ran 1,000 on CIFAR-10; 60 fit this machine's budget and the
flattening check says whether they were enough), epsilon 2, 5 and 20
(hidden densities about 0.4 %, 1.1 % and 4.5 %), three seeds.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from snn_jax.reproduce import _common, _per_dataset
from snn_jax.reproduce.liu2020 import SET_SETTING, train_arm
from snn_jax.studies import Study, run_study
from snn_jax.training import TrainConfig, set_variants

EPOCHS = 60
METHODS = ("dense", "static", "set")


@dataclasses.dataclass(frozen=True)
class SparseVsDenseConfig:
  """Attributes:
    base: the training setup (dataset, data location, optimiser, epochs).
    hidden: hidden widths.
    epsilons: SET's density parameter, one sparse pair (static, set) each.
    zeta: fraction of each layer's weights SET rewires per epoch.
    seeds: one run per method, epsilon and seed.
    window: epochs compared by the flattening check.
    flat_tolerance: accuracy gain (fraction) below which a curve counts
      as flattened.
    set_variant: None (the setting of the first runs: :data:`CHOICES`) or a
      name in ``training.SET_VARIANTS`` (``"keras_mask"``: SET's own
      Keras-mask code, dropout and SReLU for every arm, the output layer
      dense), applied to every arm (its SET-only part to SET's).
  """
  base: TrainConfig
  hidden: tuple[int, ...] = (1000, 1000, 1000)
  epsilons: tuple[float, ...] = (2.0, 5.0, 20.0)
  zeta: float = 0.3
  seeds: tuple[int, ...] = (0, 1, 2)
  window: int = 5
  flat_tolerance: float = 0.002
  set_variant: str | None = None

  def __post_init__(self):
    if self.set_variant is not None:
      set_variants.get(self.set_variant)  # unknown names raise
    if not self.epsilons or min(self.epsilons) <= 0:
      raise ValueError(f"epsilons must be positive, got {self.epsilons}")
    if not 0 < self.zeta < 1:
      raise ValueError(f"zeta must be in (0, 1), got {self.zeta}")
    if len(self.seeds) < 2:
      raise ValueError("intervals over seeds need at least two seeds")
    if self.base.run.epochs < 2 * self.window:
      raise ValueError(f"the flattening check compares two windows of "
                       f"{self.window} epochs: need >= {2 * self.window} "
                       f"epochs, got {self.base.run.epochs}")


CHOICES = (
    f"SET-MLP 784-1000-1000-1000-10, {EPOCHS} epochs, SET's optimiser "
    "(SGD momentum 0.9, lr 0.01 constant, weight decay 2e-4, batch 128, "
    "per-feature standardisation) for dense, static and SET alike",
    "epsilon 2, 5, 20 (hidden densities ~0.4 %, 1.1 %, 4.5 %); three seeds; "
    "zeta 0.3; the output layer sparse as in SET's code where epsilon "
    "allows, dense where the density would exceed 1",
    "accuracy on the canonical 10,000 test images")


def choices(cfg: SparseVsDenseConfig) -> list[str]:
  """The study's ``choices``: :data:`CHOICES`, or the variant's setting."""
  if cfg.set_variant is None:
    return list(CHOICES)
  return set_variants.get(cfg.set_variant).describe() + [
      f"SET-MLP {'-'.join(str(h) for h in (784, *cfg.hidden, 10))}, "
      f"{cfg.base.run.epochs} epochs, epsilon "
      f"{', '.join(f'{e:g}' for e in cfg.epsilons)}, seeds "
      f"{', '.join(str(s) for s in cfg.seeds)}, zeta {cfg.zeta:g}",
      CHOICES[-1]]


def paper_config(base: TrainConfig) -> _per_dataset.PerDatasetConfig:
  return _per_dataset.PerDatasetConfig(
      paper="liu2020 sparse vs dense", choices=CHOICES,
      configs=tuple((name, SparseVsDenseConfig(base=b))
                    for name, b in _per_dataset.dataset_bases(
                        base, {"run.epochs": EPOCHS, "run.batch_size": 128,
                               **SET_SETTING})))


def flattening(metrics_path: str, window: int, tolerance: float
               ) -> dict[str, Any]:
  """Whether a run's test accuracy has stopped rising: mean of its last
  ``window`` epochs minus the mean of the ``window`` before."""
  with open(metrics_path) as f:
    acc = [json.loads(l)["test_acc"] for l in f if l.strip()]
  if len(acc) < 2 * window:
    return {"last_window_gain": None, "flattened": None}
  gain = float(np.mean(acc[-window:]) - np.mean(acc[-2 * window:-window]))
  return {"last_window_gain": gain, "flattened": gain < tolerance}


def run(cfg: _per_dataset.PerDatasetConfig, workdir: str, *,
        report_only: bool = False) -> dict[str, Any]:
  return _per_dataset.run(cfg, workdir, run_one=run_one,
                          report_only=report_only)


def grid_rows(cfg: SparseVsDenseConfig, workdir: str, ds
              ) -> list[dict[str, Any]]:
  """One row per run: per seed, dense, then static and SET at each
  epsilon (from the same Erdős–Rényi graph), each in
  ``workdir/runs/<method>[_eps<e>]_s<seed>`` (finished runs are skipped),
  with the flattening check of its curve."""
  base = cfg.base.override({"model.hidden": cfg.hidden, "run.progress": False})
  variant = (None if cfg.set_variant is None
             else set_variants.get(cfg.set_variant))
  dense_output = variant is not None and variant.shared.get(
      "model.dense_output", False)
  rows = []
  for seed in cfg.seeds:
    grid = [("dense", None)] + [(m, e) for e in cfg.epsilons
                                for m in ("static", "set")]
    for method, eps in grid:
      name = method if eps is None else f"{method}_eps{eps:g}"
      rdir = os.path.join(workdir, "runs", f"{name}_s{seed}")

      def one(method=method, eps=eps, seed=seed, rdir=rdir):
        arm = base if variant is None else variant.apply(
            base, evolving=method == "set").override(
                {"sparse.zeta": cfg.zeta} if method == "set" else {})
        s, metrics = train_arm(arm, method, epsilon=eps, seed=seed,
                               zeta=cfg.zeta, run_dir=rdir, dataset=ds,
                               dense_output=dense_output)
        return {**_common.run_row(s),
                **flattening(metrics, cfg.window, cfg.flat_tolerance)}
      row = _common.guarded(one)
      rows.append({"dataset": ds.name, "method": method,
                   "epsilon": eps, "seed": seed, **row})
  return rows


def statistics(cfg: SparseVsDenseConfig, rows, workdir: str
               ) -> dict[str, Any]:
  """:func:`analyse`, plus the side-by-side ``table`` (also written to
  ``sparse_vs_dense.md``)."""
  out = analyse(rows, cfg)
  table = side_by_side(rows)
  name = rows[0]["dataset"] if rows else cfg.base.data.name
  _common.write_markdown_table(
      table, [("method", "method"), ("epsilon", "epsilon"),
              ("density", "density"), ("runs", "runs"), ("mean", "test acc %"),
              ("ci_low", "95% CI low"), ("ci_high", "high"),
              ("minus_dense", "minus dense (points)"),
              ("minus_dense_low", "CI low"), ("minus_dense_high", "high"),
              ("verdict", "verdict"), ("flattened", "curves flattened")],
      os.path.join(workdir, "sparse_vs_dense.md"),
      title=f"{name}: sparse against dense (mean over seeds with a "
            "seed-bootstrap 95% interval; differences paired by seed; "
            "verdict: snn_jax.studies.comparison_verdict)")
  out["table"] = table
  return out


def _plot(cfg: SparseVsDenseConfig, rows, summary, workdir: str) -> None:
  if _common.ok_rows(rows):
    plot(summary["table"], rows[0]["dataset"],
         os.path.join(workdir, "accuracy_vs_density.png"))


STUDY = Study(
    name="liu2020 sparse vs dense", rows=grid_rows, statistics=statistics,
    schema=("choices", "accuracy", "paired_differences",
            "sparse_beats_dense_at", "not_flattened", "table"),
    rows_file="runs", failed_keys=("method", "epsilon", "seed"), plot=_plot)


def run_one(cfg: SparseVsDenseConfig, workdir: str, *,
            dataset=None) -> dict[str, Any]:
  """One dataset's grid (:func:`grid_rows`; finished runs are skipped) on
  the study skeleton: ``runs.csv/json``, ``sparse_vs_dense.md``,
  ``accuracy_vs_density.png``, ``summary.json``, ``provenance.json``.
  ``dataset`` overrides loading ``cfg.base``'s (tests). Returns the
  summary."""
  return run_study(STUDY, cfg, workdir, dataset=dataset)


def analyse(rows, cfg: SparseVsDenseConfig) -> dict[str, Any]:
  ok = _common.ok_rows(rows)
  out: dict[str, Any] = {"choices": choices(cfg)}
  out["accuracy"] = _common.group_stats(ok, ["method", "epsilon"])
  claims = {f"{method}_eps{eps:g}_minus_dense": minus_dense(ok, method, eps)
            for eps in cfg.epsilons for method in ("static", "set")}
  out["paired_differences"] = claims
  out["sparse_beats_dense_at"] = sorted(
      k.replace("_minus_dense", "") for k, d in claims.items()
      if d["n"] >= 2 and d["verdict"].startswith("higher"))
  out["not_flattened"] = [f"{r['method']} eps {r['epsilon']} seed {r['seed']}"
                          for r in ok if r.get("flattened") is False]
  return out


def minus_dense(ok_rows, method: str, eps: float) -> dict[str, float]:
  """``method`` at ``eps`` minus dense, paired by seed (mean, seed-bootstrap
  interval, verdict)."""
  pairs = [r for r in ok_rows if r["method"] == "dense"
           or (r["method"] == method and r["epsilon"] == eps)]
  return _common.paired_difference(pairs, "method", method, "dense")


def _sparse_or_dense(verdict: str) -> str:
  """A sparse-minus-dense comparison verdict in the table's words."""
  if verdict.startswith("higher"):
    return "sparse higher" + verdict[len("higher"):]
  if verdict.startswith("lower"):
    return "dense higher" + verdict[len("lower"):]
  return verdict


def side_by_side(rows) -> list[dict[str, Any]]:
  ok = _common.ok_rows(rows)
  out = []
  keys = sorted({(r["method"], r["epsilon"]) for r in ok},
                key=lambda k: (k[1] or 0, METHODS.index(k[0])))
  for method, eps in keys:
    mine = [r for r in ok if r["method"] == method and r["epsilon"] == eps]
    accs = [r["final_test_acc"] for r in mine]
    ci = _common.bootstrap_mean_ci(accs)
    row = {"method": method, "epsilon": eps,
           "density": float(np.mean([r["density"] for r in mine])),
           "runs": ci["n"], "mean": ci["mean"], "ci_low": ci["low"],
           "ci_high": ci["high"], "min": ci["min"], "max": ci["max"],
           "collapsed": _common.collapsed_runs(accs),
           "flattened": f"{sum(bool(r.get('flattened')) for r in mine)}/"
                        f"{len(mine)}"}
    if method != "dense":
      d = minus_dense(ok, method, eps)
      row.update(minus_dense=100 * d["mean"], minus_dense_low=100 * d["low"],
                 minus_dense_high=100 * d["high"],
                 verdict=_sparse_or_dense(d["verdict"]))
    out.append(row)
  return out


def plot(table, dataset: str, path: str) -> None:
  """Test accuracy against hidden density: static and SET with intervals
  over seeds, dense as a band."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(5.8, 3.8), layout="constrained")
  for method, marker in (("static", "s"), ("set", "o")):
    ss = sorted((t for t in table if t["method"] == method),
                key=lambda t: t["density"])
    if ss:
      _common.errorbar_ci(ax, [t["density"] for t in ss], ss, marker=marker,
                          label=f"{method} (mean, 95% CI)", clip=(0.0, 1.0))
  dense = [t for t in table if t["method"] == "dense"]
  if dense:
    d = dense[0]
    ax.axhspan(max(d["ci_low"], 0.0), min(d["ci_high"], 1.0), color="grey",
               alpha=0.3, label=f"dense (95% CI, {d['runs']} seeds)")
    ax.axhline(d["mean"], color="grey", lw=1)
  ax.set_xscale("log")
  ax.set_xlabel("density of the whole network (log scale)")
  ax.set_ylabel("final test accuracy")
  ax.set_title(f"{dataset}: sparse against dense, SET-MLP 784-1000-1000-1000-10",
               fontsize=9)
  ax.legend(fontsize=7)
  fig.savefig(path, dpi=110)
  plt.close(fig)
