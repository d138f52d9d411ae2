"""Grids of training runs: topologies x densities x seeds, one CSV, plots.

Each run trains into ``workdir/runs/<topology>_d<density>_s<seed>`` (so a
sweep that was stopped resumes, every run from its own checkpoints) and adds
one row to ``sweep.csv``/``sweep.json`` with the run's accuracy and the
data-free metrics of its topology stack -- the material of Bourely et al.'s
analysis (arXiv:1706.05683): accuracy against density, spectral gap and
algebraic connectivity, with Spearman rank correlations.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing
import os
import time
from typing import Any, Sequence

import numpy as np

from snn_jax import analysis
from snn_jax.studies import _runs
from snn_jax.studies._stats import group_stats
from snn_jax.studies._study import Study, run_study
from snn_jax.training import TrainConfig, build_topologies


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """The grid. ``base`` fixes everything else (its topology/density/seed are
  replaced by the grid values)."""
  base: TrainConfig
  topologies: Sequence[str]
  densities: Sequence[float]
  seeds: Sequence[int] = (0,)
  processes: int = 1


def run_name(topology: str, density: float, seed: int) -> str:
  return f"{topology}_d{density:g}_s{seed}"


def _one_run(cfg: TrainConfig, workdir: str, report_only: bool = False,
             dataset=None) -> dict[str, Any]:
  """Trains one grid point (or, with ``report_only``, finds it finished);
  returns its row: a topology that cannot be built, a run that diverges or
  (report-only) one that has not finished becomes a row with ``error`` set,
  not a crash of the sweep."""
  row: dict[str, Any] = {"topology": cfg.model.topology.name,
                         "requested_density": cfg.model.topology.density,
                         "seed": cfg.run.seed, "workdir": workdir}
  t0 = time.perf_counter()
  try:
    ds = dataset if dataset is not None else cfg.load_dataset()
    stack = build_topologies(cfg, ds.input_dim, ds.num_classes)
    summary = _runs.train(cfg, workdir, ds, report_only=report_only)
    row["spectral_gap"] = analysis.spectral_gap(stack)
    row["algebraic_connectivity"] = analysis.algebraic_connectivity(stack)
    row["layer_spectral_gap_mean"] = float(np.mean(
        [analysis.spectral_gap(t) for t in stack]))
    paths = analysis.path_stats(stack)
    row["reachability"] = paths["reachability"]
    row["paths_cv"] = paths["paths"]["cv"]
    row.update(density=summary["density"], nnz_params=summary["nnz_params"],
               final_test_acc=summary["final_test_acc"],
               best_test_acc=summary["best_test_acc"],
               train_seconds=summary["train_seconds"], error="")
  except (ValueError, FloatingPointError) as e:
    row["error"] = f"{type(e).__name__}: {e}"
  except _runs.NotFinished:
    row["error"] = _runs.NOT_FINISHED
  row["seconds"] = time.perf_counter() - t0
  return row


def sweep_rows(config: SweepConfig, workdir: str, ds) -> list[dict[str, Any]]:
  """Every grid point in ``workdir/runs/<topology>_d<density>_s<seed>``
  (finished runs are skipped), sequentially or in ``processes`` spawned
  worker processes (each loads the data itself)."""
  jobs = []
  for topo in config.topologies:
    for density in config.densities:
      for seed in config.seeds:
        cfg = config.base.override({
            "model.topology.name": topo,
            "model.topology.density": None if topo == "dense" else density,
            "run.seed": seed, "run.progress": False})
        jobs.append((cfg, os.path.join(workdir, "runs", run_name(topo, density, seed))))
  report_only = _runs.report_only_now()
  if config.processes > 1:
    ctx = multiprocessing.get_context("spawn")  # JAX is not fork-safe
    with cf.ProcessPoolExecutor(config.processes, mp_context=ctx) as pool:
      return list(pool.map(_one_run, *zip(*jobs),
                           [report_only] * len(jobs)))
  return [_one_run(c, w, report_only, ds) for c, w in jobs]


METRICS = ("density", "spectral_gap", "algebraic_connectivity")


def sweep_statistics(config: SweepConfig, rows, workdir: str
                     ) -> dict[str, Any]:
  """Accuracy per topology and requested density (mean, t interval over
  seeds) and the correlation of accuracy with each of :data:`METRICS`."""
  return {"accuracy": group_stats(rows, ("topology", "requested_density")),
          "correlations": {m: correlations(rows, m) for m in METRICS}}


SWEEP = Study(
    name="sweep", rows=sweep_rows, statistics=sweep_statistics,
    schema=("accuracy", "correlations"), rows_file="sweep",
    failed_keys=("topology", "requested_density", "seed"),
    plot=lambda config, rows, summary, workdir: plot_sweep(rows, workdir))


def run_sweep(config: SweepConfig, workdir: str, *,
              dataset=None) -> dict[str, Any]:
  """Runs the grid (:func:`sweep_rows`) on the study skeleton: writes
  ``sweep.csv``/``sweep.json`` (one row per run; ``load_rows(SWEEP,
  workdir)`` reads them), the plots, ``summary.json`` and
  ``provenance.json``; returns the summary."""
  return run_study(SWEEP, config, workdir, dataset=dataset)


def correlations(rows: Sequence[dict[str, Any]], metric: str) -> dict[str, float]:
  """Spearman and Pearson correlation of final test accuracy with ``metric``
  over the successful runs (NaN when fewer than three). A point estimate;
  the reproductions' ``seed_bootstrap_corr`` adds an interval over seeds."""
  import scipy.stats

  ok = [r for r in rows if not r.get("error") and r.get(metric) is not None]
  if len(ok) < 3:
    return {"spearman": float("nan"), "pearson": float("nan"), "n": len(ok)}
  a = np.array([r["final_test_acc"] for r in ok])
  m = np.array([r[metric] for r in ok], dtype=float)
  if np.ptp(a) == 0 or np.ptp(m) == 0:
    return {"spearman": float("nan"), "pearson": float("nan"), "n": len(ok)}
  return {"spearman": float(scipy.stats.spearmanr(a, m).statistic),
          "pearson": float(scipy.stats.pearsonr(a, m).statistic), "n": len(ok)}


def plot_sweep(rows: Sequence[dict[str, Any]], out_dir: str) -> None:
  """``accuracy_vs_density.png`` (mean and spread over seeds per topology)
  and ``accuracy_vs_expansion.png`` (against spectral gap and algebraic
  connectivity, with rank correlations)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  ok = [r for r in rows if not r.get("error")]
  if not ok:
    return
  fig, ax = plt.subplots(figsize=(6, 4))
  for topo in sorted({r["topology"] for r in ok}):
    pts: dict[float, list[float]] = {}
    for r in ok:
      if r["topology"] == topo:
        pts.setdefault(r["density"], []).append(r["final_test_acc"])
    ds = sorted(pts)
    mean = [np.mean(pts[d]) for d in ds]
    err = [np.std(pts[d]) for d in ds]
    ax.errorbar(ds, mean, yerr=err, marker="o", capsize=3, label=topo)
  ax.set_xscale("log")
  ax.set_xlabel("density")
  ax.set_ylabel("final test accuracy")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "accuracy_vs_density.png"), dpi=110)
  plt.close(fig)

  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, metric in zip(axes, ("spectral_gap", "algebraic_connectivity")):
    for topo in sorted({r["topology"] for r in ok}):
      rr = [r for r in ok if r["topology"] == topo]
      ax.scatter([r[metric] for r in rr], [r["final_test_acc"] for r in rr],
                 label=topo, s=18)
    c = correlations(ok, metric)
    ax.set_title(f"{metric}: Spearman {c['spearman']:.2f}, Pearson "
                 f"{c['pearson']:.2f} (n={c['n']})", fontsize=9)
    ax.set_xlabel(metric)
    ax.set_ylabel("final test accuracy")
  axes[1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "accuracy_vs_expansion.png"), dpi=110)
  plt.close(fig)
