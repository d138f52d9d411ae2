"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune",
the TensorFlow model-pruning library Alford et al. 2019 used), and the
pruned topology stack of a network's dense weights (:func:`prune_stack`,
Alford et al.'s pruning-derived topologies; the train-dense, prune, retrain
pipeline that uses it is a study, :func:`snn_jax.studies.prune_and_retrain`).

Every ``update_every`` steps from ``prune_begin_step`` to
``prune_end_step`` each layer keeps its ``(1 - s_t)·n_in·n_out``
largest-magnitude weights, ``s_t = s_f (1 - (1 - p)³)`` with ``p`` the
fraction of the way from begin to end and ``s_f = 1 - prune_density`` (the
initial sparsity is 0; the end step always updates, so the target is
reached). Nothing regrows. nnzb stays fixed: pruned blocks stay stored, at
zero, marked in ``SparseOptimizer.alive`` and masked (their moments too)
after every step, so shapes never change and the step never recompiles;
:meth:`SparseOptimizer.kept_topologies` gives the blocks left.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from snn_jax.sparse_training import _blocks
from snn_jax.sparse_training._config import SparseTrainingConfig
from snn_jax.sparse_training._method import Method, register


def blocks_to_prune(nnzb: int, positions: int, sparsity: float) -> int:
  """How many of a layer's ``nnzb`` blocks gradual pruning removes to reach
  ``sparsity`` of its ``positions`` (all block positions), at least one
  block always kept."""
  keep = positions - int(round(sparsity * positions))
  return max(nnzb - max(keep, 1), 0)


class PruneRules(Method):
  """Gradual pruning's update of one layer: the already pruned blocks
  first, then the smallest-norm ones, until ``k`` are pruned in all."""
  name = "prune"
  keeps_alive_mask = True

  def check(self, config: SparseTrainingConfig) -> None:
    if config.prune_density is None or not 0.0 < config.prune_density < 1.0:
      raise ValueError(f"gradual pruning needs prune_density in (0, 1) (the "
                       f"fraction of weights kept), got {config.prune_density}")
    if config.prune_end_step is None or not (
        0 <= config.prune_begin_step < config.prune_end_step):
      raise ValueError(
          f"gradual pruning needs 0 <= prune_begin_step < prune_end_step, got "
          f"{config.prune_begin_step} and {config.prune_end_step}")
    if config.update_every < 1:
      raise ValueError("gradual pruning needs update_every >= 1 (steps "
                       "between mask updates, e.g. 200)")

  def update_steps(self, config, total_steps, steps_per_epoch):
    begin, end = config.prune_begin_step, config.prune_end_step
    steps = {*range(begin, end + 1, config.update_every), end}
    return np.array(sorted(s for s in steps if s >= 1), np.int64)

  def amount_at(self, config, step, total_steps):
    begin, end = config.prune_begin_step, config.prune_end_step
    p = min(max((step - begin) / (end - begin), 0.0), 1.0)
    return (1.0 - config.prune_density) * (1.0 - (1.0 - p) ** 3)

  def blocks_per_update(self, amount, nnzb, positions):
    return blocks_to_prune(nnzb, positions, amount)

  def rewire_layer(self, plan, layer, inputs):
    drop = _blocks.magnitude_drop(layer["values"], inputs.k,
                                  keep_first=layer["alive"])
    new = dict(layer, alive=~drop,
               values=_blocks.masked(layer["values"], ~drop),
               moments=[_blocks.masked(m, ~drop) for m in layer["moments"]])
    return new, jnp.sum(drop).astype(jnp.int32)


PRUNE = register(PruneRules())


def prune(*, density: float, begin_step: int, end_step: int,
          update_every: int = 200, total_steps: int | None = None):
  """Gradual magnitude pruning (Zhu & Gupta 2017) to ``density`` of every
  layer's dense ``n_in·n_out`` between ``begin_step`` and ``end_step``.
  Returns a :class:`~snn_jax.sparse_training.DynamicSparsity`."""
  from snn_jax.sparse_training._optimizer import DynamicSparsity
  return DynamicSparsity(SparseTrainingConfig(
      method="prune", zeta=0.0, update_every=update_every,
      prune_density=density, prune_begin_step=begin_step,
      prune_end_step=end_step),
      total_steps if total_steps is not None else end_step)


def prune_stack(weights: dict[str, np.ndarray], density: float, *,
                scope: str = "layer", block_size: int | list[int] = 1):
  """The pruned topology stack of a network's dense weights
  (``SparseMLP.dense_weights()`` format: ``layer_<l>_weight``)."""
  from snn_jax import topology
  mats = []
  while f"layer_{len(mats)}_weight" in weights:
    mats.append(np.asarray(weights[f"layer_{len(mats)}_weight"]))
  if not mats:
    raise ValueError("weights hold no layer_0_weight")
  widths = [mats[0].shape[0]] + [m.shape[1] for m in mats]
  return topology.make_stack("pruned", widths, density=density,
                             block_size=block_size, weights=mats, scope=scope)
