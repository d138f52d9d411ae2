"""Liu, Mocanu, Matavalam, Pei & Pechenizkiy 2020, "Topological Insights
into Sparse Neural Networks" (arXiv:2006.14085): SET-trained sparse MLPs
against dense ones, and NNSTD between the topologies that independent runs
find.

Per dataset and seed (one fixed held-out set), three networks of the same
widths: ``dense``; ``static`` (SET's Erdős–Rényi initial topology at
``epsilon``, never rewired); ``set`` (the same start, rewired by SET after
every epoch, topology snapshots kept). Analysis (``summary.json``):

* accuracy per method, mean with a seed-bootstrap interval, and the paired
  differences ``static - dense`` and ``set - dense`` (same seed, same split)
  with seed-bootstrap intervals and verdicts -- the claim that sparse
  networks can outperform dense;
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
from snn_jax.studies import Study, run_study
from snn_jax.topology import TopologyConfig
from snn_jax.training import TrainConfig, set_variants

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


SET_SETTING = dict(set_variants.OUR_SETTING.shared)
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


def train_arm(base: TrainConfig, method: str, *, epsilon: float, seed: int,
              zeta: float, run_dir: str, dataset, dense_output: bool = False,
              snapshot: bool = False) -> tuple[dict[str, Any], str]:
  """Trains one arm of SET's sparse-against-dense comparison, for the
  reduced study and the paper-scale one alike: ``dense`` (the widths of
  ``base.model.hidden``, dense), ``static`` (SET's Erdős–Rényi start at
  ``epsilon`` (Mocanu et al. 2018), density capped at 1, trained
  unchanged) or ``set`` (the same start, rewired with ``zeta`` after
  every epoch; ``snapshot`` keeps its topologies). ``static`` trains the
  graph drawn from ``seed`` as a given stack, so SET's run with the same
  seed starts from the same graph; with ``dense_output`` (SET's Keras
  code) the output layer is dense and SET trains a given stack too.
  Returns the run's summary and the path of its ``metrics.jsonl``."""
  widths = [dataset.input_dim, *base.model.hidden, dataset.num_classes]
  if method == "static" or (method == "set" and dense_output):
    stack = topology_lib.make_stack(
        "erdos_renyi", widths[:-1] if dense_output else widths,
        seed=seed, epsilon=epsilon, cap_density=True)
    if dense_output:
      stack = _common.with_dense_output(stack, dataset.num_classes)
    summary = _common.train_stack(base, stack, run_dir, dataset, seed=seed)
    return summary, os.path.join(run_dir, "train", "metrics.jsonl")
  topo = (TopologyConfig("dense") if method == "dense" else
          TopologyConfig("erdos_renyi", params={"epsilon": epsilon,
                                                "cap_density": True}))
  overrides = {"run.seed": seed, "model.topology": topo,
               "sparse.method": "set" if method == "set" else "static",
               "sparse.zeta": zeta}
  if snapshot and method == "set":
    overrides["run.snapshot_topologies"] = True
  summary = _common.train(base.override(overrides), run_dir, dataset)
  return summary, os.path.join(run_dir, "metrics.jsonl")


def grid_rows(cfg: LiuConfig, workdir: str, datasets: dict
              ) -> list[dict[str, Any]]:
  """One row per dataset, seed and method, each run in
  ``workdir/<dataset>/runs/<method>_s<seed>`` (finished runs are skipped):
  :func:`train_arm`'s ``static``, ``set`` (keeping topology snapshots) and
  ``dense``."""
  rows = []
  for name in cfg.datasets:
    ds = datasets[name]
    base = cfg.base.override({
        "data.name": name, "model.hidden": cfg.hidden, "run.progress": False})
    for seed in cfg.seeds:
      for method in METHODS:
        rdir = _run_dir(workdir, name, method, seed)

        def one(method=method, seed=seed, rdir=rdir, base=base, ds=ds):
          summary, _ = train_arm(base, method, epsilon=cfg.epsilon, seed=seed,
                                 zeta=cfg.zeta, run_dir=rdir, dataset=ds,
                                 snapshot=True)
          return _common.run_row(summary)
        row = _common.guarded(one)
        row.update(dataset=name, method=method, seed=seed)
        rows.append(row)
  return rows


def _run_dir(workdir: str, dataset: str, method: str, seed: int) -> str:
  return os.path.join(workdir, dataset, "runs", f"{method}_s{seed}")


def dataset_analysis(cfg: LiuConfig, name: str, rows, workdir: str
                     ) -> dict[str, Any]:
  """One dataset's analysis from its finished runs: accuracy per method,
  the paired differences against dense, NNSTD between the static runs'
  (independent random) graphs and between the SET runs' final graphs, the
  SET runs' accuracy spread, and the evolution report (written to
  ``workdir/<name>/set_evolution``)."""
  rows = [r for r in rows if r["dataset"] == name]
  ok = _common.ok_rows(rows)
  out: dict[str, Any] = {"accuracy": _common.group_stats(rows, ("method",))}
  for m in ("static", "set"):
    out[f"{m}_minus_dense"] = _common.paired_difference(rows, "method", m,
                                                        "dense")
  static = {r["seed"]: _common.stack_of(
      _run_dir(workdir, name, "static", r["seed"]))
            for r in ok if r["method"] == "static"}
  if len(static) >= 2:
    pairs = list(itertools.combinations(sorted(static), 2))
    per = [analysis.nnstd(static[a], static[b], return_layers=True)
           for a, b in pairs]
    out["nnstd_random_pairs"] = {
        "mean": float(np.mean([p[0] for p in per])),
        "per_layer_mean": np.mean([p[1] for p in per], axis=0).tolist(),
        "pairs": len(pairs)}
  set_dirs = [_run_dir(workdir, name, "set", r["seed"]) for r in ok
              if r["method"] == "set"]
  if len(set_dirs) >= 2:
    ev = analysis.evolution_report(
        set_dirs, os.path.join(workdir, name, "set_evolution"),
        max_epochs=cfg.evolution_epochs)
    finals = {d: analysis.load_snapshots(d) for d in set_dirs}
    finals = {d: snap[max(snap)] for d, snap in finals.items()}
    per = [analysis.nnstd(finals[a], finals[b], return_layers=True)
           for a, b in itertools.combinations(set_dirs, 2)]
    set_accs = [r["final_test_acc"] for r in ok if r["method"] == "set"]
    out["nnstd_set_final_pairs"] = {
        "mean": float(np.mean([p[0] for p in per])),
        "per_layer_mean": np.mean([p[1] for p in per], axis=0).tolist(),
        "pairs": len(per)}
    out["set_nnstd_final_to_start"] = _common.mean_ci(
        [r["nnstd_final_to_start"] for r in ev["runs"]])
    out["set_accuracy_spread"] = {"std": float(np.std(set_accs, ddof=1)),
                                  "range": float(np.ptp(set_accs))}
  return out


def statistics(cfg: LiuConfig, rows, workdir: str) -> dict[str, Any]:
  """Per dataset, :func:`dataset_analysis`; ``accuracy_stats.csv`` over
  dataset and method."""
  stats = _common.group_stats(rows, ("dataset", "method"))
  analysis.write_rows(stats, workdir, "accuracy_stats")
  return {"datasets": {name: dataset_analysis(cfg, name, rows, workdir)
                       for name in cfg.datasets},
          "accuracy": stats}


def load_datasets(cfg: LiuConfig) -> dict[str, Any]:
  """Each of ``cfg.datasets``, loaded as ``cfg.base`` says (its name
  replaced)."""
  return {name: cfg.base.override({"data.name": name}).load_dataset()
          for name in cfg.datasets}


STUDY = Study(
    name="liu2020", rows=grid_rows, statistics=statistics,
    schema=("datasets", "accuracy"), rows_file="liu2020_runs",
    failed_keys=("dataset", "method", "seed"),
    plot=lambda cfg, rows, summary, workdir: plot(
        summary["accuracy"], summary, workdir),
    load_dataset=load_datasets)


def run(cfg: LiuConfig, workdir: str, *, datasets: dict | None = None
        ) -> dict[str, Any]:
  """Runs every dataset into ``workdir/<dataset>/`` on the study skeleton
  and writes ``liu2020_runs.csv/json``, ``accuracy_stats.csv``,
  ``summary.json``, ``provenance.json`` (each dataset's fingerprint) and
  ``accuracy_by_method.png``. ``datasets`` maps names to loaded datasets
  (tests); others are loaded from ``cfg.base``."""
  given = dict(datasets or {})
  missing = [n for n in cfg.datasets if n not in given]
  if missing:
    given.update(load_datasets(dataclasses.replace(cfg, datasets=tuple(missing))))
  return run_study(STUDY, cfg, workdir,
                   dataset={n: given[n] for n in cfg.datasets})


def plot(stats, summary, out_dir: str) -> None:
  """``accuracy_by_method.png``: mean accuracy with 95% seed-bootstrap intervals per
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
