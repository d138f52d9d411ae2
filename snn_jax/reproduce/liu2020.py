"""Liu, Mocanu, Matavalam, Pei & Pechenizkiy 2020, "Topological Insights
into Sparse Neural Networks" (arXiv:2006.14085): SET-trained sparse MLPs
against dense ones, and NNSTD between the topologies that independent runs
find.

Per dataset and seed (one fixed held-out set), three networks of the same
widths: ``dense``; ``static`` (SET's Erdős–Rényi initial topology at
``epsilon``, never rewired); ``set`` (the same start, rewired by SET after
every epoch, topology snapshots kept). Analysis (``summary.json``):

* accuracy per method, mean with a t interval over seeds, and the paired
  differences ``static - dense`` and ``set - dense`` (same seed, same split)
  with t intervals -- the claim that sparse networks can outperform dense;
* NNSTD between the final topologies of the SET runs, against the NNSTD
  between *independent random* topologies of the same density (the static
  runs' graphs) as the reference for "very different", with the accuracy
  spread over the SET runs -- the claim that SET finds many very different
  topologies of similar accuracy (per-layer values too: the dense output
  layer always has NNSTD 0 and pulls the mean over layers down);
* the evolution report (NNSTD between epochs of each run, input-degree
  evolution) from :func:`snn_jax.analysis.evolution_report`.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any

import numpy as np

from snn_jax import analysis
from snn_jax import topology as topology_lib
from snn_jax.reproduce import _common
from snn_jax.topology import TopologyConfig
from snn_jax.training import TrainConfig, train_and_evaluate

METHODS = ("dense", "static", "set")


@dataclasses.dataclass(frozen=True)
class LiuConfig:
  """Attributes:
    base: optimiser, epochs, ``split_seed``, data location (its dataset is
      replaced by each of ``datasets``).
    datasets: dataset names (``mnist``, ``fashion_mnist``, ...).
    hidden: hidden widths (SET-MLP on MNIST: 1000, 1000, 1000).
    epsilon: SET's density parameter (layers where it would exceed density
      1 are dense, as in SET's code).
    zeta: fraction of each layer's weights SET rewires after every epoch.
    seeds: one run per method and seed.
    evolution_epochs: snapshots per run used for the between-epoch NNSTD.
  """
  base: TrainConfig
  datasets: tuple[str, ...] = ("mnist",)
  hidden: tuple[int, ...] = (1000, 1000, 1000)
  epsilon: float = 20.0
  zeta: float = 0.3
  seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
  evolution_epochs: int = 6

  def __post_init__(self):
    from snn_jax import data as data_lib
    bad = [d for d in self.datasets if d not in data_lib.DATASETS]
    if not self.datasets or bad:
      raise ValueError(f"unknown datasets {bad or self.datasets}; known: "
                       f"{data_lib.DATASETS}")
    if self.epsilon <= 0:
      raise ValueError(f"epsilon must be positive, got {self.epsilon}")
    if not 0 < self.zeta < 1:
      raise ValueError(f"zeta must be in (0, 1), got {self.zeta}")
    if len(self.seeds) < 2:
      raise ValueError("intervals over seeds need at least two seeds")


SET_SETTING = {"optimizer.name": "momentum", "optimizer.momentum": 0.9,
               "optimizer.lr": 0.01, "optimizer.schedule": "constant",
               "optimizer.weight_decay": 2e-4,
               "data.normalization": "per_feature"}
"""SET's training setting, used for all three methods: SGD with momentum at
a constant learning rate (a decaying one leaves the connections regrown
late untrained), a little weight decay, and per-feature standardisation
(constant border pixels become 0, so their connections get no gradient
and SET's magnitude rule moves them to informative pixels)."""


def reduced_config(base: TrainConfig) -> LiuConfig:
  """The committed default: SET-MLP 784-1000-1000-1000-10, epsilon 20,
  5 seeds, 40 epochs with :data:`SET_SETTING`, on ``base.data.name`` only
  (committed: the 8k/2k split of the MNIST test files,
  ``_common.reduced_data``; about 10 minutes)."""
  return LiuConfig(base=_common.reduced_data(base).override(
      {"run.epochs": 40, **SET_SETTING}), datasets=(base.data.name,))


def full_config(base: TrainConfig) -> LiuConfig:
  """The paper's setting as far as its abstract and SET's code give it:
  MNIST and Fashion-MNIST (full training sets through TFDS), SET's 1000
  epochs are cut to 200; ten seeds."""
  return LiuConfig(base=base.override({"run.epochs": 200, **SET_SETTING}),
                   datasets=("mnist", "fashion_mnist"), seeds=tuple(range(10)),
                   evolution_epochs=12)


def _set_params(cfg: LiuConfig) -> dict[str, Any]:
  return {"epsilon": cfg.epsilon, "cap_density": True}


def _one_dataset(cfg: LiuConfig, name: str, workdir: str, ds) -> dict[str, Any]:
  base = cfg.base.override({
      "data.name": name, "model.hidden": cfg.hidden, "run.progress": False})
  widths = [ds.input_dim, *cfg.hidden, ds.num_classes]
  rows, static_stacks, set_dirs = [], {}, []
  for seed in cfg.seeds:
    for method in METHODS:
      rdir = os.path.join(workdir, "runs", f"{method}_s{seed}")

      def one(method=method, seed=seed, rdir=rdir):
        if method == "static":
          stack = topology_lib.make_stack("erdos_renyi", widths, seed=seed,
                                          **_set_params(cfg))
          static_stacks[seed] = stack
          s = _common.train_stack(base, stack, rdir, ds, seed=seed)
        else:
          topo = (TopologyConfig("dense") if method == "dense" else
                  TopologyConfig("erdos_renyi", params=_set_params(cfg)))
          run_cfg = base.override({
              "run.seed": seed, "model.topology": topo,
              "sparse.method": "static" if method == "dense" else "set",
              "sparse.zeta": cfg.zeta,
              "run.snapshot_topologies": method == "set"})
          s = train_and_evaluate(run_cfg, rdir, dataset=ds)
          if method == "set":
            set_dirs.append(rdir)
        return _common.run_row(s)
      row = _common.guarded(one)
      row.update(dataset=name, method=method, seed=seed)
      rows.append(row)
  out: dict[str, Any] = {"accuracy": _common.group_stats(rows, ("method",))}
  for m in ("static", "set"):
    out[f"{m}_minus_dense"] = _common.paired_difference(rows, "method", m,
                                                        "dense")
  if len(static_stacks) >= 2:
    pairs = list(itertools.combinations(sorted(static_stacks), 2))
    per = [analysis.nnstd(static_stacks[a], static_stacks[b],
                          return_layers=True) for a, b in pairs]
    out["nnstd_random_pairs"] = {
        "mean": float(np.mean([p[0] for p in per])),
        "per_layer_mean": np.mean([p[1] for p in per], axis=0).tolist(),
        "pairs": len(pairs)}
  if len(set_dirs) >= 2:
    ev = analysis.evolution_report(set_dirs, os.path.join(workdir, "set_evolution"),
                                   max_epochs=cfg.evolution_epochs)
    finals = {d: analysis.load_snapshots(d) for d in set_dirs}
    finals = {d: snap[max(snap)] for d, snap in finals.items()}
    per = [analysis.nnstd(finals[a], finals[b], return_layers=True)
           for a, b in itertools.combinations(set_dirs, 2)]
    set_accs = [r["final_test_acc"] for r in _common.ok_rows(rows)
                if r["method"] == "set"]
    out["nnstd_set_final_pairs"] = {
        "mean": float(np.mean([p[0] for p in per])),
        "per_layer_mean": np.mean([p[1] for p in per], axis=0).tolist(),
        "pairs": len(per)}
    out["set_nnstd_final_to_start"] = _common.mean_ci(
        [r["nnstd_final_to_start"] for r in ev["runs"]])
    out["set_accuracy_spread"] = {"std": float(np.std(set_accs, ddof=1)),
                                  "range": float(np.ptp(set_accs))}
  out["failed"] = [{k: r[k] for k in ("method", "seed", "error")}
                   for r in _common.failed_rows(rows)]
  return {"rows": rows, "analysis": out}


def run(cfg: LiuConfig, workdir: str, *, datasets: dict | None = None
        ) -> dict[str, Any]:
  """Runs every dataset into ``workdir/<dataset>/`` and writes
  ``liu2020_runs.csv/json``, ``accuracy_stats.csv``, ``summary.json``,
  ``provenance.json`` and ``accuracy_by_method.png``. ``datasets`` maps
  names to loaded datasets (tests); others are loaded from ``cfg.base``."""
  os.makedirs(workdir, exist_ok=True)
  datasets = dict(datasets or {})
  rows, summary = [], {"datasets": {}}
  prov = None
  for name in cfg.datasets:
    ds = datasets.get(name) or cfg.base.override({
        "data.name": name}).load_dataset()
    prov = prov or _common.Provenance("liu2020", cfg, ds)
    res = _one_dataset(cfg, name, os.path.join(workdir, name), ds)
    rows += res["rows"]
    summary["datasets"][name] = {**res["analysis"], "data_source": ds.source,
                                 "data_fingerprint": ds.fingerprint}
  analysis.write_rows(rows, workdir, "liu2020_runs")
  stats = _common.group_stats(rows, ("dataset", "method"))
  analysis.write_rows(stats, workdir, "accuracy_stats")
  plot(stats, summary, workdir)
  summary["provenance"] = prov.write(workdir)
  _common.write_summary(summary, workdir)
  return summary


def plot(stats, summary, out_dir: str) -> None:
  """``accuracy_by_method.png``: mean accuracy with 95% t intervals per
  method and dataset, NNSTD of SET runs against random pairs in the title."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = list(summary["datasets"])
  fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.8),
                           squeeze=False)
  for ax, name in zip(axes[0], names):
    ss = [s for s in stats if s["dataset"] == name]
    ss.sort(key=lambda s: METHODS.index(s["method"]))
    _common.errorbar_ci(ax, range(len(ss)), ss, fmt="o")
    ax.set_xticks(range(len(ss)), [s["method"] for s in ss])
    ax.set_ylabel("final test accuracy (mean, 95% CI)")
    a = summary["datasets"][name]
    title = name
    if "nnstd_set_final_pairs" in a and "nnstd_random_pairs" in a:
      title += (f"\nNNSTD between SET runs {a['nnstd_set_final_pairs']['mean']:.3f}"
                f" / random pairs {a['nnstd_random_pairs']['mean']:.3f}")
    ax.set_title(title, fontsize=9)
    ax.ticklabel_format(axis="y", useOffset=False)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "accuracy_by_method.png"), dpi=110)
  plt.close(fig)
