"""Alford, Robinett, Milechin & Kepner 2019 (arXiv:1810.00299) at the
authors' own scale: their LeNet-300-100 on full MNIST, with every
configuration of their results sheet, side by side with its numbers.

The setup is the one ``../shared/papers/README.md`` reports from the first
author's repository (simonalford42/Kepner-sparse-nn):

* data: MNIST, 55,000 training / 5,000 validation (the first 5,000 training
  images, as TensorFlow's reader holds them out) / 10,000 test images;
  pixels in [-1, 1];
* LeNet-300-100: 784-300-100-10, ReLU, ReLU on the logits too; weights
  truncated normal (std 0.04), biases 0.1; L2 weight decay 0.004 on the
  weights (``wd·‖W‖²/2``); plain SGD, batch 100, learning rate 0.2, 0.1 from
  step 10,000, 0.05 from step 20,000;
* arms (per seed):
  ``dense``; ``one_time_retrained`` (the trained dense net's weights pruned
  once per layer by magnitude, the mask trained from a fresh
  initialisation); ``iterative_pruned`` (gradual cubic-schedule magnitude
  pruning during dense training, per layer, every 200 steps from step 3,000
  to 10,000 -- the accuracy of the pruned net itself) and
  ``iterative_retrained`` (its final mask trained afresh) -- all three
  weight layers carry a mask, at sparsities 50/75/90/95/99 %;
  ``random`` (each of the two hidden layers an independent Bernoulli(r)
  mask, r = 0.01/0.05/0.1/0.5, output dense); ``wider`` (the first hidden
  layer r = 2/10/100 times as wide, both sparse layers at density 1/r, so
  the connections equal the dense net's); ``radixnet`` (N=[[10,10]],
  B=[8,3,1] -- "0.1" -- and B=[8,30,1] -- "10" --, 784 of the 800 input rows
  kept, output dense).

Deviations, all recorded in ``summary.json["deviations"]``: accuracy is
measured after every epoch (550 steps), not every 200 steps, and training
runs 55 epochs = 30,250 steps (the sheet says 10,000-30,000 steps without
saying which run used how many); three seeds where the sheet has one run.

Runs live in ``<workdir>/runs/<model>/s<seed>/<arm>``, each a resumable
``train_and_evaluate`` workdir; what a later arm needs from an earlier one
(the dense net's final weights, a gradual run's final mask) is written next
to the run as ``final_weights.npz`` / ``final_topology/`` and is committed
with the results, so a run started again -- in another session, without
the checkpoints -- skips every finished run and resumes the unfinished one
from its last checkpoint if that is still there.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from snn_jax import analysis
from snn_jax import topology as topology_lib
from snn_jax.reproduce import _common
from snn_jax.training import TrainConfig, restore_model

ARMS = ("dense", "one_time_retrained", "iterative_pruned",
        "iterative_retrained", "random", "wider", "radixnet")
RADIXNETS = {"0.1": (8, 3, 1), "10": (8, 30, 1)}
# Agreement: the paper's single run lies within our 95% interval over
# seeds, widened by this many accuracy points on each side (a single run of
# theirs carries seed noise of its own).
AGREEMENT_MARGIN = 0.005

# The results sheet's LeNet-300-100 numbers (pruning_data.csv via
# ../shared/papers/README.md): test accuracy, single runs.
PAPER_LENET300 = {
    ("dense", None): 0.9703,
    **{("one_time_retrained", s): v for s, v in zip(
        (0.5, 0.75, 0.9, 0.95, 0.99), (0.9688, 0.9682, 0.9619, 0.9565, 0.5608))},
    **{("iterative_pruned", s): v for s, v in zip(
        (0.5, 0.75, 0.9, 0.95, 0.99), (0.9750, 0.9744, 0.9740, 0.9730, 0.9683))},
    **{("iterative_retrained", s): v for s, v in zip(
        (0.5, 0.75, 0.9, 0.95, 0.99), (0.9703, 0.9705, 0.9702, 0.9634, 0.9608))},
    **{("random", d): v for d, v in zip((0.01, 0.05, 0.1, 0.5),
                                        (0.7410, 0.9149, 0.9342, 0.9628))},
    **{("wider", r): v for r, v in zip((2, 10, 100), (0.9665, 0.9445, 0.9430))},
    ("radixnet", "0.1"): 0.9357,
    ("radixnet", "10"): 0.9398,
}


def paper_base(base: TrainConfig) -> TrainConfig:
  """The authors' LeNet-300-100 training setup on ``base``'s data source
  (module docstring)."""
  return dataclasses.replace(
      base, dataset="mnist", data_split="canonical",
      normalization="minus_one_to_one", validation_split="first:5000",
      model="mlp", hidden=(300, 100), init="truncated_normal:0.04",
      bias_init=0.1, activation="relu", output_activation="relu",
      optimizer="sgd", lr=0.2, schedule="piecewise",
      lr_boundaries=(10_000, 20_000), lr_values=(0.1, 0.05),
      weight_decay=0.004, decay_biases=False, batch_size=100, epochs=55,
      block_size=1, progress=False)


@dataclasses.dataclass(frozen=True)
class AlfordPaperConfig:
  """Attributes:
    base: the training setup (``paper_base``) with the data source.
    arms: any of ``ARMS``.
    sparsities: pruning targets (fraction of weights removed).
    random_densities: densities of the ``random`` arm.
    widen: width factors of the ``wider`` arm.
    radixnets: labels of ``RADIXNETS`` to run.
    prune_begin_step, prune_end_step, prune_every: the gradual schedule.
    seeds: one dense net (and everything derived from it) per seed.
  """
  base: TrainConfig
  arms: tuple[str, ...] = ARMS
  sparsities: tuple[float, ...] = (0.5, 0.75, 0.9, 0.95, 0.99)
  random_densities: tuple[float, ...] = (0.01, 0.05, 0.1, 0.5)
  widen: tuple[int, ...] = (2, 10, 100)
  radixnets: tuple[str, ...] = ("0.1", "10")
  prune_begin_step: int = 3_000
  prune_end_step: int = 10_000
  prune_every: int = 200
  seeds: tuple[int, ...] = (0, 1, 2)

  def __post_init__(self):
    bad = [a for a in self.arms if a not in ARMS]
    if bad or not self.arms:
      raise ValueError(f"unknown arms {bad}; known: {ARMS}")
    if not all(0 < s < 1 for s in self.sparsities):
      raise ValueError(f"sparsities must be in (0, 1), got {self.sparsities}")
    if not all(0 < d < 1 for d in self.random_densities):
      raise ValueError(f"random_densities must be in (0, 1), got "
                       f"{self.random_densities}")
    if not all(isinstance(r, int) and r > 1 for r in self.widen):
      raise ValueError(f"widen factors must be integers > 1, got {self.widen}")
    bad = [r for r in self.radixnets if r not in RADIXNETS]
    if bad:
      raise ValueError(f"unknown radixnets {bad}; known: {sorted(RADIXNETS)}")
    if not 0 <= self.prune_begin_step < self.prune_end_step:
      raise ValueError("need 0 <= prune_begin_step < prune_end_step")
    if not self.seeds:
      raise ValueError("need at least one seed")
    if len(self.base.hidden) != 2:
      raise ValueError(f"LeNet-300-100 has two hidden layers, got "
                       f"hidden={self.base.hidden}")


def paper_config(base: TrainConfig) -> AlfordPaperConfig:
  """The paper-scale configuration: every LeNet-300-100 configuration of
  the authors' sheet, three seeds (module docstring)."""
  return AlfordPaperConfig(base=paper_base(base))


def _run_dir(workdir: str, seed: int, name: str) -> str:
  return os.path.join(workdir, "runs", "lenet300", f"s{seed}", name)


def _dense_weights(run_dir: str) -> dict[str, np.ndarray]:
  """The trained dense net's weights, from ``final_weights.npz`` (written
  after the first restore, committed with the results)."""
  path = os.path.join(run_dir, "final_weights.npz")
  if not os.path.exists(path):
    weights = restore_model(run_dir).dense_weights()
    np.savez_compressed(path, **weights)
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


def _final_topology(run_dir: str) -> list[topology_lib.Topology]:
  """A finished pruning run's final mask, from ``final_topology/``."""
  tdir = os.path.join(run_dir, "final_topology")
  if not os.path.isdir(tdir):
    topology_lib.save_stack(restore_model(run_dir).topologies(), tdir)
  return topology_lib.load_stack(tdir)


def _row(summary: dict[str, Any], run_dir: str) -> dict[str, Any]:
  m = analysis.load_metrics(run_dir)
  curve = [m[e]["test_acc"] for e in sorted(m)]
  from snn_jax.reproduce.alford2019 import max_drop
  return {**_common.run_row(summary),
          "final_val_acc": summary.get("final_val_acc"),
          "max_drop": max_drop(curve), "error": ""}


def _hidden_stack(kind: str, widths: list[int], value, seed: int):
  """The sparse hidden layers: a RadiX-Net (``value`` a ``RADIXNETS``
  label; widths N'·B with N' = 100, the first truncated to ``widths[0]``
  inputs) or independent Bernoulli(``value``) masks."""
  if kind == "radixnet":
    dense_widths = RADIXNETS[value]
    return topology_lib.make_stack(
        "radixnet", [widths[0]] + [100 * b for b in dense_widths[1:]],
        radices=[[10, 10]], truncate_inputs=True)
  return topology_lib.make_stack("erdos_renyi", widths, density=value,
                                 seed=seed)


def _seed_rows(cfg: AlfordPaperConfig, seed: int, workdir: str, ds,
               report_only: bool):
  base = dataclasses.replace(cfg.base, seed=seed)
  n_classes = ds.num_classes
  widths = [ds.input_dim, *base.hidden, n_classes]
  rows: list[dict[str, Any]] = []

  def record(arm, param, fn):
    try:
      row = _common.guarded(fn)
    except _common.NotFinished:
      return {"error": "not finished"}
    row.update(model="lenet300", arm=arm, param=param, seed=seed)
    rows.append(row)
    print(f"alford2019 paper: seed {seed} {arm} {param}: "
          f"{row.get('final_test_acc', row.get('error'))}", flush=True)
    return row

  dense_dir = _run_dir(workdir, seed, "dense")
  dense_cfg = dataclasses.replace(base, topology="dense", density=None)
  needs_dense = any(a in cfg.arms for a in ("dense", "one_time_retrained"))

  def dense():
    return _row(_common.train(dense_cfg, dense_dir, ds, report_only=report_only),
                dense_dir)
  dense_row = record("dense", None, dense) if needs_dense else {}

  def retrain(stack, rdir):
    s = _common.train_stack(base, stack, rdir, ds, seed=seed,
                            report_only=report_only)
    row = _row(s, os.path.join(rdir, "train"))
    row["weight_density"] = s["density"]
    return row

  for sp in cfg.sparsities:
    if "one_time_retrained" in cfg.arms:
      def one_time(sp=sp):
        if dense_row.get("error"):
          raise ValueError(f"the dense run failed: {dense_row['error']}")
        from snn_jax.sparse_training import prune_stack
        stack = prune_stack(_dense_weights(dense_dir), 1 - sp, scope="layer")
        return retrain(stack, _run_dir(workdir, seed, f"one_time_s{sp:g}"))
      record("one_time_retrained", sp, one_time)
    if any(a in cfg.arms for a in ("iterative_pruned", "iterative_retrained")):
      gdir = _run_dir(workdir, seed, f"gradual_s{sp:g}")
      gcfg = dataclasses.replace(
          dense_cfg, sparse_training="prune", prune_density=1 - sp,
          prune_begin_step=cfg.prune_begin_step,
          prune_end_step=cfg.prune_end_step, update_every=cfg.prune_every)

      def gradual(gcfg=gcfg, gdir=gdir):
        s = _common.train(gcfg, gdir, ds, report_only=report_only)
        _final_topology(gdir)
        row = _row(s, gdir)
        row["weight_density"] = s["density"]
        return row
      pruned_row = record("iterative_pruned", sp, gradual)
      if "iterative_retrained" in cfg.arms:
        def gradual_retrained(sp=sp, gdir=gdir, pruned_row=pruned_row):
          if pruned_row.get("error"):
            raise ValueError(f"the pruning run failed: {pruned_row['error']}")
          return retrain(_final_topology(gdir),
                         _run_dir(workdir, seed, f"gradual_retrained_s{sp:g}"))
        record("iterative_retrained", sp, gradual_retrained)
  if "random" in cfg.arms:
    for d in cfg.random_densities:
      record("random", d, lambda d=d: retrain(
          _common.with_dense_output(_hidden_stack("random", widths[:-1], d, seed),
                                    n_classes),
          _run_dir(workdir, seed, f"random_d{d:g}")))
  if "wider" in cfg.arms:
    for r in cfg.widen:
      wide = [widths[0], widths[1] * r, widths[2]]
      record("wider", r, lambda r=r, wide=wide: retrain(
          _common.with_dense_output(_hidden_stack("random", wide, 1 / r, seed),
                                    n_classes),
          _run_dir(workdir, seed, f"wider_x{r}")))
  if "radixnet" in cfg.arms:
    for label in cfg.radixnets:
      def radix(label=label):
        hidden = _hidden_stack("radixnet", [widths[0], 0, 0], label, seed)
        return retrain(_common.with_dense_output(hidden, n_classes),
                       _run_dir(workdir, seed, f"radixnet_{label}"))
      record("radixnet", label, radix)
  return rows


def planned_runs(cfg: AlfordPaperConfig) -> int:
  """How many training runs the configuration holds."""
  per_seed = (any(a in cfg.arms for a in ("dense", "one_time_retrained"))
              + len(cfg.sparsities) * sum(a in cfg.arms for a in (
                  "one_time_retrained", "iterative_retrained"))
              + len(cfg.sparsities) * any(a in cfg.arms for a in (
                  "iterative_pruned", "iterative_retrained"))
              + len(cfg.random_densities) * ("random" in cfg.arms)
              + len(cfg.widen) * ("wider" in cfg.arms)
              + len(cfg.radixnets) * ("radixnet" in cfg.arms))
  return per_seed * len(cfg.seeds)


def side_by_side(rows) -> list[dict[str, Any]]:
  """One row per configuration of the authors' sheet: the paper's number,
  ours (mean and 95% t interval over seeds), and whether they agree
  (``AGREEMENT_MARGIN``)."""
  out = []
  for (arm, param), paper in PAPER_LENET300.items():
    vals = [r["final_test_acc"] for r in _common.ok_rows(rows)
            if r["arm"] == arm and r["param"] == param]
    ci = _common.mean_ci(vals)
    if ci["n"] == 0:
      verdict = "not run"
    elif ci["low"] - AGREEMENT_MARGIN <= paper <= ci["high"] + AGREEMENT_MARGIN:
      verdict = "agree"
    else:
      verdict = "ours higher" if ci["mean"] > paper else "ours lower"
    out.append({"model": "lenet300", "arm": arm, "param": param,
                "paper": paper, "mean": ci["mean"], "ci_low": ci["low"],
                "ci_high": ci["high"], "std": ci["std"], "runs": ci["n"],
                "verdict": verdict})
  return out


DEVIATIONS = (
    "test accuracy is measured after every epoch (550 steps), not every 200 "
    "steps; max_drop (instability) is computed on that per-epoch curve",
    "55 epochs = 30,250 SGD steps for every run (the sheet: 10,000-30,000 "
    "steps, not saying which run used how many)",
    "three seeds per configuration where the sheet reports single runs",
    "one gradual-pruning run per target sparsity (the authors' code can also "
    "save the masks of one run as it passes each level)",
    "LeNet-5 (TensorFlow-tutorial variant) not yet run at paper scale",
)


def run(cfg: AlfordPaperConfig, workdir: str, *, dataset=None,
        report_only: bool = False) -> dict[str, Any]:
  """Runs (or resumes) every arm and seed into ``workdir/runs``; writes
  ``paper_runs.csv/json``, ``side_by_side.csv``, ``summary.json``,
  ``provenance.json`` and ``accuracy_vs_sparsity.png``. ``report_only``
  trains nothing: the files report the runs that have finished, and
  ``summary["unfinished"]`` counts the others."""
  os.makedirs(workdir, exist_ok=True)
  ds = cfg.base.with_validation(dataset or cfg.base.load_dataset())
  prov = _common.Provenance("alford2019 (paper scale)", cfg, ds)
  rows = []
  for seed in cfg.seeds:
    rows += _seed_rows(cfg, seed, workdir, ds, report_only)
  analysis.write_rows(rows, workdir, "paper_runs")
  table = side_by_side(rows)
  analysis.write_rows(table, workdir, "side_by_side")
  stats = _common.group_stats(rows, ("arm", "param"))
  drops = _common.group_stats(rows, ("arm", "param"), "max_drop")
  for s, d in zip(stats, drops):
    s["max_drop_mean"] = d["mean"]
  summary = {"side_by_side": table, "accuracy": stats,
             "agreement_margin": AGREEMENT_MARGIN,
             "deviations": list(DEVIATIONS),
             "runs_finished": len(rows), "runs_planned": planned_runs(cfg),
             "failed": [{k: r[k] for k in ("arm", "param", "seed", "error")}
                        for r in rows if r["error"]]}
  plot(table, workdir)
  summary["train_seconds_of_finished_runs"] = float(sum(
      r.get("train_seconds") or 0.0 for r in _common.ok_rows(rows)))
  summary["provenance"] = prov.write(workdir, report_only=report_only)
  _common.write_summary(summary, workdir)
  return summary


def plot(table, out_dir: str) -> None:
  """``accuracy_vs_sparsity.png``: ours (mean, 95% interval) and the
  paper's number per configuration, one panel per arm group."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  groups = (("pruning", ("one_time_retrained", "iterative_pruned",
                         "iterative_retrained"), "sparsity"),
            ("random", ("random",), "density"),
            ("wider", ("wider",), "width factor (density 1/r)"))
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
  colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for ax, (title, arms, xlabel) in zip(axes, groups):
    for k, arm in enumerate(arms):
      ss = sorted((t for t in table if t["arm"] == arm and t["runs"]),
                  key=lambda t: t["param"])
      if not ss:
        continue
      x = [t["param"] for t in ss]
      _common.errorbar_ci(ax, x, ss, marker="o", color=colours[k],
                          label=f"{arm} (ours)")
      ax.plot(x, [t["paper"] for t in ss], "x--", color=colours[k],
              label=f"{arm} (paper)")
    dense = [t for t in table if t["arm"] == "dense" and t["runs"]]
    if dense:
      ax.axhspan(dense[0]["ci_low"], dense[0]["ci_high"], color="grey",
                 alpha=0.3, label="dense (ours, 95% CI)")
      ax.axhline(dense[0]["paper"], color="grey", ls=":", label="dense (paper)")
    if title == "pruning":
      ax.set_xscale("logit")
    elif title == "random":
      ax.set_xscale("log")
      for t in table:
        if t["arm"] == "radixnet" and t["param"] == "0.1" and t["runs"]:
          ax.errorbar([0.1], [t["mean"]], yerr=[[t["mean"] - t["ci_low"]],
                      [t["ci_high"] - t["mean"]]], fmt="s", color="black",
                      label="RadiX-Net 0.1 (ours)")
          ax.plot([0.1], [t["paper"]], "D", mfc="none", color="black",
                  label="RadiX-Net 0.1 (paper)")
    else:
      ax.set_xscale("log")
    ax.set_title(f"LeNet-300-100, {title}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("final test accuracy")
    ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "accuracy_vs_sparsity.png"), dpi=110)
  plt.close(fig)
