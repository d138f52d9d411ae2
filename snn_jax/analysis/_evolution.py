"""How topologies evolve: NNSTD along training and between runs, and degree
distributions, from the per-epoch snapshots of training runs.

Liu et al. 2020 ("Topological Insights into Sparse Neural Networks",
arXiv:2006.14085) show with NNSTD that SET runs from different seeds end in
very different topologies of about the same accuracy, and that a run's
topology keeps moving away from its start; Mocanu et al. 2018 observe that
SET drives the input neurons' degrees from Erdős–Rényi's narrow binomial
toward a heavy tail (informative pixels gather connections). A run is a
``train_and_evaluate`` workdir trained with ``snapshot_topologies=True``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from typing import Any, Sequence

import numpy as np

from snn_jax.analysis._nnstd import nnstd
from snn_jax.topology import Topology, load_stack


def load_snapshots(workdir: str) -> dict[int, list[Topology]]:
  """epoch -> topology stack, from ``workdir/topologies/epoch_<e>/``
  (epoch 0 = at initialisation)."""
  root = os.path.join(workdir, "topologies")
  if not os.path.isdir(root):
    raise FileNotFoundError(
        f"{root} does not exist: train with snapshot_topologies=True "
        "(--snapshot_topologies) to record the topology every epoch")
  out = {}
  for name in os.listdir(root):
    m = re.fullmatch(r"epoch_(\d+)", name)
    if m:
      out[int(m.group(1))] = load_stack(os.path.join(root, name))
  if not out:
    raise FileNotFoundError(f"no epoch_<e> snapshots in {root}")
  return dict(sorted(out.items()))


def load_metrics(workdir: str) -> dict[int, dict[str, Any]]:
  """epoch -> metrics row, from ``workdir/metrics.jsonl``."""
  rows = {}
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        if line.strip():
          r = json.loads(line)
          rows[int(r["epoch"])] = r
  return rows


def nnstd_matrix(stacks: Sequence[Sequence[Topology]]) -> np.ndarray:
  """float64[n, n]: NNSTD between every pair of stacks (symmetrised as the
  mean of both directions, since the matching is computed from one side)."""
  n = len(stacks)
  d = np.zeros((n, n))
  for i in range(n):
    for j in range(i + 1, n):
      d[i, j] = d[j, i] = 0.5 * (nnstd(stacks[i], stacks[j]) +
                                 nnstd(stacks[j], stacks[i]))
  return d


def input_degrees(stack: Sequence[Topology], layer: int = 0) -> np.ndarray:
  """int[n_in]: number of connections of every input unit of ``layer``
  (its fan-out), the quantity Mocanu et al. plot for SET's input layer."""
  return np.asarray(stack[layer].fan_out(), dtype=np.int64)


def _subsample(epochs: list[int], max_epochs: int) -> list[int]:
  if len(epochs) <= max_epochs:
    return epochs
  idx = np.unique(np.linspace(0, len(epochs) - 1, max_epochs).round().astype(int))
  return [epochs[i] for i in idx]


def evolution_report(workdirs: Sequence[str], output_dir: str, *,
                     max_epochs: int = 12, degree_layer: int = 0,
                     plots: bool = True) -> dict[str, Any]:
  """NNSTD between epochs of every run and between the runs' final
  topologies, accuracy against NNSTD, and the input-degree evolution.

  Writes into ``output_dir``: ``nnstd_epochs_<run>.csv`` (pairwise NNSTD of
  up to ``max_epochs`` snapshots of each run), ``nnstd_runs.csv`` (final
  topologies), ``runs.csv`` (per run: final accuracy, NNSTD of the final
  topology to its start and mean NNSTD to the other runs), ``degrees.csv``
  (input-degree statistics per run and epoch), ``evolution_summary.json``
  and, with ``plots``, ``nnstd_heatmaps.png``, ``accuracy_vs_nnstd.png`` and
  ``degree_evolution.png``. Returns the summary dict.
  """
  if not workdirs:
    raise ValueError("evolution_report needs at least one run")
  os.makedirs(output_dir, exist_ok=True)
  names = [os.path.basename(os.path.normpath(w)) or w for w in workdirs]
  if len(set(names)) != len(names):
    names = [f"run_{i}" for i in range(len(workdirs))]
  snaps = [load_snapshots(w) for w in workdirs]
  metrics = [load_metrics(w) for w in workdirs]
  per_run_epochs, epoch_mats = [], []
  for name, snap in zip(names, snaps):
    epochs = _subsample(list(snap), max_epochs)
    mat = nnstd_matrix([snap[e] for e in epochs])
    per_run_epochs.append(epochs)
    epoch_mats.append(mat)
    _write_matrix(os.path.join(output_dir, f"nnstd_epochs_{name}.csv"),
                  [f"epoch_{e}" for e in epochs], mat)
  finals = [snap[max(snap)] for snap in snaps]
  run_mat = nnstd_matrix(finals)
  _write_matrix(os.path.join(output_dir, "nnstd_runs.csv"), names, run_mat)
  runs = []
  for i, (name, snap, m) in enumerate(zip(names, snaps, metrics)):
    last = max(snap)
    others = [run_mat[i, j] for j in range(len(names)) if j != i]
    runs.append({
        "run": name, "final_epoch": last,
        "final_test_acc": m.get(last, {}).get("test_acc"),
        "nnstd_final_to_start": epoch_mats[i][0, -1],
        "mean_nnstd_to_other_runs": float(np.mean(others)) if others else None})
  _write_rows(os.path.join(output_dir, "runs.csv"), runs)
  degree_rows = []
  for name, snap in zip(names, snaps):
    for e, stack in snap.items():
      deg = input_degrees(stack, degree_layer)
      degree_rows.append({
          "run": name, "epoch": e, "mean": float(deg.mean()),
          "std": float(deg.std()), "max": int(deg.max()),
          "zero_degree_units": int((deg == 0).sum()),
          "p99": float(np.percentile(deg, 99))})
  _write_rows(os.path.join(output_dir, "degrees.csv"), degree_rows)
  accs = [r["final_test_acc"] for r in runs if r["final_test_acc"] is not None]
  off_diag = run_mat[np.triu_indices(len(names), 1)]
  summary = {
      "runs": runs,
      "mean_nnstd_between_runs": float(off_diag.mean()) if off_diag.size else None,
      "final_test_acc_mean": float(np.mean(accs)) if accs else None,
      "final_test_acc_std": float(np.std(accs)) if accs else None,
      "degree_layer": degree_layer, "output_dir": output_dir,
      # Runs whose final snapshot repeats the one before (no rewiring after
      # the last epoch); the heat maps leave that snapshot out and say so.
      "final_snapshot_unchanged": [
          name for name, e, m in zip(names, per_run_epochs, epoch_mats)
          if _unchanged_last(e, m)]}
  with open(os.path.join(output_dir, "evolution_summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  if plots:
    _plot(output_dir, names, snaps, metrics, per_run_epochs, epoch_mats,
          run_mat, degree_layer)
  return summary


def _write_matrix(path, labels, mat):
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow([""] + list(labels))
    for lab, row in zip(labels, mat):
      w.writerow([lab] + [f"{v:.6f}" for v in row])


def _write_rows(path, rows):
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)


def _unchanged_last(epochs: list[int], mat: np.ndarray) -> bool:
  """Whether the last snapshot's topology equals the one before it (NNSTD
  exactly 0): no rewiring follows the final epoch, so with end-of-epoch
  updates the final two snapshots coincide."""
  return len(epochs) > 1 and mat[-1, -2] == 0.0


def _plot(output_dir, names, snaps, metrics, per_run_epochs, epoch_mats,
          run_mat, degree_layer):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.ticker import FormatStrFormatter, MaxNLocator

  n = len(names)
  fig, axes = plt.subplots(1, n + 1, figsize=(3.0 * (n + 1) + 1.0, 3.6),
                           squeeze=False, layout="constrained")
  dropped = []
  for ax, name, epochs, mat in zip(axes[0], names, per_run_epochs, epoch_mats):
    if _unchanged_last(epochs, mat):
      dropped.append(epochs[-1])
      epochs, mat = epochs[:-1], mat[:-1, :-1]
    im = ax.imshow(mat, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(epochs)), epochs, fontsize=7)
    ax.set_yticks(range(len(epochs)), epochs, fontsize=7)
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_title(f"run {name}: between epochs", fontsize=9)
  axes[0][0].set_ylabel("epoch", fontsize=8)
  ax = axes[0][n]
  im = ax.imshow(run_mat, vmin=0, vmax=1, cmap="viridis")
  ax.set_xticks(range(n), range(n), fontsize=7)
  ax.set_yticks(range(n), [f"{i}: {nm}" for i, nm in enumerate(names)],
                fontsize=7)
  ax.set_xlabel("run", fontsize=8)
  ax.set_title("between runs (final topologies)", fontsize=9)
  fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="NNSTD")
  if dropped:
    fig.text(0.01, 0.01, f"Final snapshot (epoch {max(dropped)}) not shown: "
             "no rewiring follows the last epoch, so it equals the snapshot "
             "before it.", fontsize=7)
  fig.savefig(os.path.join(output_dir, "nnstd_heatmaps.png"), dpi=110)
  plt.close(fig)

  fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
  for name, epochs, mat, m in zip(names, per_run_epochs, epoch_mats, metrics):
    xs = [mat[0, k] for k, e in enumerate(epochs) if e in m]
    ys = [m[e]["test_acc"] for e in epochs if e in m]
    a1.plot(xs, ys, "o-", label=name, ms=3)
  a1.set_xlabel("NNSTD to the run's initial topology")
  a1.set_ylabel("test accuracy")
  a1.set_title("along training (points: snapshot epochs)", fontsize=10)
  a1.legend(fontsize=7)
  finals = [m.get(max(s), {}).get("test_acc") for m, s in zip(metrics, snaps)]
  for i, name in enumerate(names):
    others = [run_mat[i, j] for j in range(n) if j != i]
    if others and finals[i] is not None:
      a2.scatter(np.mean(others), finals[i])
      a2.annotate(name, (np.mean(others), finals[i]), fontsize=7,
                  xytext=(4, 4), textcoords="offset points")
  a2.set_xlabel("mean NNSTD to the other runs' final topologies")
  a2.set_ylabel("final test accuracy")
  a2.set_title("between runs", fontsize=10)
  a2.margins(x=0.2, y=0.15)
  for ax in (a1, a2):
    ax.ticklabel_format(useOffset=False)
    ax.xaxis.set_major_locator(MaxNLocator(5))
  a2.xaxis.set_major_formatter(FormatStrFormatter("%.4f"))
  fig.savefig(os.path.join(output_dir, "accuracy_vs_nnstd.png"), dpi=110)
  plt.close(fig)

  fig, axes = plt.subplots(1, n, figsize=(3.8 * n, 3.4), squeeze=False,
                           sharey=True, layout="constrained")
  for ax, name, snap in zip(axes[0], names, snaps):
    epochs = list(snap)
    shown = sorted({epochs[0], epochs[len(epochs) // 2], epochs[-1]})
    degrees = {e: input_degrees(snap[e], degree_layer) for e in shown}
    lo = min(int(d.min()) for d in degrees.values())
    hi = max(int(d.max()) for d in degrees.values())
    bins = np.arange(lo, hi + 2) - 0.5  # one bin per integer degree
    for e in shown:
      ax.hist(degrees[e], bins=bins, histtype="step", label=f"epoch {e}")
    ax.set_xlabel(f"layer {degree_layer} input-unit degree")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"run {name}", fontsize=9)
    ax.legend(fontsize=7)
  axes[0][0].set_ylabel("units")
  fig.savefig(os.path.join(output_dir, "degree_evolution.png"), dpi=110)
  plt.close(fig)
