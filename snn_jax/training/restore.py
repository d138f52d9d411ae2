"""Checkpoints back into objects: ``restore_checkpoint`` (a run's model
and optimizer state from one epoch's checkpoint) and ``restore_model``
(the trained network a workdir holds, rebuilt from its config)."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snn_jax import topology as topology_lib
from snn_jax.nn import TopologyVar
from snn_jax.sparse import INDEX_FIELDS
from snn_jax.sparse_training import SparseOptimizer
from snn_jax.training.build import (build_model, build_optimizer,
                                    build_topologies, make_optimizer)
from snn_jax.training.checkpoint import Checkpointer
from snn_jax.training.config import TrainConfig, normalised_dict


def checkpoint_filter():
  return nnx.Any(nnx.Param, nnx.BatchStat, TopologyVar)


def restore_checkpoint(ckpt: Checkpointer, epoch: int, model, optimizer: nnx.Optimizer
             ) -> int:
  """Loads checkpoint ``epoch`` into model and optimizer; returns its epoch."""
  target = {"model": nnx.to_pure_dict(nnx.state(model, checkpoint_filter())),
            "opt": nnx.to_pure_dict(nnx.state(optimizer)),
            "epoch": 0}
  try:
    restored = ckpt.restore(epoch, jax.tree.map(ocp_abstract, target))
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(
        f"checkpoint {epoch} in {ckpt.directory} does not fit this run's "
        f"model and optimizer ({type(e).__name__}: {str(e)[:300]}). Runs "
        "whose connections changed on the host (SET, RigL and pruning of "
        "the MLP before the one rewiring engine, SparseOptimizer) or that "
        "were given topologies without recording them cannot be resumed or "
        "restored: rerun them (--overwrite)") from e
  ms = nnx.state(model, checkpoint_filter())
  nnx.replace_by_pure_dict(ms, restored["model"])
  nnx.update(model, ms)
  os_ = nnx.state(optimizer)
  nnx.replace_by_pure_dict(os_, restored["opt"])
  nnx.update(optimizer, os_)
  return int(restored["epoch"])


def restore_model(workdir: str, epoch: int | None = None):
  """The model a finished (or interrupted) run left in ``workdir``: rebuilt
  from its ``config.json`` and ``summary.json`` widths, loaded from the
  checkpoint of ``epoch`` (default: the latest), in eval mode. The topology
  is the checkpointed one, so SET/RigL runs give their evolved connections
  and pruning runs the blocks they kept (the pruned ones, stored at zero
  during training, are left out)."""
  paths = {n: os.path.join(workdir, n) for n in ("config.json", "summary.json")}
  for p in paths.values():
    if not os.path.exists(p):
      raise FileNotFoundError(f"{p} is missing: is {workdir!r} a finished "
                              "train_and_evaluate workdir?")
  with open(paths["config.json"]) as f:
    raw = json.load(f)
  # The starting weights only mattered at initialisation: the checkpoint
  # holds the trained ones, so a moved or deleted init file is no obstacle.
  nested = normalised_dict(raw)
  nested["model"]["init_weights"] = None
  config = TrainConfig.from_dict(nested)
  with open(paths["summary.json"]) as f:
    saved = json.load(f)
  # Summaries written before input_dim was recorded: the first width.
  input_dim = saved.get("input_dim", saved["widths"][0])
  recorded = os.path.join(workdir, "topology")
  if raw.get("given_topologies"):
    if not os.path.isdir(recorded):
      raise FileNotFoundError(
          f"{workdir!r} was trained on given topologies but holds no "
          f"record of them ({recorded}; runs from before given topologies "
          "were recorded did not write it): rerun it to restore its model")
    topologies = topology_lib.load_stack(recorded, chained=False)
  else:
    topologies = build_topologies(config, input_dim, saved["widths"][-1])
  model = build_model(config, topologies)
  ckpt = Checkpointer(workdir)
  try:
    epoch = ckpt.latest_epoch() if epoch is None else epoch
    if epoch is None:
      raise FileNotFoundError(f"no checkpoint in {ckpt.directory}")
    tx, _ = make_optimizer(config, 1)
    optimizer = build_optimizer(
        config, model, tx,
        steps_per_epoch_of(workdir) if config.sparse.dynamic else 1)
    restore_checkpoint(ckpt, epoch, model, optimizer)
  finally:
    ckpt.close()
  if getattr(optimizer, "alive", None) is not None:
    model = _without_pruned_blocks(config, model, optimizer)
  model.eval()
  return model


def _without_pruned_blocks(config: TrainConfig, model,
                           optimizer: SparseOptimizer):
  """A copy of a pruning run's ``model`` holding only its kept blocks
  (``optimizer.kept_topologies``), every other parameter as trained."""
  compact = build_model(config, optimizer.kept_topologies(model))
  trained = nnx.to_pure_dict(nnx.state(model, checkpoint_filter()))
  small = nnx.to_pure_dict(nnx.state(compact, checkpoint_filter()))
  for path, alive in zip(optimizer.layer_paths, optimizer.alive):
    keep = np.asarray(jax.device_get(alive.get_value()))
    full, kept = _at(trained, path), _at(small, path)
    for name in INDEX_FIELDS:
      full[name] = kept[name]
    full["values"] = jnp.asarray(np.asarray(full["values"])[keep])
  state = nnx.state(compact, checkpoint_filter())
  nnx.replace_by_pure_dict(state, trained)
  nnx.update(compact, state)
  return compact


def _at(tree: dict, path: tuple) -> dict:
  for key in path:
    tree = tree[key] if key in tree else tree[str(key)]
  return tree


def steps_per_epoch_of(workdir: str) -> int:
  """Optimizer steps per epoch of the run in ``workdir``: the first
  metrics row's ``step`` (written before any checkpoint)."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    first = json.loads(f.readline())
  return int(first["step"]) // int(first["epoch"])


def ocp_abstract(x):
  """ShapeDtypeStruct of an array leaf (plain Python values pass through)."""
  if isinstance(x, (jax.Array, np.ndarray)):
    return jax.ShapeDtypeStruct(x.shape, x.dtype)
  return x
