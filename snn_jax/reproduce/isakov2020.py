"""Isakov & Kinsy 2020, "NeuroFabric: Identifying Ideal Topologies for
Training A Priori Sparse Networks" (arXiv:2002.08339).

Three experiments:

1. **Depth** (:mod:`snn_jax.studies.deep_init`): very deep sparse MLPs
   under the dense-style initialisation against the sparsity-aware ones
   (``sparse_he`` and our ``neurofabric``).
2. **Dead units** (:func:`run_dead_units`): ``sparse_he`` and ``neurofabric``
   coincide unless some units receive no path from the input. Deep
   Erdős–Rényi stacks at a very low hidden fan-in (3 by default: about 5%
   of the units of every layer have no input at all, and their dead
   children compound with depth) separate them. For each depth and seed
   the same stack is initialised both ways; the rows hold the live
   fractions, the second moment of the last hidden pre-activation at
   initialisation (on 512 training images, the same initial weights as the
   trained run) and the trained accuracy, with neurofabric - sparse_he
   differences paired by seed. A control (``dead_control``, by default
   ``fixed_fan_in``: every unit has exactly ``dead_fan_in`` inputs, so no
   unit is dead and the two inits coincide) at the same fan-in separates
   the dead-unit effect from what a very small fan-in does by itself.
3. **Topology ranking**: every topology family at one fan-in on the
   hidden-to-hidden layers of a deep, narrow MLP (the input layer is one
   shared Erdős–Rényi layer, see :func:`ranking_stack`), trained over
   several seeds, against *data-free* scores of the family's layers
   computed before training. The paper's abstract names the goal
   ("a data-free heuristic that can evaluate a topology independently from
   the dataset") and the requirements it leads to; its exact heuristic
   could not be read here, so the scores are built from the requirements as
   this project implements them (:func:`snn_jax.analysis.path_stats`):

   * ``reachability`` -- fraction of (input, output) pairs joined by a path;
   * ``path_uniformity`` -- ``1 / (1 + cv)`` of the input-output path
     counts (1 when every pair has the same number of paths, as in a full
     RadiX-Net or butterfly system);
   * ``live_fraction`` -- fraction of hidden units with both inputs and
     outputs;
   * ``requirements_score`` -- their product;
   * ``spectral_gap`` -- Bourely et al.'s expansion measure, for comparison.

   Each score's Spearman correlation with accuracy comes with a cluster-
   bootstrap interval over seeds. Our recollection -- not checked against
   the paper's text -- is that the topology the paper arrives at is a
   (parallel) butterfly; the ``butterfly`` family here is this project's
   construction, and its rank among the families is reported.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from snn_jax import analysis, nn
from snn_jax import topology as topology_lib
from snn_jax.reproduce import _common
from snn_jax.studies import Study, run_study
from snn_jax.studies.deep_init import (DeepInitConfig, deep_init_rows,
                                       plot_deep_init)
from snn_jax.training import TrainConfig, build_model

SCORES = ("reachability", "path_uniformity", "live_fraction",
          "requirements_score", "spectral_gap")


@dataclasses.dataclass(frozen=True)
class IsakovConfig:
  """Attributes:
    base: dataset, optimiser, epochs (of the ranking), ``split_seed``.
    depths, depth_width, depth_density, inits, depth_seeds, depth_epochs:
      the depth experiment (Erdős–Rényi layers at ``depth_density``).
    ranking_hidden: hidden widths of the ranking network; the input layer
      is Erdős–Rényi for every family, the hidden-to-hidden layers use the
      family, the output layer is dense.
    fan_in: inputs per hidden unit of every sparse layer (density
      ``fan_in / n_in``).
    topologies: families ranked.
    seeds: seeds of the ranking runs.
    dead_depths, dead_fan_in, dead_inits, dead_seeds: the dead-unit
      experiment (``depth_width`` units per hidden layer, ``depth_epochs``
      epochs; the input layer at ``fan_in``, hidden-to-hidden layers at
      ``dead_fan_in``, a dense output layer). ``dead_depths=()`` skips it.
    dead_control: a family without dead units run at the same fan-in with
      ``dead_inits[0]`` only (``None``: no control).
  """
  base: TrainConfig
  depths: tuple[int, ...] = (8, 16, 32, 64)
  depth_width: int = 256
  depth_density: float = 0.05
  inits: tuple[str, ...] = ("dense_he", "sparse_he", "neurofabric")
  depth_seeds: tuple[int, ...] = (0, 1)
  depth_epochs: int = 3
  ranking_hidden: tuple[int, ...] = (256,) * 10
  fan_in: int = 16
  topologies: tuple[str, ...] = ("erdos_renyi", "fixed_fan_in", "biregular",
                                 "xnet", "circulant", "cayley", "small_world",
                                 "radixnet", "butterfly", "block_diag_shuffle",
                                 "clos")
  seeds: tuple[int, ...] = (0, 1, 2)
  dead_depths: tuple[int, ...] = (8, 16, 32)
  dead_fan_in: int = 3
  dead_inits: tuple[str, ...] = ("sparse_he", "neurofabric")
  dead_seeds: tuple[int, ...] = (0, 1, 2)
  dead_control: str | None = "fixed_fan_in"

  def __post_init__(self):
    known = topology_lib.names()
    bad = [t for t in self.topologies if t not in known or t in ("dense", "pruned")]
    if bad:
      raise ValueError(f"topologies {bad} cannot be ranked")
    if self.fan_in < 1:
      raise ValueError(f"fan_in must be >= 1, got {self.fan_in}")
    if len(self.seeds) < 2:
      raise ValueError("intervals over seeds need at least two seeds")
    if len(self.ranking_hidden) < 2 or min(self.ranking_hidden) < self.fan_in:
      raise ValueError(f"ranking_hidden {self.ranking_hidden} needs at least "
                       f"two widths, each >= fan_in {self.fan_in}")
    if self.dead_depths:
      if min(self.dead_depths) < 2:
        raise ValueError(f"dead_depths must be >= 2 (a hidden-to-hidden layer "
                         f"is needed), got {self.dead_depths}")
      if not 1 <= self.dead_fan_in <= self.depth_width:
        raise ValueError(f"dead_fan_in must be in [1, depth_width="
                         f"{self.depth_width}], got {self.dead_fan_in}")
      unknown = [i for i in self.dead_inits if i not in nn.INITIALIZERS]
      if unknown or not self.dead_inits:
        raise ValueError(f"dead_inits {self.dead_inits}: unknown {unknown}; "
                         f"known: {sorted(nn.INITIALIZERS)}")
      if not self.dead_seeds:
        raise ValueError("dead_seeds must not be empty when dead_depths is set")
      if self.dead_control is not None and self.dead_control not in known:
        raise ValueError(f"unknown dead_control {self.dead_control!r}; known: "
                         f"{', '.join(known)}")


def reduced_config(base: TrainConfig) -> IsakovConfig:
  """The committed default (about 10 minutes on 2 cores): the depth grid
  8-64 layers x 3 inits x 2 seeds (3 epochs); the dead-unit grid 8-32
  layers at hidden fan-in 3 x 2 inits x 3 seeds (3 epochs); and 11
  families on the nine hidden-to-hidden layers of 784 -> 10 x 256 -> 10 at
  fan-in 16 x 3 seeds (5 epochs); on the 8k/2k split of the MNIST test
  files (``_common.reduced_data``)."""
  return IsakovConfig(base=_common.reduced_data(base).override({
      "run.epochs": 5}))


def data_free_scores(stack) -> dict[str, float]:
  """The scores of the module docstring for a topology stack."""
  ps = analysis.path_stats(stack)
  hidden_units = sum(t.n_out for t in stack[:-1])
  live = 1.0 - sum(ps["dead_units"]) / hidden_units if hidden_units else 1.0
  uniformity = 1.0 / (1.0 + ps["paths"]["cv"])
  return {"reachability": ps["reachability"], "path_uniformity": uniformity,
          "paths_cv": ps["paths"]["cv"], "live_fraction": live,
          "requirements_score": ps["reachability"] * uniformity * live,
          "spectral_gap": analysis.spectral_gap(stack)}


def ranking_stack(cfg: IsakovConfig, topo: str, seed: int, input_dim: int):
  """The sparse part of a ranking network: the input layer is the same
  Erdős–Rényi layer at ``fan_in`` for every family (structured families
  cannot all reach that fan-in on a 784-input layer, and some would keep
  pixel neighbourhoods), then ``topo`` on the hidden-to-hidden layers."""
  first = topology_lib.make("erdos_renyi", input_dim, cfg.ranking_hidden[0],
                            density=cfg.fan_in / input_dim, seed=seed)
  widths = list(cfg.ranking_hidden)
  densities = [cfg.fan_in / n for n in widths[:-1]]
  return [first] + topology_lib.make_stack(topo, widths, density=densities,
                                           seed=seed)


def dead_unit_stack(cfg: IsakovConfig, depth: int, seed: int, input_dim: int,
                    num_classes: int, family: str = "erdos_renyi"):
  """``input_dim -> depth x depth_width -> num_classes``: a fixed-fan-in
  input layer at ``fan_in`` (no unit without inputs, so dead units come
  only from the hidden-to-hidden layers), ``depth - 1`` hidden-to-hidden
  layers of ``family`` at ``dead_fan_in`` inputs per unit (on average for
  Erdős–Rényi) and a dense output layer."""
  width = cfg.depth_width
  first = topology_lib.make("fixed_fan_in", input_dim, width,
                            density=min(1.0, cfg.fan_in / input_dim), seed=seed)
  hidden = topology_lib.make_stack(family, [width] * depth,
                                   density=cfg.dead_fan_in / width, seed=seed)
  return _common.with_dense_output([first] + hidden, num_classes)


def _dead_unit_points(cfg, depth, seed, workdir, ds,
                      family="erdos_renyi") -> list[dict[str, Any]]:
  stack = dead_unit_stack(cfg, depth, seed, ds.input_dim, ds.num_classes,
                          family)
  live = nn.live_units(stack)[1:-1]  # hidden layers
  inits = cfg.dead_inits if family == "erdos_renyi" else cfg.dead_inits[:1]
  common = {"hidden_family": family, "depth": depth, "seed": seed,
            "live_fraction_hidden": float(np.mean([l.mean() for l in live])),
            "live_fraction_last_hidden": float(live[-1].mean()),
            "dead_units": int(sum((~l).sum() for l in live))}
  x = ds.x_train[:512]
  rows = []
  for init in inits:
    run_cfg = cfg.base.override({
        "model.init": init, "run.seed": seed, "run.epochs": cfg.depth_epochs})
    # The trained run builds its model the same way, from the same seed.
    model = build_model(run_cfg, stack)
    moments = model.preactivation_second_moments(x)
    row = {**common, "init": init,
           "init_moment_first": float(moments[0]),
           "init_moment_last_hidden": float(moments[-2]),
           "init_moment_logits": float(moments[-1])}
    rdir = os.path.join(workdir, "runs", f"{family}_depth{depth}_{init}_s{seed}")
    row.update(_common.guarded(lambda: _common.run_row(_common.train_stack(
        run_cfg, stack, rdir, ds, seed=seed))))
    rows.append(row)
  return rows


def dead_unit_rows(cfg: IsakovConfig, workdir: str, ds
                   ) -> list[dict[str, Any]]:
  """The dead-unit experiment's runs (module docstring), each in
  ``workdir/runs/<family>_depth<d>_<init>_s<seed>``."""
  families = ["erdos_renyi"] + ([cfg.dead_control] if cfg.dead_control else [])
  rows = []
  for family in families:
    for depth in cfg.dead_depths:
      for seed in cfg.dead_seeds:
        rows += _dead_unit_points(cfg, depth, seed, workdir, ds, family)
  return rows


def dead_unit_statistics(cfg: IsakovConfig, rows) -> dict[str, Any]:
  """Accuracy and the geometric mean of the initial moments per depth and
  init; accuracy differences of every init against ``dead_inits[0]``,
  paired by seed."""
  stats = _common.group_stats(rows, ("hidden_family", "depth", "init"))
  for s in stats:
    runs = [r for r in rows if (r["hidden_family"], r["depth"], r["init"]) == (
        s["hidden_family"], s["depth"], s["init"])]
    for key in ("init_moment_last_hidden", "init_moment_logits"):
      vals = np.array([r[key] for r in runs])
      s[f"{key}_geomean"] = float(np.exp(np.mean(np.log(np.maximum(vals, 1e-300)))))
    s["live_fraction_hidden"] = float(np.mean([r["live_fraction_hidden"]
                                               for r in runs]))
  reference = cfg.dead_inits[0]
  paired = [{"depth": depth, "init": init, "reference": reference,
             **_common.paired_difference(rows, "init", init, reference,
                                         hidden_family="erdos_renyi",
                                         depth=depth)}
            for depth in cfg.dead_depths for init in cfg.dead_inits[1:]]
  return {"stats": stats, "paired_differences": paired}


def plot_dead_units(rows, stats, path: str) -> None:
  """Two panels against depth, one series per (hidden family, init): the
  second moment of the last hidden pre-activation at initialisation (every
  seed, log scale) and the final test accuracy (mean with a seed-bootstrap interval)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
  series = sorted({(r["hidden_family"], r["init"]) for r in rows})
  for i, (family, init) in enumerate(series):
    label = f"{family}, {init}"
    rr = [r for r in rows if (r["hidden_family"], r["init"]) == (family, init)]
    ax0.scatter([r["depth"] * (1 + 0.03 * i) for r in rr],
                [max(r["init_moment_last_hidden"], 1e-30) for r in rr],
                color=f"C{i}", s=16, label=label)
    st = [s for s in stats if (s["hidden_family"], s["init"]) == (family, init)]
    if st:
      _common.errorbar_ci(ax1, [s["depth"] * (1 + 0.03 * i) for s in st], st,
                          marker="o", color=f"C{i}", label=label)
  ax0.set_yscale("log")
  ax0.set_ylabel("mean(z^2), last hidden layer, at init")
  ax1.set_ylabel("final test accuracy")
  for ax in (ax0, ax1):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("hidden layers")
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _ranking_point(cfg, topo, seed, workdir, ds) -> dict[str, Any]:
  hidden_stack = ranking_stack(cfg, topo, seed, ds.input_dim)
  family_part = hidden_stack[1:]  # the shared input layer is not scored
  row = {"topology": topo, "seed": seed,
         "mean_fan_in": float(np.mean([t.fan_in().mean() for t in family_part])),
         **data_free_scores(family_part)}
  stack = _common.with_dense_output(hidden_stack, ds.num_classes)
  row.update(_common.run_row(_common.train_stack(cfg.base, stack, workdir, ds,
                                                 seed=seed)))
  return row


EXPERIMENTS = ("depth", "dead_units", "ranking")


def _depth_config(cfg: IsakovConfig) -> DeepInitConfig:
  return DeepInitConfig(
      base=cfg.base.override({
          "model.topology.name": "erdos_renyi",
          "model.topology.density": cfg.depth_density,
          "model.topology.fan_in": None, "model.topology.params": {},
          "run.epochs": cfg.depth_epochs}),
      depths=cfg.depths, width=cfg.depth_width, inits=cfg.inits,
      seeds=cfg.depth_seeds)


def grid_rows(cfg: IsakovConfig, workdir: str, ds) -> list[dict[str, Any]]:
  """The three experiments' runs, each row tagged with its ``experiment``:
  depth (``workdir/depth``), dead units (``workdir/dead_units``, when
  ``dead_depths``) and ranking (``workdir/ranking``)."""
  rows = [{"experiment": "depth", **r} for r in deep_init_rows(
      _depth_config(cfg), os.path.join(workdir, "depth"), ds)]
  if cfg.dead_depths:
    rows += [{"experiment": "dead_units", **r} for r in dead_unit_rows(
        cfg, os.path.join(workdir, "dead_units"), ds)]
  for topo in cfg.topologies:
    for seed in cfg.seeds:
      rdir = os.path.join(workdir, "ranking", "runs", f"{topo}_s{seed}")
      row = _common.guarded(lambda: _ranking_point(cfg, topo, seed, rdir, ds))
      rows.append({"experiment": "ranking", "topology": topo, "seed": seed,
                   **row})
  return rows


def _part(rows, experiment: str) -> list[dict[str, Any]]:
  return [{k: v for k, v in r.items() if k != "experiment"} for r in rows
          if r["experiment"] == experiment]


def statistics(cfg: IsakovConfig, rows, workdir: str) -> dict[str, Any]:
  """Per experiment: its rows table (``depth/deep_init``,
  ``dead_units/dead_units``, ``ranking``), accuracy per depth and init,
  the dead-unit statistics, the ranking of the families
  (``ranking_stats``) and each data-free score's correlation with
  accuracy."""
  depth = _part(rows, "depth")
  analysis.write_rows(depth, os.path.join(workdir, "depth"), "deep_init")
  dead = _part(rows, "dead_units")
  if dead:
    analysis.write_rows(dead, os.path.join(workdir, "dead_units"), "dead_units")
  ranking = _part(rows, "ranking")
  analysis.write_rows(ranking, workdir, "ranking")
  stats = _common.group_stats(ranking, ("topology",))
  for s in stats:  # scores of random families vary a little with the seed
    runs = [r for r in _common.ok_rows(ranking) if r["topology"] == s["topology"]]
    s.update({k: float(np.mean([r[k] for r in runs])) for k in SCORES})
  stats.sort(key=lambda s: -s["mean"])
  for rank, s in enumerate(stats, start=1):
    s["rank"] = rank
  analysis.write_rows(stats, workdir, "ranking_stats")
  return {
      "depth": _common.group_stats(depth, ("depth", "init")),
      "dead_units": dead_unit_statistics(cfg, dead) if dead else None,
      "ranking": stats,
      "score_correlations": {k: _common.seed_bootstrap_corr(ranking, k)
                             for k in SCORES},
  }


def _plots(cfg: IsakovConfig, rows, summary, workdir: str) -> None:
  plot_deep_init(_part(rows, "depth"),
                 os.path.join(workdir, "depth", "accuracy_vs_depth.png"))
  if summary["dead_units"] is not None:
    plot_dead_units(_part(rows, "dead_units"), summary["dead_units"]["stats"],
                    os.path.join(workdir, "dead_units", "dead_units.png"))
  plot(_part(rows, "ranking"), summary, workdir)


STUDY = Study(
    name="isakov2020", rows=grid_rows, statistics=statistics,
    schema=("depth", "dead_units", "ranking", "score_correlations"),
    rows_file="isakov2020_runs",
    failed_keys=("experiment", "topology", "hidden_family", "depth", "init",
                 "seed"),
    plot=_plots)


def run(cfg: IsakovConfig, workdir: str, *, dataset=None,
        report_only: bool = False) -> dict[str, Any]:
  """Runs the three experiments (:func:`grid_rows`) on the study skeleton
  into ``workdir/depth``, ``workdir/dead_units`` and ``workdir/ranking``;
  writes ``isakov2020_runs.csv`` (every run), the per-experiment tables
  (``depth/deep_init.csv``, ``dead_units/dead_units.csv``,
  ``ranking.csv``, ``ranking_stats.csv``), ``summary.json``,
  ``provenance.json`` and the plots. ``report_only``: trains and reads no
  run; the statistics, tables, plots and summary again from the committed
  rows."""
  return run_study(STUDY, cfg, workdir, dataset=dataset,
                   from_committed_rows=report_only)


def plot(rows, summary, out_dir: str) -> None:
  """``ranking_vs_scores.png``: accuracy of every ranking run against each
  data-free score, with the seed-bootstrap Spearman interval."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  ok = _common.ok_rows(rows)
  if not ok:
    return
  keys = ("requirements_score", "path_uniformity", "reachability", "spectral_gap")
  fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 4))
  topos = sorted({r["topology"] for r in ok})
  for ax, key in zip(axes, keys):
    for i, topo in enumerate(topos):
      rr = [r for r in ok if r["topology"] == topo]
      ax.scatter([r[key] for r in rr], [r["final_test_acc"] for r in rr], s=16,
                 color=f"C{i % 10}", marker="os^D"[i // 10 % 4], label=topo)
    c = summary["score_correlations"][key]
    ax.set_title(f"Spearman {c['estimate']:.2f} [{c['low']:.2f}, {c['high']:.2f}]",
                 fontsize=9)
    ax.set_xlabel(key)
    ax.set_ylabel("final test accuracy")
  axes[-1].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "ranking_vs_scores.png"), dpi=110)
  plt.close(fig)
