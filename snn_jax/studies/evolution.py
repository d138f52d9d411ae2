"""Topology evolution (Liu et al. 2020, arXiv:2006.14085): one run per
seed with topology snapshots every epoch, then NNSTD between the epochs of
each run and between the runs, accuracy against NNSTD and the input-degree
evolution (:func:`snn_jax.analysis.evolution_report`).

Layout under the workdir::

  seed_<s>/              each run (train_and_evaluate, snapshots kept)
  analysis/              the evolution report (CSV, JSON, plots)
  evolution_runs.csv     one row per run; summary.json, provenance.json
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from snn_jax import analysis
from snn_jax.studies import _runs
from snn_jax.studies._study import Study, run_study
from snn_jax.training import TrainConfig


@dataclasses.dataclass(frozen=True)
class EvolutionConfig:
  """Attributes:
    base: the training setup (typically ``sparse.method="set"``); its seed
      is replaced by each of ``seeds`` and snapshots are switched on.
    seeds: one run per seed.
    max_epochs: snapshots compared per run (evenly spaced).
    degree_layer: the layer whose input degrees are followed.
    overwrite: retrain a run whose workdir holds a different config
      (``train.py --overwrite``) instead of refusing.
  """
  base: TrainConfig
  seeds: tuple[int, ...] = (0, 1, 2)
  max_epochs: int = 12
  degree_layer: int = 0
  overwrite: bool = False

  def __post_init__(self):
    if not self.seeds or len(set(self.seeds)) != len(self.seeds):
      raise ValueError(f"need distinct seeds, got {self.seeds}")
    if self.max_epochs < 2:
      raise ValueError(f"max_epochs must be >= 2, got {self.max_epochs}")
    if self.degree_layer < 0:
      raise ValueError(f"degree_layer must be >= 0, got {self.degree_layer}")


def run_dir(workdir: str, seed: int) -> str:
  return os.path.join(workdir, f"seed_{seed}")


def evolution_rows(cfg: EvolutionConfig, workdir: str, ds
                   ) -> list[dict[str, Any]]:
  """Trains (or finds finished) one run per seed, snapshots every epoch."""
  base = cfg.base.override({"run.snapshot_topologies": True})
  rows = []
  for seed in cfg.seeds:
    rdir = run_dir(workdir, seed)
    row = _runs.guarded(lambda: _runs.run_row(_runs.train(
        base.override({"run.seed": seed}), rdir, ds,
        overwrite=cfg.overwrite)))
    rows.append({"seed": seed, "run": rdir, **row})
  return rows


def evolution_statistics(cfg: EvolutionConfig, rows, workdir: str
                         ) -> dict[str, Any]:
  """The evolution report of the finished runs (``workdir/analysis``), or
  None while none has finished."""
  done = [r["run"] for r in _runs.ok_rows(rows)]
  report = (analysis.evolution_report(
      done, os.path.join(workdir, "analysis"), max_epochs=cfg.max_epochs,
      degree_layer=cfg.degree_layer) if done else None)
  return {"evolution": report}


EVOLUTION = Study(
    name="evolution", rows=evolution_rows, statistics=evolution_statistics,
    schema=("evolution",), rows_file="evolution_runs", failed_keys=("seed",))


def run_evolution(cfg: EvolutionConfig, workdir: str, *,
                  dataset=None) -> dict[str, Any]:
  """Runs the seeds (:func:`evolution_rows`) and the report on the study
  skeleton; returns the summary (``summary["evolution"]`` is the report)."""
  return run_study(EVOLUTION, cfg, workdir, dataset=dataset)
