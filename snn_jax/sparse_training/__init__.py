"""Topologies that change: dynamic sparse training (SET, RigL) at fixed
nnzb, gradual magnitude pruning, and pruning-derived topologies (Alford et
al. 2019).

One engine: :class:`SparseOptimizer` with
``set(...)/rigl(...)/prune(...).wrap(optax_tx)`` rewires any NNX model's
``SparseDense`` layers on device, inside its jitted step (or, with
``update_every=0``, after each epoch's evaluation through
``SparseOptimizer.rewire``). Each method is one file (``_set``, ``_rigl``,
``_prune``) registered by name (:func:`method_rules`); the block operations
they share are in ``_blocks``. Nothing here trains a network: the training
loop uses the engine, and the multi-run pipelines (train dense -> prune ->
retrain) are in :mod:`snn_jax.studies`."""

from snn_jax.sparse_training._blocks import (block_norms, carry_over,
                                             csr_metadata, magnitude_drop,
                                             merge)
from snn_jax.sparse_training._config import (METHODS, REGROW_INITS,
                                             SET_REGROW_STD, ZETA_SCHEDULES,
                                             SparseTrainingConfig)
from snn_jax.sparse_training._method import (DropAndGrow, LayerPlan, Method,
                                             UpdateInputs, method_rules,
                                             register, registered)
from snn_jax.sparse_training._optimizer import (DynamicSparsity,
                                                SparseOptimizer, SparseTx)
from snn_jax.sparse_training._prune import blocks_to_prune, prune, prune_stack
from snn_jax.sparse_training._rigl import (GRADIENT_CHUNK_FLOATS,
                                           grow_by_gradient, rigl)
from snn_jax.sparse_training._set import grow_random, set, set_drop

from snn_jax.utils.moved import moved_to

__all__ = ["METHODS", "REGROW_INITS", "SET_REGROW_STD", "ZETA_SCHEDULES",
           "GRADIENT_CHUNK_FLOATS",
           "DropAndGrow", "DynamicSparsity", "LayerPlan", "Method",
           "SparseOptimizer", "SparseTrainingConfig", "SparseTx",
           "UpdateInputs", "block_norms", "blocks_to_prune", "carry_over",
           "csr_metadata", "grow_by_gradient", "grow_random",
           "magnitude_drop", "merge", "method_rules", "prune", "prune_stack",
           "register", "registered", "rigl", "set", "set_drop"]


_REMOVED = ("Rewirer", "Rewiring", "rewire_layers", "remap_optimizer_state",
            "layer_inputs_and_output_grads", "gradient_block_scores",
            "grow_by_score", "TRANSFORM_METHODS")


def __getattr__(name: str):
  if name in _REMOVED:
    raise AttributeError(
        f"snn_jax.sparse_training.{name} was the host-side rewiring engine, "
        "removed: SparseOptimizer is the one engine (e.g. "
        "SparseOptimizer(model, sparse_training.set(total_steps=..., "
        "update_every=0, steps_per_epoch=...).wrap(optax.sgd(0.05, 0.9))), "
        "then optimizer.rewire(model) after each epoch)")
  return _moved(name)


_moved = moved_to(
    __name__, ("PruneConfig", "SCOPES", "prune_and_retrain"),
    "snn_jax.studies", "multi-run studies live above training; see "
    "ARCHITECTURE.md")
