"""Very deep sparse MLPs under naive and sparsity-aware initialisation.

Isakov & Kinsy, "NeuroFabric" (arXiv:2002.08339), derive an initialisation
so that very deep *a priori* sparse networks train; a dense-style
initialisation (variance 2 / n_in, ignoring that a neuron has only a few
inputs) shrinks the signal by the density at every layer. This grid trains
the same sparse MLP (``depth`` hidden layers of ``width`` units, one
topology family) under each initialiser and records whether and how well it
trains.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from snn_jax.studies import _runs
from snn_jax.studies._stats import group_stats
from snn_jax.studies._study import Study, run_study
from snn_jax.training import TrainConfig


@dataclasses.dataclass(frozen=True)
class DeepInitConfig:
  """Attributes:
    base: training config (dataset, topology, density/fan-in, optimizer,
      epochs, ...); its ``hidden``, ``init`` and ``seed`` are overridden.
    depths: numbers of hidden layers.
    width: units per hidden layer.
    inits: initialiser names (``snn_jax.nn.INITIALIZERS``).
    seeds: one run per seed.
  """
  base: TrainConfig
  depths: tuple[int, ...] = (8, 16, 32, 64)
  width: int = 256
  inits: tuple[str, ...] = ("dense_he", "sparse_he", "neurofabric")
  seeds: tuple[int, ...] = (0, 1)

  def __post_init__(self):
    from snn_jax.nn import INITIALIZERS
    if not self.depths or min(self.depths) < 1:
      raise ValueError(f"depths must be positive, got {self.depths}")
    if self.width < 1:
      raise ValueError(f"width must be positive, got {self.width}")
    unknown = [i for i in self.inits if i not in INITIALIZERS]
    if unknown:
      raise ValueError(f"unknown inits {unknown}; known: {sorted(INITIALIZERS)}")
    if not self.seeds:
      raise ValueError("need at least one seed")


def deep_init_rows(cfg: DeepInitConfig, workdir: str, ds
                   ) -> list[dict[str, Any]]:
  """Trains every (depth, init, seed) in ``workdir/runs/depth<d>_<init>_s
  <seed>`` (finished runs are skipped); a run whose loss becomes non-finite
  is a row with ``diverged=True`` and its error."""
  rows = []
  for depth in cfg.depths:
    for init in cfg.inits:
      for seed in cfg.seeds:
        name = f"depth{depth}_{init}_s{seed}"
        run_cfg = cfg.base.override({
            "model.hidden": (cfg.width,) * depth, "model.init": init,
            "run.seed": seed, "run.progress": False})
        row = {"depth": depth, "init": init, "seed": seed, "width": cfg.width,
               "topology": cfg.base.model.topology.name, "diverged": False,
               "error": ""}
        try:
          s = _runs.train(run_cfg, os.path.join(workdir, "runs", name), ds)
          row.update(final_test_acc=s["final_test_acc"],
                     best_test_acc=s["best_test_acc"],
                     final_train_loss=s["final_train_loss"],
                     density=s["density"], train_seconds=s["train_seconds"])
        except FloatingPointError as e:
          row.update(diverged=True, error=str(e)[:200], final_test_acc=None)
        except _runs.NotFinished:
          row.update(error=_runs.NOT_FINISHED, final_test_acc=None)
        rows.append(row)
  return rows


def deep_init_statistics(cfg: DeepInitConfig, rows, workdir: str
                         ) -> dict[str, Any]:
  """Accuracy per depth and initialiser over seeds (diverged runs are left
  out; the summary's ``failed`` lists them)."""
  return {"by_depth": group_stats(rows, ("depth", "init"))}


DEEP_INIT = Study(
    name="deep_init", rows=deep_init_rows, statistics=deep_init_statistics,
    schema=("by_depth",), rows_file="deep_init",
    failed_keys=("depth", "init", "seed"),
    plot=lambda cfg, rows, summary, workdir: plot_deep_init(
        rows, os.path.join(workdir, "accuracy_vs_depth.png")))


def run_deep_init(cfg: DeepInitConfig, workdir: str, *,
                  dataset=None) -> dict[str, Any]:
  """The grid (:func:`deep_init_rows`) on the study skeleton: writes
  ``deep_init.csv``/``.json`` (one row per run, ``load_rows(DEEP_INIT,
  workdir)`` reads them back), ``accuracy_vs_depth.png``, ``summary.json``
  and ``provenance.json`` into ``workdir``; returns the summary (its
  ``failed`` lists the diverged runs)."""
  return run_study(DEEP_INIT, cfg, workdir, dataset=dataset)


def plot_deep_init(rows, path: str) -> None:
  """Final test accuracy against depth, one line per initialiser (mean over
  seeds, bars from min to max; diverged runs count as chance level)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = [r for r in rows if r["error"] != _runs.NOT_FINISHED]
  fig, ax = plt.subplots(figsize=(6, 4))
  for init in sorted({r["init"] for r in rows}):
    depths = sorted({r["depth"] for r in rows if r["init"] == init})
    mean, lo, hi = [], [], []
    for d in depths:
      accs = [r["final_test_acc"] if r["final_test_acc"] is not None else 0.1
              for r in rows if r["init"] == init and r["depth"] == d]
      # np.mean of equal values can round past them (three runs at 0.1
      # average to 0.1 + 2e-17); held in [min, max] no bar is negative.
      m = float(np.clip(np.mean(accs), np.min(accs), np.max(accs)))
      mean.append(m)
      lo.append(m - np.min(accs))
      hi.append(np.max(accs) - m)
    ax.errorbar(depths, mean, yerr=[lo, hi], marker="o", capsize=3, label=init)
  ax.set_xscale("log", base=2)
  ax.set_xlabel("hidden layers")
  ax.set_ylabel("final test accuracy")
  ax.set_ylim(0, 1)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
