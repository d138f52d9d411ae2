"""Liu, Mocanu, Matavalam, Pei & Pechenizkiy 2020 (arXiv:2006.14085), the
experiment behind their Figure 4, at the authors' own scale, side by side
with the accuracies their logs report (``../shared/papers/README.md``,
from Shiweiliuiiiiiii/Sparse_Topology_Distance).

* Data: Fashion-MNIST; 12,000 of the 60,000 training images are held out
  (the last 12,000, as Keras' ``validation_split=0.2`` takes them) and
  accuracy is measured on them, as the authors do -- the test set is
  reported beside it.
* Network: 784-784-784-784-10, the three hidden layers sparse at density
  0.6 % (about 3,700 connections each), the output layer dense.
* Ten networks w0..w9: w0 one Erdős–Rényi topology at 0.6 % per hidden
  layer; w(i+1) is w(i) with 1 % of each hidden layer's connections moved
  (``snn_jax.topology.perturbed``). Each is trained 200 epochs with SET
  (ζ = 0.3, after every epoch) and topology snapshots at epochs 0, 10, 20,
  30, 40, 50, 100, 150, 190 and 200.
* NNSTD in the authors' convention (``analysis.nnstd(...,
  convention="authors")``: every layer matched, the output layer included;
  the distance in their float form), between all 45 pairs of the ten
  networks, per layer, at every snapshot epoch: heat maps at 0, 10, 30, 50,
  100, 190 (``nnstd_heatmaps.png``) and the mean against epoch
  (``nnstd_vs_epoch.png``). The matching is computed from the
  lower-numbered network's side (one direction, as the authors' pairwise
  loop does).

Choices where the authors' material is silent (``summary["choices"]``):
the optimiser -- SET's own setting (SGD, momentum 0.9, lr 0.01, weight
decay 2e-4, batch 128, per-feature standardisation; ``liu2020.SET_SETTING``)
-- and the training seed of network i (i: each network has its own
initial weights and data order).
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
from snn_jax.reproduce.liu2020 import SET_SETTING
from snn_jax.training import TrainConfig, set_variants

SNAPSHOT_EPOCHS = (0, 10, 20, 30, 40, 50, 100, 150, 190, 200)
HEATMAP_EPOCHS = (0, 10, 30, 50, 100, 190)
# The authors' logs (seven of the ten networks): validation accuracy ranges
# per epoch, kept as data (data/liu2020_figure4_logs.csv).
PAPER_VAL_ACC = {int(r["epoch"]): (float(r["val_acc_low"]),
                                   float(r["val_acc_high"]))
                 for r in _common.read_data_csv("liu2020_figure4_logs.csv")}


@dataclasses.dataclass(frozen=True)
class LiuFigure4Config:
  """Attributes:
    base: training setup (``paper_base``) with the data source.
    networks: how many networks (w0..w(n-1)).
    hidden_density: density of each hidden layer.
    perturb_fraction: fraction of connections moved from one network to
      the next.
    topology_seed: seeds w0 and the perturbations.
    snapshot_epochs, heatmap_epochs: epochs saved, and shown as heat maps.
    set_variant: None (the setting of the first run: :data:`CHOICES`) or a
      name in ``training.SET_VARIANTS`` (``"keras_mask"``: the authors' own
      Keras-mask SET), applied to ``base`` for every network.
  """
  base: TrainConfig
  networks: int = 10
  hidden_density: float = 0.006
  perturb_fraction: float = 0.01
  topology_seed: int = 0
  snapshot_epochs: tuple[int, ...] = SNAPSHOT_EPOCHS
  heatmap_epochs: tuple[int, ...] = HEATMAP_EPOCHS
  set_variant: str | None = None

  def __post_init__(self):
    if self.set_variant is not None:
      set_variants.get(self.set_variant)  # unknown names raise
    if self.networks < 2:
      raise ValueError(f"need at least two networks, got {self.networks}")
    if not 0 < self.hidden_density < 1:
      raise ValueError(f"hidden_density must be in (0, 1), got "
                       f"{self.hidden_density}")
    if not 0 < self.perturb_fraction < 1:
      raise ValueError(f"perturb_fraction must be in (0, 1), got "
                       f"{self.perturb_fraction}")
    if not set(self.heatmap_epochs) <= set(self.snapshot_epochs):
      raise ValueError("heatmap_epochs must be among snapshot_epochs")
    if max(self.snapshot_epochs) > self.base.run.epochs:
      raise ValueError(f"snapshot epochs {self.snapshot_epochs} go beyond the "
                       f"{self.base.run.epochs} training epochs")
    if self.base.data.validation is None:
      raise ValueError("the Figure-4 accuracies are validation accuracies: "
                       "set base.data.validation")


def paper_base(base: TrainConfig) -> TrainConfig:
  """SET on Fashion-MNIST as in the Figure-4 experiment (module docstring),
  on ``base``'s data source."""
  return base.override({
      "data.name": "fashion_mnist", "data.split": "canonical",
      "data.validation": "last:12000", "model.name": "mlp",
      "model.hidden": (784, 784, 784), "model.topology.block_size": 1,
      "run.batch_size": 128, "run.epochs": 200, "sparse.method": "set",
      "sparse.zeta": 0.3, "run.snapshot_topologies": True,
      "run.snapshot_epochs": SNAPSHOT_EPOCHS, "run.progress": False,
      **SET_SETTING})


def paper_config(base: TrainConfig) -> LiuFigure4Config:
  return LiuFigure4Config(base=paper_base(base))


def training_base(cfg: LiuFigure4Config) -> TrainConfig:
  """What every network trains with: ``cfg.base``, under its SET variant
  where it names one."""
  if cfg.set_variant is None:
    return cfg.base
  return set_variants.get(cfg.set_variant).apply(cfg.base, evolving=True)


def choices(cfg: LiuFigure4Config) -> list[str]:
  """The study's ``choices``: the optimiser setting, or the variant's."""
  if cfg.set_variant is None:
    return list(CHOICES)
  return set_variants.get(cfg.set_variant).describe() + list(CHOICES[1:])


def initial_topologies(cfg: LiuFigure4Config, input_dim: int,
                       num_classes: int) -> list[list[topology_lib.Topology]]:
  """The ten starting stacks: w0 Erdős–Rényi, each next one the previous
  with ``perturb_fraction`` of every hidden layer's connections moved."""
  widths = [input_dim, *cfg.base.model.hidden]
  hidden = topology_lib.make_stack("erdos_renyi", widths,
                                   density=cfg.hidden_density,
                                   seed=cfg.topology_seed)
  stacks = [hidden]
  for i in range(1, cfg.networks):
    stacks.append([topology_lib.perturbed(t, cfg.perturb_fraction,
                                          seed=(cfg.topology_seed, i, l))
                   for l, t in enumerate(stacks[-1])])
  return [_common.with_dense_output(s, num_classes) for s in stacks]


def nnstd_pairs(snapshots: dict[int, dict[int, list]], epoch: int
                ) -> np.ndarray:
  """float64[layers, n, n]: the authors' per-layer NNSTD between every pair
  of networks at ``epoch`` (``snapshots[net][epoch]`` a topology stack);
  symmetric, zero diagonal, NaN where a network has no snapshot."""
  nets = sorted(snapshots)
  n_layers = len(next(iter(snapshots.values()))[epoch])
  out = np.full((n_layers, len(nets), len(nets)), np.nan)
  for i in range(len(nets)):
    if epoch in snapshots[nets[i]]:
      out[:, i, i] = 0.0
  for i, j in itertools.combinations(range(len(nets)), 2):
    a, b = snapshots[nets[i]].get(epoch), snapshots[nets[j]].get(epoch)
    if a is None or b is None:
      continue
    _, layers = analysis.nnstd(a, b, return_layers=True, convention="authors")
    out[:, i, j] = out[:, j, i] = layers
  return out


CHOICES = ("optimiser: SET's setting (SGD momentum 0.9, lr 0.01, "
           "weight decay 2e-4, batch 128, per-feature standardisation)",
           "network i trains with seed i",
           "validation part: the last 12,000 training images")


def _run_dir(workdir: str, i: int) -> str:
  return os.path.join(workdir, "runs", f"w{i}")


def network_rows(cfg: LiuFigure4Config, workdir: str, ds
                 ) -> list[dict[str, Any]]:
  """Trains (or finds finished) the ten networks in ``workdir/runs/w<i>``,
  network i with seed i, snapshots at ``cfg.snapshot_epochs``: one row per
  network that has finished or failed (unfinished ones, in a report-only
  pass, are left out)."""
  stacks = initial_topologies(cfg, ds.input_dim, ds.num_classes)
  base = training_base(cfg).override(
      {"run.snapshot_epochs": cfg.snapshot_epochs})
  rows = []
  for i, stack in enumerate(stacks):
    rdir = _run_dir(workdir, i)

    def one(stack=stack, rdir=rdir, i=i):
      s = _common.train_stack(base, stack, rdir, ds, seed=i)
      curve = analysis.load_metrics(os.path.join(rdir, "train"))
      return {**_common.run_row(s), "final_val_acc": s.get("final_val_acc"),
              **{f"val_acc_e{e}": curve[e]["val_acc"]
                 for e in PAPER_VAL_ACC if e in curve}}
    row = _common.guarded(one)
    if row["error"] == _common.NOT_FINISHED:
      continue
    row.update(network=f"w{i}", seed=i)
    rows.append(row)
    print(f"liu2020 figure 4: w{i}: val {row.get('final_val_acc')} "
          f"{row['error']}", flush=True)
  return rows


def surviving_fraction(first: topology_lib.Topology,
                       later: topology_lib.Topology) -> float:
  """The fraction of ``first``'s connections (blocks) still present in
  ``later`` (the same layer at a later epoch)."""
  def keys(t):
    return t.rows.astype(np.int64) * t.n_col_blocks + t.cols
  return float(np.intersect1d(keys(first), keys(later)).size / first.nnzb)


def _snapshots(rows, workdir: str) -> dict[int, dict[int, list]]:
  run_dirs = {r["seed"]: os.path.join(_run_dir(workdir, r["seed"]), "train")
              for r in _common.ok_rows(rows)}
  return {i: analysis.load_snapshots(d) for i, d in run_dirs.items()}


def survival_by_epoch(cfg: LiuFigure4Config, snapshots) -> list[dict]:
  """Per snapshot epoch: the fraction of each network's epoch-0 hidden
  connections still present, mean (and range) over networks and hidden
  layers -- about 75 % at epoch 10 and 60 % at epoch 190 in the authors'
  published topologies (``../shared/papers/README.md``)."""
  out = []
  for e in cfg.snapshot_epochs:
    if e == 0:
      continue
    per_net = [float(np.mean([surviving_fraction(s[0][l], s[e][l])
                              for l in range(len(s[0]) - 1)]))
               for s in snapshots.values() if 0 in s and e in s]
    if per_net:
      out.append({"epoch": e, "mean": float(np.mean(per_net)),
                  "low": min(per_net), "high": max(per_net),
                  "networks": len(per_net)})
  return out


def _nnstd_by_epoch(cfg: LiuFigure4Config, snapshots):
  per_epoch, mats = [], {}
  for e in cfg.snapshot_epochs:
    if len(snapshots) < 2 or not all(e in s for s in snapshots.values()):
      continue
    m = nnstd_pairs(snapshots, e)
    mats[e] = m
    iu = np.triu_indices(m.shape[1], 1)
    per_epoch.append({"epoch": e, **{f"layer_{l}_mean": float(np.nanmean(
        m[l][iu])) for l in range(m.shape[0])},
        "hidden_mean": float(np.nanmean(m[:-1, iu[0], iu[1]]))})
  return per_epoch, mats


def statistics(cfg: LiuFigure4Config, rows, workdir: str) -> dict[str, Any]:
  """Validation accuracy beside the paper's (``accuracy_vs_paper.csv/
  md``), test accuracy over the networks, the NNSTD between the networks
  per snapshot epoch (``nnstd_by_epoch.csv``; all pairs, authors'
  convention) with the heat-map epochs' matrices."""
  snapshots = _snapshots(rows, workdir)
  per_epoch, mats = _nnstd_by_epoch(cfg, snapshots)
  analysis.write_rows(per_epoch, workdir, "nnstd_by_epoch")
  survival = survival_by_epoch(cfg, snapshots)
  table = accuracy_vs_paper(rows)
  analysis.write_rows(table, workdir, "accuracy_vs_paper")
  _common.write_markdown_table(
      table, [("epoch", "epoch"), ("paper_low", "paper low %"),
              ("paper_high", "paper high %"), ("ours_low", "ours low %"),
              ("ours_high", "ours high %"), ("mean", "ours mean %"),
              ("ci_low", "95% low"), ("ci_high", "95% high"),
              ("networks", "networks"), ("verdict", "verdict")],
      os.path.join(workdir, "accuracy_vs_paper.md"),
      title="Validation accuracy (%) on the 12,000 held-out training images; "
            "paper: range over seven of the authors' ten networks; ours: "
            "range, mean and seed-bootstrap 95% interval over our networks")
  return {
      "accuracy_vs_paper": table,
      "test_acc": _common.bootstrap_mean_ci([r["final_test_acc"] for r in
                                             _common.ok_rows(rows)]),
      "nnstd_by_epoch": per_epoch,
      "surviving_connections": survival,
      "nnstd_matrices": {str(e): m.tolist() for e, m in mats.items()
                         if e in cfg.heatmap_epochs},
      "networks_finished": len(_common.ok_rows(rows)),
      "networks_planned": cfg.networks,
      "choices": choices(cfg),
      "train_seconds_of_finished_runs": float(sum(
          r.get("train_seconds") or 0.0 for r in _common.ok_rows(rows)))}


def _plot(cfg: LiuFigure4Config, rows, summary, workdir: str) -> None:
  mats = {int(e): np.asarray(m) for e, m in summary["nnstd_matrices"].items()}
  plot(mats, summary["nnstd_by_epoch"], cfg, workdir)


STUDY = Study(
    name="liu2020 Figure 4 (paper scale)", rows=network_rows,
    statistics=statistics,
    schema=("accuracy_vs_paper", "test_acc", "nnstd_by_epoch",
            "surviving_connections", "nnstd_matrices", "networks_finished", "networks_planned",
            "choices", "train_seconds_of_finished_runs"),
    rows_file="networks", failed_keys=("network",), plot=_plot)


def run(cfg: LiuFigure4Config, workdir: str, *, dataset=None,
        report_only: bool = False) -> dict[str, Any]:
  """Trains (or resumes) the ten networks (:func:`network_rows`) on the
  study skeleton and writes ``networks.csv/json``,
  ``accuracy_vs_paper.csv/md``, ``nnstd_by_epoch.csv``, ``summary.json``,
  ``provenance.json`` and the plots. ``report_only`` trains nothing and
  reports the networks that have finished."""
  ds = cfg.base.data.with_validation(dataset or cfg.base.load_dataset())
  return run_study(STUDY, cfg, workdir, dataset=ds.flattened(),
                   report_only=report_only)


def accuracy_vs_paper(rows) -> list[dict[str, Any]]:
  """Per reported epoch: the authors' range over their networks, ours
  (range, and mean with a 95% bootstrap interval over the networks, which
  stays within their range), and whether
  our range overlaps theirs."""
  out = []
  for e, (lo, hi) in PAPER_VAL_ACC.items():
    key = "final_val_acc" if e == max(PAPER_VAL_ACC) else f"val_acc_e{e}"
    vals = [r[key] for r in _common.ok_rows(rows) if r.get(key) is not None]
    ci = _common.bootstrap_mean_ci(vals)
    if not vals:
      verdict = "not run"
    elif max(vals) >= lo and min(vals) <= hi:
      verdict = "ranges overlap"
    else:
      verdict = "ours higher" if min(vals) > hi else "ours lower"
    out.append({"epoch": e, "paper_low": lo, "paper_high": hi,
                "ours_low": min(vals) if vals else None,
                "ours_high": max(vals) if vals else None,
                "mean": ci["mean"], "ci_low": ci["low"], "ci_high": ci["high"],
                "networks": ci["n"], "verdict": verdict})
  return out


def plot(mats, per_epoch, cfg: LiuFigure4Config, out_dir: str) -> None:
  """``nnstd_heatmaps.png`` (rows: layers; columns: heat-map epochs) and
  ``nnstd_vs_epoch.png``."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  epochs = [e for e in cfg.heatmap_epochs if e in mats]
  if epochs:
    n_layers = mats[epochs[0]].shape[0]
    fig, axes = plt.subplots(n_layers, len(epochs),
                             figsize=(1.9 * len(epochs) + 1.2,
                                      1.9 * n_layers + 0.8),
                             squeeze=False, layout="constrained")
    nets = mats[epochs[0]].shape[-1]
    ticks = [0, nets - 1]
    for c, e in enumerate(epochs):
      for l in range(n_layers):
        ax = axes[l][c]
        im = ax.imshow(mats[e][l], vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(ticks if l == n_layers - 1 else [])
        ax.set_yticks(ticks if c == 0 else [])
        ax.tick_params(labelsize=7)
        if l == 0:
          ax.set_title(f"epoch {e}", fontsize=9)
        if l == n_layers - 1:
          ax.set_xlabel("network", fontsize=8)
        if c == 0:
          dense = l == n_layers - 1
          ax.set_ylabel(f"layer {l}" + ("\n(dense output:\nsame in all)"
                                        if dense else "") + "\nnetwork",
                        fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label="NNSTD (authors' convention)")
    fig.suptitle(f"NNSTD between the {nets} networks, per layer and epoch",
                 fontsize=10)
    fig.savefig(os.path.join(out_dir, "nnstd_heatmaps.png"), dpi=100)
    plt.close(fig)
  if per_epoch:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    x = [r["epoch"] for r in per_epoch]
    for key in sorted(k for k in per_epoch[0] if k.startswith("layer_")):
      ax.plot(x, [r[key] for r in per_epoch], "o-", label=key.replace("_mean", ""))
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean NNSTD over the 45 pairs")
    ax.set_title("Liu et al. 2020, Figure 4 setup (Fashion-MNIST)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "nnstd_vs_epoch.png"), dpi=110)
    plt.close(fig)
