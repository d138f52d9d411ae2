"""Alford, Robinett, Milechin & Kepner 2019, "Training Behavior of Sparse
Neural Network Topologies" (arXiv:1810.00299): pruning-derived topologies
against RadiX-Nets at matching sparsity; accuracy against sparsity; training
instability at extreme sparsity.

Two networks, as in the paper: an MLP of LeNet-300-100's size and LeNet-5.
Per network and seed: the dense network is trained; the weights of its
sparse part (the MLP's hidden layers; LeNet-5's fully connected hidden
layers, which hold 96% of its weights -- its convolutions stay dense) are
magnitude-pruned per layer to each density, and the resulting *topology* is
trained from a fresh initialisation -- like the RadiX-Net and the
Erdős–Rényi control at the same density, so that the three differ only in
topology. The output layer is dense for all.

Widths: LeNet-300-100's 784-300-100-10 admits RadiX-Nets only at densities
k/4 in its first layer (RadiX-Net layer densities are multiples of 1/N',
N' dividing both widths, and gcd(784, 300) = 4), so matching sparsity is
impossible there. The default MLP is 784-392-98-10 instead (N' = 392 and
98: densities in steps of 1/392 and 1/98), a LeNet-300-100-sized network on
which all three families reach every density from 50% to 1%. Likewise
LeNet-5's fully connected 400-120-84 (steps of 1/40 and 1/12) becomes
400-200-100 (steps of 1/200 and 1/100).

Matching sparsity: a RadiX-Net's layer densities are multiples of 1/N', so
below 1/98 (the 392 -> 98 layer) the generator returns the nearest density
it can build, which is higher than asked. Every row records the density of
its sparse layers (``hidden_density``) and ``density_matched`` (within
``DENSITY_TOLERANCE`` of the requested one); statistics, paired differences
and plots use matched rows only, and ``summary["unmatched"]`` lists the
others with their actual densities.

Instability (per run, from the per-epoch held-out accuracy): ``max_drop`` is
the largest fall of held-out accuracy below its best earlier value; the
spread over seeds is the other measure.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from snn_jax import analysis
from snn_jax import topology as topology_lib
from snn_jax.nn import LeNet5
from snn_jax.reproduce import _common
from snn_jax.studies import Study, run_study
from snn_jax.training import TrainConfig, restore_model, train_and_evaluate

FAMILIES = ("pruned", "radixnet", "erdos_renyi")
DENSITY_TOLERANCE = 0.1  # relative


@dataclasses.dataclass(frozen=True)
class AlfordConfig:
  """Attributes:
    base: dataset (28x28 images for LeNet-5), optimiser, epochs of the MLP
      runs, ``split_seed``.
    models: ``"mlp"`` and/or ``"lenet5"``.
    hidden: the MLP's hidden widths.
    densities: the MLP's kept fraction of every hidden layer's weights.
    lenet5_hidden: LeNet-5's fully connected hidden widths.
    lenet5_densities, lenet5_epochs: LeNet-5's grid and training length.
    lenet5_optimizer, lenet5_lr: LeNet-5's optimiser. The MLP's SGD setting
      (lr 0.05, momentum 0.9) leaves some LeNet-5 runs, dense ones
      included, far behind (measured: 5 of 30 runs below 60% after 5
      epochs, 3 of them at chance level) -- an instability of the optimiser
      at that learning rate, not of the topology; Adam at 1e-3 trains
      every seed.
    families: any of ``FAMILIES``.
    seeds: each seed trains its own dense networks to prune.
  """
  base: TrainConfig
  models: tuple[str, ...] = ("mlp", "lenet5")
  hidden: tuple[int, ...] = (392, 98)
  densities: tuple[float, ...] = (0.5, 0.25, 0.1, 0.05, 0.02, 0.01, 0.005,
                                  0.002)
  lenet5_hidden: tuple[int, ...] = (200, 100)
  lenet5_densities: tuple[float, ...] = (0.5, 0.1, 0.02)
  lenet5_epochs: int = 5
  lenet5_optimizer: str = "adam"
  lenet5_lr: float = 1e-3
  families: tuple[str, ...] = FAMILIES
  seeds: tuple[int, ...] = (0, 1, 2)

  def __post_init__(self):
    bad = [f for f in self.families if f not in FAMILIES]
    if bad or not self.families:
      raise ValueError(f"unknown families {bad}; known: {FAMILIES}")
    bad = [m for m in self.models if m not in MODELS]
    if bad or not self.models:
      raise ValueError(f"unknown models {bad}; known: {MODELS}")
    for name in ("densities", "lenet5_densities"):
      v = getattr(self, name)
      if not v or not all(0 < d < 1 for d in v):
        raise ValueError(f"{name} must be in (0, 1), got {v}")
    if len(self.seeds) < 2:
      raise ValueError("intervals over seeds need at least two seeds")
    for name in ("hidden", "lenet5_hidden"):
      v = getattr(self, name)
      if not v or min(v) < 1:
        raise ValueError(f"{name} widths must be positive, got {v}")
    if self.lenet5_epochs < 1:
      raise ValueError(f"lenet5_epochs must be >= 1, got {self.lenet5_epochs}")
    self.grid("lenet5")  # validates the LeNet-5 optimiser settings

  def grid(self, model: str) -> tuple[TrainConfig, tuple[float, ...]]:
    """The base config and densities of one network."""
    if model == "lenet5":
      return (self.base.override({
          "model.name": "lenet5", "model.hidden": self.lenet5_hidden,
          "run.epochs": self.lenet5_epochs,
          "optimizer.name": self.lenet5_optimizer,
          "optimizer.lr": self.lenet5_lr}),
              self.lenet5_densities)
    return (self.base.override({
        "model.name": "mlp", "model.hidden": self.hidden}),
            self.densities)


MODELS = ("mlp", "lenet5")


def reduced_config(base: TrainConfig) -> AlfordConfig:
  """The committed default (about 17 minutes on 2 cores): MLP 784-392-98-10,
  3 families x 8 densities (50% to 99.8% sparsity; RadiX-Nets cannot go
  below 1% in the second layer, so they are unmatched at 99.5% and 99.8%)
  x 3 seeds, 10 epochs; LeNet-5 (400-200-100
  fully connected), 3 families x 3 densities x 3 seeds, 5 epochs; on the
  8k/2k split of the MNIST test files (``_common.reduced_data``)."""
  return AlfordConfig(base=_common.reduced_data(base).override({
      "run.epochs": 10}))


def max_drop(accuracies) -> float:
  """Largest fall of a sequence below its best earlier value (0 for a
  non-decreasing sequence)."""
  a = np.asarray(list(accuracies), dtype=np.float64)
  if a.size < 2:
    return 0.0
  return float(np.max(np.maximum.accumulate(a) - a))


def _curve(run_dir: str) -> list[float]:
  """Held-out accuracy after every epoch of a train_and_evaluate run."""
  m = analysis.load_metrics(run_dir)
  return [m[e]["test_acc"] for e in sorted(m)]


def trained_row(summary: dict[str, Any], run_dir: str) -> dict[str, Any]:
  """The row of one finished run, for the reduced and the paper-scale
  grids alike: ``_common.run_row`` of its summary, its final validation
  accuracy where it held a validation part, and the largest fall of its
  held-out accuracy curve below an earlier best (``max_drop``, the
  instability measure)."""
  row = {**_common.run_row(summary), "max_drop": max_drop(_curve(run_dir))}
  if "final_val_acc" in summary:
    row["final_val_acc"] = summary["final_val_acc"]
  return row


def _sparse_part(model: str, family: str, density: float, seed: int,
                 widths, dense_weights):
  """The pruned/generated stack of the network's sparse hidden layers."""
  if family == "pruned":
    first = len(LeNet5.CONV_CHANNELS) if model == "lenet5" else 0
    mats = [np.asarray(dense_weights[f"layer_{first + l}_weight"])
            for l in range(len(widths) - 1)]
    return topology_lib.make_stack("pruned", widths, density=density,
                                   weights=mats, scope="layer")
  return topology_lib.make_stack(family, widths, density=density, seed=seed)


def paired_differences(rows) -> list[dict[str, Any]]:
  """Per network and density, ``accuracy(family) - accuracy(pruned)`` for
  every other family, paired by seed (same split, same seed), mean with a
  seed-bootstrap interval and verdict."""
  out = []
  for m, f, d in sorted({(r["model"], r["family"], r["requested_density"])
                         for r in _common.ok_rows(rows)
                         if r["family"] not in ("pruned", "dense")}):
    ci = _common.paired_difference(rows, "family", f, "pruned", model=m,
                                   requested_density=d)
    if ci["n"]:
      out.append({"model": m, "family": f, "minus": "pruned",
                  "requested_density": d, "mean": ci["mean"],
                  "ci_low": ci["low"], "ci_high": ci["high"], "min": ci["min"],
                  "max": ci["max"], "runs": ci["n"],
                  "higher_in": ci["higher_in"], "verdict": ci["verdict"]})
  return out


def _network_rows(cfg: AlfordConfig, model: str, seed: int, workdir: str, ds):
  base, densities = cfg.grid(model)
  base = base.override({"run.progress": False})
  first = LeNet5.FC_INPUTS if model == "lenet5" else ds.input_dim
  widths = [first, *base.model.hidden]
  dense_dir = os.path.join(workdir, model, f"s{seed}", "dense")
  dense_cfg = base.override({
      "model.topology.name": "dense", "model.topology.density": None,
      "model.topology.fan_in": None, "model.topology.params": {},
      "run.seed": seed})
  _common.note_training(dense_dir, dense_cfg.run.epochs)
  s = train_and_evaluate(dense_cfg, dense_dir, dataset=ds)
  rows = [{"model": model, "family": "dense", "requested_density": 1.0,
           "hidden_density": 1.0, "density_matched": True, "seed": seed,
           **trained_row(s, dense_dir), "error": ""}]
  trained = restore_model(dense_dir)
  weights = trained.dense_weights()
  convs = trained.topologies()[:len(LeNet5.CONV_CHANNELS)] \
      if model == "lenet5" else []
  for family in cfg.families:
    for d in densities:
      rdir = os.path.join(workdir, model, f"s{seed}", f"{family}_d{d:g}")

      def one(family=family, d=d, rdir=rdir):
        hidden = _sparse_part(model, family, d, seed, widths, weights)
        stack = convs + _common.with_dense_output(hidden, ds.num_classes)
        actual = float(sum(t.nnz for t in hidden)
                       / sum(t.n_in * t.n_out for t in hidden))
        row = {"hidden_density": actual, "density_matched": bool(
            abs(actual / d - 1) <= DENSITY_TOLERANCE)}
        s = _common.train_stack(base, stack, rdir, ds, seed=seed)
        row.update(trained_row(s, os.path.join(rdir, "train")))
        return row
      row = _common.guarded(one)
      row.update(model=model, family=family, requested_density=d, seed=seed)
      rows.append(row)
  return rows


def grid_rows(cfg: AlfordConfig, workdir: str, ds) -> list[dict[str, Any]]:
  """Every network, seed, family and density into
  ``workdir/<model>/s<seed>/...``; one row per run."""
  rows = []
  for model in cfg.models:
    for seed in cfg.seeds:
      rows += _network_rows(cfg, model, seed, workdir, ds)
  return rows


def statistics(cfg: AlfordConfig, rows, workdir: str) -> dict[str, Any]:
  """Accuracy and instability per network, family and density
  (``accuracy_stats.csv``; density-matched runs), paired differences, and
  the runs whose built density missed the requested one."""
  matched = [r for r in rows if r.get("density_matched", True)]
  keys = ("model", "family", "requested_density")
  stats = _common.group_stats(matched, keys)
  drops = _common.group_stats(matched, keys, "max_drop")
  for s, dr in zip(stats, drops):
    s["max_drop_mean"] = dr["mean"]
  analysis.write_rows(stats, workdir, "accuracy_stats")
  return {"accuracy": stats,
          "paired_differences": paired_differences(matched),
          "unmatched": [{k: r[k] for k in ("model", "family", "seed",
                                           "requested_density",
                                           "hidden_density", "final_test_acc")}
                        for r in rows if not r.get("density_matched", True)]}


STUDY = Study(
    name="alford2019", rows=grid_rows, statistics=statistics,
    schema=("accuracy", "paired_differences", "unmatched"),
    rows_file="alford2019_runs",
    failed_keys=("model", "family", "requested_density", "seed"),
    plot=lambda cfg, rows, summary, workdir: plot(summary["accuracy"], workdir))


def run(cfg: AlfordConfig, workdir: str, *, dataset=None,
        report_only: bool = False) -> dict[str, Any]:
  """Runs the study (:func:`grid_rows`) on the study skeleton; writes
  ``alford2019_runs.csv/json``, ``accuracy_stats.csv``, ``summary.json``,
  ``provenance.json`` and the plots. ``report_only``: trains and reads no
  run; the statistics, plots and summary again from the committed rows."""
  return run_study(STUDY, cfg, workdir, dataset=dataset,
                   from_committed_rows=report_only)


def plot(stats, out_dir: str) -> None:
  """``accuracy_vs_sparsity.png`` (one panel per network: mean and 95% t
  interval per family, the dense network's interval as a band) and
  ``instability.png`` (spread over seeds and mean max_drop against
  sparsity)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  models = [m for m in MODELS if any(s["model"] == m for s in stats)]
  if not models:
    return
  fig, axes = plt.subplots(1, len(models), figsize=(6.2 * len(models), 4.2),
                           squeeze=False)
  fig2, axes2 = plt.subplots(2, len(models), figsize=(6.2 * len(models), 6.5),
                             squeeze=False)
  for k, model in enumerate(models):
    ax = axes[0][k]
    for f in FAMILIES:
      ss = sorted((s for s in stats if s["model"] == model and s["family"] == f),
                  key=lambda s: s["requested_density"])
      if not ss:
        continue
      x = [1 - s["requested_density"] for s in ss]
      _common.errorbar_ci(ax, x, ss, marker="o", label=f)
      axes2[0][k].plot(x, [s["std"] for s in ss], "o-", label=f)
      axes2[1][k].plot(x, [s["max_drop_mean"] for s in ss], "o-", label=f)
    dense = [s for s in stats if s["model"] == model and s["family"] == "dense"]
    if dense:
      ax.axhspan(dense[0]["ci_low"], dense[0]["ci_high"], color="grey",
                 alpha=0.3, label="dense (95% CI)")
    ax.set_title(model)
    ax.set_xlabel("sparsity of the sparse layers (logit scale)")
    ax.set_ylabel("final test accuracy (mean, 95% CI)")
    axes2[0][k].set_title(model)
    axes2[0][k].set_ylabel("std of final accuracy over seeds")
    axes2[1][k].set_ylabel("mean largest fall below best (per run)")
    for a in (ax, axes2[0][k], axes2[1][k]):
      a.set_xscale("logit")
      a.legend(fontsize=7)
    axes2[1][k].set_xlabel("sparsity (logit scale)")
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "accuracy_vs_sparsity.png"), dpi=110)
  fig2.tight_layout()
  fig2.savefig(os.path.join(out_dir, "instability.png"), dpi=110)
  plt.close(fig)
  plt.close(fig2)
