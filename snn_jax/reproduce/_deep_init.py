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

import csv
import dataclasses
import json
import os
from typing import Any

import numpy as np

from snn_jax.reproduce import _common
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


def run_deep_init(cfg: DeepInitConfig, workdir: str, *,
                  dataset=None) -> list[dict[str, Any]]:
  """Trains every (depth, init, seed); a run whose loss becomes non-finite
  is a row with ``diverged=True``. Writes ``deep_init.csv``/``.json`` and the
  plot into ``workdir``; each run's own workdir is ``runs/<name>``."""
  os.makedirs(workdir, exist_ok=True)
  base = cfg.base
  ds = dataset or base.load_dataset()
  rows = []
  for depth in cfg.depths:
    for init in cfg.inits:
      for seed in cfg.seeds:
        name = f"depth{depth}_{init}_s{seed}"
        run_cfg = base.override({
            "model.hidden": (cfg.width,) * depth, "model.init": init,
            "run.seed": seed, "run.progress": False})
        row = {"depth": depth, "init": init, "seed": seed, "width": cfg.width,
               "topology": base.model.topology.name, "diverged": False, "error": ""}
        try:
          s = _common.train(run_cfg, os.path.join(workdir, "runs", name), ds)
          row.update(final_test_acc=s["final_test_acc"],
                     best_test_acc=s["best_test_acc"],
                     final_train_loss=s["final_train_loss"],
                     density=s["density"], train_seconds=s["train_seconds"])
        except FloatingPointError as e:
          row.update(diverged=True, error=str(e)[:200], final_test_acc=None)
        except _common.NotFinished:
          row.update(error=_common.NOT_FINISHED, final_test_acc=None)
        rows.append(row)
  with open(os.path.join(workdir, "deep_init.json"), "w") as f:
    json.dump(rows, f, indent=1)
  keys = []
  for r in rows:
    keys += [k for k in r if k not in keys]
  with open(os.path.join(workdir, "deep_init.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
  plot_deep_init(rows, os.path.join(workdir, "accuracy_vs_depth.png"))
  return rows


def plot_deep_init(rows, path: str) -> None:
  """Final test accuracy against depth, one line per initialiser (mean over
  seeds, bars from min to max; diverged runs count as chance level)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = [r for r in rows if r["error"] != _common.NOT_FINISHED]
  fig, ax = plt.subplots(figsize=(6, 4))
  for init in sorted({r["init"] for r in rows}):
    depths = sorted({r["depth"] for r in rows if r["init"] == init})
    mean, lo, hi = [], [], []
    for d in depths:
      accs = [r["final_test_acc"] if r["final_test_acc"] is not None else 0.1
              for r in rows if r["init"] == init and r["depth"] == d]
      mean.append(np.mean(accs))
      lo.append(np.mean(accs) - np.min(accs))
      hi.append(np.max(accs) - np.mean(accs))
    ax.errorbar(depths, mean, yerr=[lo, hi], marker="o", capsize=3, label=init)
  ax.set_xscale("log", base=2)
  ax.set_xlabel("hidden layers")
  ax.set_ylabel("final test accuracy")
  ax.set_ylim(0, 1)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
