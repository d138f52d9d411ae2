"""Bourely, Boueri & Choromanski 2017, "Sparse Neural Networks Topologies"
(arXiv:1706.05683): does accuracy follow the expander properties of the
layer graphs (spectral gap, algebraic connectivity) more than density?

Grid: sparse MLPs whose hidden layers use each topology family at each
density, several seeds on one fixed held-out set. The output layer is dense
for every run (a deviation from an all-sparse network, so that every family
can be built at every density: several structured families cannot build a
``width -> 10`` layer at low density); the graph metrics are computed on the
sparse hidden layers, the part that differs between runs.

Analysis (``summary.json``, ``bourely2017_grid.csv``):

* correlation of final test accuracy with density, spectral gap and
  algebraic connectivity over all runs, Spearman and Pearson, each with a
  cluster-bootstrap interval over seeds;
* the same correlations *within each density* (across families and seeds):
  density is a strong confounder (both metrics grow with it), so whether
  expansion explains accuracy beyond density shows up here. Only runs whose
  built density is within ``DENSITY_TOLERANCE`` of the requested one enter
  (structured families round to the densities they can build: RadiX-Net on
  a 784-input layer cannot go below 1/16);
* mean accuracy with a seed-bootstrap interval per (family, density);
* an input-permutation control: the ``control_topologies`` are trained again
  on images whose pixels are shuffled by one fixed permutation. Banded and
  block families (circulant, small world, RadiX-Net) connect neighbouring
  pixels in their first layer -- a locality prior that Erdős–Rényi layers
  lack; if their advantage comes from it, it disappears under permutation.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np

from snn_jax import analysis
from snn_jax import topology as topology_lib
from snn_jax.reproduce import _common
from snn_jax.studies import Study, run_study
from snn_jax.training import TrainConfig

METRICS = ("density", "spectral_gap", "algebraic_connectivity")
DENSITY_TOLERANCE = 0.2  # relative; wider deviations leave the within-density analysis
PERMUTATION_SEED = 20170619


@dataclasses.dataclass(frozen=True)
class BourelyConfig:
  """Attributes:
    base: dataset, optimiser, epochs, ``split_seed`` (its topology fields,
      ``hidden`` and ``seed`` are replaced by the grid).
    hidden: hidden layer widths (every hidden layer sparse).
    topologies: registered generator names.
    densities: density of every sparse layer.
    seeds: one run per (family, density, seed); the seed also draws the
      random topologies.
    control_topologies: families trained again on pixel-permuted inputs
      (empty: no control).
  """
  base: TrainConfig
  hidden: tuple[int, ...] = (512, 512)
  topologies: tuple[str, ...] = ("erdos_renyi", "fixed_fan_in", "biregular",
                                 "xnet", "circulant", "cayley", "small_world",
                                 "radixnet")
  densities: tuple[float, ...] = (0.01, 0.03, 0.1)
  seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
  control_topologies: tuple[str, ...] = ("erdos_renyi", "circulant",
                                         "small_world", "radixnet")

  def __post_init__(self):
    known = topology_lib.names()
    bad = [t for t in self.topologies + self.control_topologies
           if t not in known or t in ("dense", "pruned")]
    if bad:
      raise ValueError(f"topologies {bad} cannot be swept; choose from "
                       f"{[k for k in known if k not in ('dense', 'pruned')]}")
    if not self.hidden or any(h < 1 for h in self.hidden):
      raise ValueError(f"hidden widths must be positive, got {self.hidden}")
    if not self.densities or not all(0 < d < 1 for d in self.densities):
      raise ValueError(f"densities must be in (0, 1), got {self.densities}")
    if len(self.seeds) < 2:
      raise ValueError("intervals over seeds need at least two seeds")


def reduced_config(base: TrainConfig) -> BourelyConfig:
  """The committed default: 784-512-512-10 on the 8k/2k split of the MNIST
  test files (``_common.reduced_data``), 8 families x 3 densities x 5
  seeds, 5 epochs (about 12 minutes on 2 cores)."""
  return BourelyConfig(base=_common.reduced_data(base).override({
      "run.epochs": 5}))


def permute_inputs(ds, seed: int = PERMUTATION_SEED):
  """``ds`` with its input features shuffled by one fixed permutation (the
  same for training and held-out data); returns ``(dataset, permutation)``."""
  perm = np.random.default_rng(seed).permutation(ds.input_dim)
  return ds.transformed(f"input features permuted (seed {seed})",
                        x_train=ds.x_train[:, perm],
                        x_test=ds.x_test[:, perm]), perm


def _grid_point(cfg: BourelyConfig, topo: str, density: float, seed: int,
                workdir: str, ds) -> dict[str, Any]:
  widths = [ds.input_dim, *cfg.hidden]
  hidden_stack = topology_lib.make_stack(topo, widths, density=density,
                                         seed=seed)
  stack = _common.with_dense_output(hidden_stack, ds.num_classes)
  # Trained (or, in a report-only pass, found finished) before the
  # spectral metrics are computed, so unfinished runs cost nothing here.
  s = _common.train_stack(cfg.base, stack, workdir, ds, seed=seed)
  row: dict[str, Any] = {
      "topology": topo, "requested_density": density, "seed": seed,
      "sparse_density": float(sum(t.nnz for t in hidden_stack) /
                              sum(t.n_in * t.n_out for t in hidden_stack)),
      "spectral_gap": analysis.spectral_gap(hidden_stack),
      "algebraic_connectivity": analysis.algebraic_connectivity(hidden_stack),
  }
  row.update(_common.run_row(s))
  row["density"] = row["sparse_density"]  # the grid's x axis: hidden layers
  row["density_matched"] = bool(abs(row["sparse_density"] / density - 1)
                                <= DENSITY_TOLERANCE)
  return row


def analyse(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Correlations over all runs and within each requested density."""
  out: dict[str, Any] = {"overall": {}, "within_density": {}}
  for m in METRICS:
    out["overall"][m] = {meth: _common.seed_bootstrap_corr(rows, m, method=meth)
                         for meth in ("spearman", "pearson")}
  for d in sorted({r["requested_density"] for r in _common.ok_rows(rows)}):
    sub = [r for r in rows if r.get("requested_density") == d
           and r.get("density_matched")]
    out["within_density"][f"{d:g}"] = {
        m: _common.seed_bootstrap_corr(sub, m, method="spearman")
        for m in ("spectral_gap", "algebraic_connectivity")}
  return out


def permutation_control(rows) -> list[dict[str, Any]]:
  """Per control family and density: accuracy on natural and on permuted
  inputs and their paired difference (same seed; seed-bootstrap interval,
  ``verdict`` by :func:`~snn_jax.studies.comparison_verdict`: "lower"
  means permuting the pixels costs accuracy at every seed)."""
  ok = _common.ok_rows(rows)
  acc = {(r["inputs"], r["topology"], r["requested_density"], r["seed"]):
         r["final_test_acc"] for r in ok}
  out = []
  for topo, d in sorted({(r["topology"], r["requested_density"])
                         for r in ok if r["inputs"] == "permuted"}):
    seeds = sorted(k[3] for k in acc if k[:3] == ("permuted", topo, d)
                   and ("natural", topo, d, k[3]) in acc)
    natural = [acc[("natural", topo, d, s)] for s in seeds]
    permuted = [acc[("permuted", topo, d, s)] for s in seeds]
    diff = _common.bootstrap_mean_ci([p - n for p, n in zip(permuted,
                                                             natural)])
    out.append({"topology": topo, "requested_density": d, "runs": len(seeds),
                "natural": float(np.mean(natural)),
                "permuted": float(np.mean(permuted)),
                "permuted_minus_natural": diff["mean"],
                "diff_ci_low": diff["low"], "diff_ci_high": diff["high"],
                "verdict": _common.comparison_verdict(permuted, natural)})
  return out


def grid_rows(cfg: BourelyConfig, workdir: str, ds) -> list[dict[str, Any]]:
  """The grid into ``workdir/runs/<family>_d<density>_s<seed>`` and, for
  the permutation control, ``workdir/runs_permuted/...``; one row per run."""
  permuted, _ = permute_inputs(ds)
  rows = []
  for inputs, topos, data in (("natural", cfg.topologies, ds),
                              ("permuted", cfg.control_topologies, permuted)):
    sub = "runs" if inputs == "natural" else "runs_permuted"
    for topo in topos:
      for d in cfg.densities:
        for seed in cfg.seeds:
          rdir = os.path.join(workdir, sub, f"{topo}_d{d:g}_s{seed}")
          row = _common.guarded(
              lambda: _grid_point(cfg, topo, d, seed, rdir, data))
          row.update(topology=topo, requested_density=d, seed=seed,
                     inputs=inputs)
          rows.append(row)
  return rows


def statistics(cfg: BourelyConfig, rows, workdir: str) -> dict[str, Any]:
  """Accuracy per family and density (``accuracy_stats.csv``), the
  correlations, and the permutation control."""
  natural = [r for r in rows if r["inputs"] == "natural"]
  stats = _common.group_stats(natural, ("topology", "requested_density"))
  for s in stats:
    runs = [r for r in _common.ok_rows(natural) if r["topology"] == s["topology"]
            and r["requested_density"] == s["requested_density"]]
    s["built_density"] = float(np.mean([r["sparse_density"] for r in runs]))
  analysis.write_rows(stats, workdir, "accuracy_stats")
  return {"correlations": analyse(natural), "accuracy": stats,
          "permutation_control": permutation_control(rows),
          "permutation_seed": PERMUTATION_SEED}


STUDY = Study(
    name="bourely2017", rows=grid_rows, statistics=statistics,
    schema=("correlations", "accuracy", "permutation_control",
            "permutation_seed"),
    rows_file="bourely2017_grid",
    failed_keys=("topology", "requested_density", "seed", "inputs"),
    plot=lambda cfg, rows, summary, workdir: plot(
        [r for r in rows if r["inputs"] == "natural"], summary["accuracy"],
        summary["correlations"], workdir))


def run(cfg: BourelyConfig, workdir: str, *, dataset=None,
        report_only: bool = False) -> dict[str, Any]:
  """Runs the grid (:func:`grid_rows`, each run resumable) on the study
  skeleton: writes ``bourely2017_grid.csv/json``, ``accuracy_stats.csv``,
  ``summary.json``, ``provenance.json`` and the plots; returns the summary.
  ``report_only``: trains and reads no run; the statistics, plots and
  summary again from the committed rows."""
  return run_study(STUDY, cfg, workdir, dataset=dataset,
                   from_committed_rows=report_only)


def plot(rows, stats, corr, out_dir: str) -> None:
  """``accuracy_vs_density.png`` (mean and 95% seed-bootstrap interval per family) and
  ``accuracy_vs_expansion.png`` (runs against spectral gap and algebraic
  connectivity, one marker per density, with the within-density Spearman
  correlations and their seed-bootstrap intervals)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  ok = [r for r in _common.ok_rows(rows) if r.get("inputs", "natural") == "natural"]
  if not ok:
    return
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for topo in sorted({s["topology"] for s in stats}):
    ss = [s for s in stats if s["topology"] == topo]
    _common.errorbar_ci(ax, [s["requested_density"] for s in ss], ss,
                        marker="o", label=topo)
  ax.set_xscale("log")
  ax.set_xlabel("density of the sparse layers")
  ax.set_ylabel("final test accuracy (mean, 95% CI)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "accuracy_vs_density.png"), dpi=110)
  plt.close(fig)

  markers = "os^Dv<>p*h"
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  densities = sorted({r["requested_density"] for r in ok})
  for ax, metric in zip(axes, ("spectral_gap", "algebraic_connectivity")):
    topos = sorted({r["topology"] for r in ok})
    for ti, topo in enumerate(topos):
      for di, d in enumerate(densities):
        rr = [r for r in ok if r["topology"] == topo and r["requested_density"] == d]
        ax.scatter([r[metric] for r in rr], [r["final_test_acc"] for r in rr],
                   s=16, color=f"C{ti % 10}", marker=markers[di % len(markers)],
                   label=topo if di == 0 else None)
    lines = []
    for d in densities:
      c = corr["within_density"][f"{d:g}"][metric]
      lines.append(f"d={d:g} ({markers[densities.index(d)]}): rho {c['estimate']:.2f} "
                   f"[{c['low']:.2f}, {c['high']:.2f}]")
    ax.set_title("within-density Spearman (density-matched runs):\n" +
                 "\n".join(lines), fontsize=7)
    ax.set_xlabel(metric + " (sparse layers)")
    ax.set_ylabel("final test accuracy")
  axes[1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "accuracy_vs_expansion.png"), dpi=110)
  plt.close(fig)
