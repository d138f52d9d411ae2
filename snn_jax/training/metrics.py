"""Per-epoch metric files in a workdir: ``metrics.jsonl`` and ``metrics.csv``
(the same rows), and TensorBoard event files under ``tensorboard/``
(tensorboardX: every numeric field of a row at its step, and the training
loss of every step), written by process 0 only."""

from __future__ import annotations

import csv
import json
import os
import re
import uuid
from typing import Any, Sequence

import jax

from snn_jax.topology import Topology
from snn_jax.utils.files import atomic_write


class MetricWriter:
  """Appends one row per call to ``metrics.jsonl`` and ``metrics.csv``.

  On restart it keeps the rows of epochs before ``resume_epoch`` and drops
  later ones (they belonged to a run that was killed before checkpointing).
  """

  def __init__(self, workdir: str, resume_epoch: int = 0, *,
               tensorboard: bool = True):
    self.jsonl = os.path.join(workdir, "metrics.jsonl")
    self.csv = os.path.join(workdir, "metrics.csv")
    self.rows: list[dict[str, Any]] = []
    if os.path.exists(self.jsonl):
      with open(self.jsonl) as f:
        self.rows = [json.loads(l) for l in f if l.strip()]
      self.rows = [r for r in self.rows if r.get("epoch", 0) < resume_epoch]
    self._rewrite()
    self._tb = None
    if tensorboard and jax.process_index() == 0:
      from tensorboardX import SummaryWriter
      # Events past the resume point belonged to a killed run: purged.
      resume_step = self.rows[-1]["step"] + 1 if self.rows else 0
      # tensorboardX names event files by the second and the host only: a
      # resumed run opening its writer within the same second as the first
      # would overwrite the first run's file. A random suffix keeps both.
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"),
                               purge_step=resume_step or None,
                               filename_suffix=f".{uuid.uuid4().hex[:12]}")

  def _rewrite(self) -> None:
    if jax.process_index() != 0:
      return
    with atomic_write(self.jsonl) as f:
      for r in self.rows:
        f.write(json.dumps(r) + "\n")
    keys: list[str] = []
    for r in self.rows:
      keys += [k for k in r if k not in keys]
    with atomic_write(self.csv, newline="") as f:
      w = csv.DictWriter(f, fieldnames=keys)
      w.writeheader()
      w.writerows(self.rows)

  def write(self, row: dict[str, Any],
            step_losses: Sequence[float] | None = None) -> None:
    """Appends ``row`` (one epoch; ``row["step"]`` its last step);
    ``step_losses`` are the epoch's per-step training losses, ending at
    that step (TensorBoard only)."""
    self.rows.append(row)
    self._rewrite()
    if self._tb is None:
      return
    step = int(row["step"])
    if step_losses is not None:
      first = step - len(step_losses) + 1
      for i, loss in enumerate(step_losses):
        self._tb.add_scalar("train/step_loss", float(loss), first + i)
    for key, value in row.items():
      if key not in ("epoch", "step") and isinstance(value, (int, float)) \
          and not isinstance(value, bool):
        self._tb.add_scalar(_tb_name(key), value, step)
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None


_TB_NAMES = {"train_loss": "loss/train", "test_loss": "loss/test",
             "val_loss": "loss/validation", "train_acc": "accuracy/train",
             "test_acc": "accuracy/test", "val_acc": "accuracy/validation",
             "lr": "train/lr", "nnz_params": "topology/nnz_params",
             "rewired_blocks": "topology/rewired_blocks"}


def _tb_name(key: str) -> str:
  """TensorBoard tag of a metrics-row field: grouped by kind, per-layer
  topology statistics under ``topology/layer<l>/``."""
  if key in _TB_NAMES:
    return _TB_NAMES[key]
  m = re.fullmatch(r"layer(\d+)_(.+)", key)
  if m:
    return f"topology/layer{m.group(1)}/{m.group(2)}"
  return f"epoch/{key}"


def plot_curves(rows: list[dict[str, Any]], path: str, title: str = "") -> None:
  """``curves.png``: training and held-out loss (left) and accuracy
  (right) against epoch, from the metrics rows of a run (validation too
  where the run has a validation part)."""
  if not rows:
    return
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  epochs = [r["epoch"] for r in rows]
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
  for key, label in (("train", "training (mean over the epoch)"),
                     ("test", "test"), ("val", "validation")):
    if f"{key}_loss" in rows[0]:
      ax_loss.plot(epochs, [r[f"{key}_loss"] for r in rows], marker=".",
                   label=label)
      ax_acc.plot(epochs, [r[f"{key}_acc"] for r in rows], marker=".",
                  label=label)
  ax_loss.set_ylabel("loss")
  ax_loss.set_yscale("log")
  ax_acc.set_ylabel("accuracy")
  for ax in (ax_loss, ax_acc):
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  # Fixed margins: tight_layout measured every tick label and took half of
  # this function's 0.4 s, which every run of a study pays.
  fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15,
                      top=0.86 if title else 0.95, wspace=0.25)
  fig.savefig(path, dpi=90)
  plt.close(fig)


def topology_stats(stack: list[Topology]) -> dict[str, float]:
  """Per-layer statistics of a dynamic run's topology after an epoch's
  updates (metrics row and TensorBoard): the spread of the output units'
  fan-in (``layer<l>_fan_in_std``; SET/RigL concentrate connections on
  useful inputs, Liu et al. 2020) and how many output units have no input
  left (``layer<l>_zero_fan_in``)."""
  out = {}
  for l, t in enumerate(stack):
    fan_in = t.fan_in()
    out[f"layer{l}_fan_in_std"] = float(fan_in.std())
    out[f"layer{l}_zero_fan_in"] = int((fan_in == 0).sum())
  return out
