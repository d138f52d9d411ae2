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
