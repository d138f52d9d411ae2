"""Per-epoch metric files in a workdir: ``metrics.jsonl`` and ``metrics.csv``
(the same rows), written by process 0 only."""

from __future__ import annotations

import csv
import json
import os
from typing import Any

import jax


class MetricWriter:
  """Appends one row per call to ``metrics.jsonl`` and ``metrics.csv``.

  On restart it keeps the rows of epochs before ``resume_epoch`` and drops
  later ones (they belonged to a run that was killed before checkpointing).
  """

  def __init__(self, workdir: str, resume_epoch: int = 0):
    self.jsonl = os.path.join(workdir, "metrics.jsonl")
    self.csv = os.path.join(workdir, "metrics.csv")
    self.rows: list[dict[str, Any]] = []
    if os.path.exists(self.jsonl):
      with open(self.jsonl) as f:
        self.rows = [json.loads(l) for l in f if l.strip()]
      self.rows = [r for r in self.rows if r.get("epoch", 0) < resume_epoch]
    self._rewrite()

  def _rewrite(self) -> None:
    if jax.process_index() != 0:
      return
    with open(self.jsonl, "w") as f:
      for r in self.rows:
        f.write(json.dumps(r) + "\n")
    keys: list[str] = []
    for r in self.rows:
      keys += [k for k in r if k not in keys]
    with open(self.csv, "w", newline="") as f:
      w = csv.DictWriter(f, fieldnames=keys)
      w.writeheader()
      w.writerows(self.rows)

  def write(self, row: dict[str, Any]) -> None:
    self.rows.append(row)
    self._rewrite()
