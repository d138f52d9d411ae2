"""Pruning-derived topologies: train dense, magnitude-prune, retrain.

Alford, Robinett, Milechin & Kepner, "Training Behavior of Sparse Neural
Network Topologies" (arXiv:1810.00299) compare such topologies with
RadiX-Nets; Frankle & Carbin's lottery tickets are the ``rewind`` variant
(retrain the pruned topology from the dense network's initial weights).

Pipeline (:func:`prune_and_retrain`), all under one workdir::

  init_weights.npz       the dense network's initial weights (θ0)
  dense/                 a train_and_evaluate run of the dense network
  round_<i>/topology/    the mask after pruning round i (layer_<l>.npz)
  round_<i>/start.npz    the weights round i retrains from (θ0 if rewind,
                         else the previous stage's trained weights)
  round_<i>/train/       a train_and_evaluate run of that topology
  pruned_topology/       the final mask: ``train.py --topology_dir=...``
  stages.csv/json        one row per stage (density, accuracy, nnz, time)
  summary.json           the stages, the final mask's folder, both configs;
  provenance.json        the data's fingerprint, versions, host

Round i keeps density ``d_i = d_final ** (i / iterations)`` of every layer
(``scope="layer"``) or of all weights together (``"global"``), ranking the
weights of the previous stage by magnitude (block Frobenius norm at block
size > 1). Pruned weights are exactly zero in the next ranking, so the
masks are nested: each round's topology is a subset of the previous one.
Every stage is a resumable train_and_evaluate run; a killed pipeline
started again with the same arguments skips finished stages. The pipeline
is a study on the common skeleton (:data:`PRUNING`), so a report-only pass
(``studies._runs.reporting_only``) reports the stages that have finished.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from snn_jax import nn, topology, training
from snn_jax.sparse_training import prune_stack
from snn_jax.studies import _runs
from snn_jax.studies._study import Study, run_study

SCOPES = ("layer", "global")


@dataclasses.dataclass(frozen=True)
class PruneConfig:
  """Attributes:
    density: final fraction of weights kept, in (0, 1).
    iterations: pruning rounds (1 = one-shot, more = iterative magnitude
      pruning with a geometric density schedule).
    scope: ``"layer"`` (every layer to the round's density) or ``"global"``
      (one magnitude threshold over all layers).
    rewind: retrain every round from the dense initial weights (lottery
      ticket) instead of from the previous stage's trained weights.
    dense_epochs, retrain_epochs: epochs of the dense run and of each
      retraining round (default: the training config's epochs).
  """
  density: float
  iterations: int = 1
  scope: str = "layer"
  rewind: bool = False
  dense_epochs: int | None = None
  retrain_epochs: int | None = None

  def __post_init__(self):
    if not 0.0 < self.density < 1.0:
      raise ValueError(f"prune density must be in (0, 1), got {self.density}")
    if self.iterations < 1:
      raise ValueError(f"iterations must be >= 1, got {self.iterations}")
    if self.scope not in SCOPES:
      raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")
    for name in ("dense_epochs", "retrain_epochs"):
      v = getattr(self, name)
      if v is not None and v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")

  def densities(self) -> list[float]:
    """The kept density after each round."""
    return [self.density ** ((i + 1) / self.iterations)
            for i in range(self.iterations)]


@dataclasses.dataclass(frozen=True)
class PruningStudyConfig:
  """One pruning pipeline: ``base`` is the training config (its topology
  fields are ignored for the dense run; its ``block_size`` is the pruning
  granularity), ``prune`` the pruning schedule."""
  base: "training.TrainConfig"
  prune: PruneConfig


def pipeline_rows(cfg: PruningStudyConfig, workdir: str, ds
                  ) -> list[dict[str, Any]]:
  """The pipeline's stages (module docstring), one row each, in order;
  finished stages are skipped. A stage that fails ends the pipeline (the
  next one starts from its weights); in a report-only pass the first
  unfinished stage is the last row."""
  config, prune = cfg.base, cfg.prune
  block_size = config.model.topology.block_size
  static = {"sparse.method": "static", "run.snapshot_topologies": False,
            "run.snapshot_epochs": ()}
  dense_cfg = config.override({
      "model.topology": topology.TopologyConfig("dense", block_size=block_size),
      "run.epochs": prune.dense_epochs or config.run.epochs, **static})
  init_path = os.path.join(workdir, "init_weights.npz")
  if not os.path.exists(init_path):
    if _runs.report_only_now():
      return [_unfinished("dense", 0, 1.0)]
    topos = training.build_topologies(dense_cfg, ds.input_dim, ds.num_classes)
    nn.save_dense_weights(training.build_model(dense_cfg, topos), init_path)
  dense_cfg = dense_cfg.override({"model.init_weights": init_path})
  dense_dir = os.path.join(workdir, "dense")
  try:
    s = _runs.train(dense_cfg, dense_dir, ds)
  except _runs.NotFinished:
    return [_unfinished("dense", 0, 1.0)]
  rows = [_row("dense", 0, 1.0, s)]
  weights = training.restore_model(dense_dir).dense_weights()
  for i, d in enumerate(prune.densities(), start=1):
    rdir = os.path.join(workdir, f"round_{i}")
    tdir = os.path.join(rdir, "topology")
    start = os.path.join(rdir, "start.npz")
    if not os.path.isdir(tdir):
      if _runs.report_only_now():
        return rows + [_unfinished(f"round_{i}", i, d)]
      stack = prune_stack(weights, d, scope=prune.scope,
                          block_size=block_size)
      os.makedirs(rdir, exist_ok=True)
      np.savez_compressed(start, **weights)
      topology.save_stack(stack, tdir)
    stack = topology.load_stack(tdir)
    round_cfg = config.override({
        "model.topology": topology.TopologyConfig(
            "pruned", density=d, block_size=block_size, directory=tdir),
        "model.init_weights": init_path if prune.rewind else start,
        "run.epochs": prune.retrain_epochs or config.run.epochs, **static})
    train_dir = os.path.join(rdir, "train")
    try:
      s = _runs.train(round_cfg, train_dir, ds)
    except _runs.NotFinished:
      return rows + [_unfinished(f"round_{i}", i, d)]
    model = training.restore_model(train_dir)
    if model.topologies() != stack:
      raise AssertionError(f"round {i}: the retrained network's mask differs "
                           "from the pruned topology")
    weights = model.dense_weights()
    rows.append(_row(f"round_{i}", i, d, s))
  topology.save_stack(stack, os.path.join(workdir, "pruned_topology"))
  return rows


def pipeline_statistics(cfg: PruningStudyConfig, rows, workdir: str
                        ) -> dict[str, Any]:
  """The stages (as the rows), where the final mask is (None until the
  last round has finished), the pruning and training configs."""
  done = len(_runs.ok_rows(rows)) == cfg.prune.iterations + 1
  return {"stages": rows,
          "pruned_topology": (os.path.join(workdir, "pruned_topology")
                              if done else None),
          "prune_config": dataclasses.asdict(cfg.prune),
          "train_config": cfg.base.to_dict()}


PRUNING = Study(
    name="pruning", rows=pipeline_rows, statistics=pipeline_statistics,
    schema=("stages", "pruned_topology", "prune_config", "train_config"),
    rows_file="stages", failed_keys=("stage",),
    load_dataset=lambda cfg: cfg.base.load_dataset().flattened())


def prune_and_retrain(config, prune: PruneConfig, workdir: str, *,
                      dataset=None) -> dict[str, Any]:
  """Runs the pipeline (module docstring) for ``config`` (a
  ``snn_jax.training.TrainConfig``; its topology fields are ignored for the
  dense run, its ``block_size`` is the pruning granularity) on the study
  skeleton. ``dataset`` overrides loading. Writes ``stages.csv/json`` (one
  row per stage), ``summary.json`` and ``provenance.json`` (with the
  data's fingerprint); returns the summary."""
  ds = dataset.flattened() if dataset is not None else None
  return run_study(PRUNING, PruningStudyConfig(config, prune), workdir,
                   dataset=ds)


def _unfinished(stage: str, round_: int, target: float) -> dict[str, Any]:
  return {"stage": stage, "round": round_, "target_density": target,
          "error": _runs.NOT_FINISHED}


def _row(stage: str, round_: int, target: float, s: dict) -> dict[str, Any]:
  return {"stage": stage, "round": round_, "target_density": target,
          "density": s["density"], "nnz_params": s["nnz_params"],
          "final_test_acc": s["final_test_acc"],
          "best_test_acc": s["best_test_acc"],
          "train_seconds": s["train_seconds"], "error": ""}
