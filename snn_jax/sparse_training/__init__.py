"""Topologies that change: the mechanisms of dynamic sparse training (SET,
RigL) at fixed nnzb, gradual magnitude pruning, and pruning-derived
topologies (Alford et al. 2019). Two ways in: ``SparseOptimizer`` with
``set(...)/rigl(...)/prune(...).wrap(optax_tx)`` rewires any NNX model on
device inside its jitted step (``_transform``); the training loop's
host-side ``Rewirer`` (``_dynamic``) does the same for ``SparseMLP``. Nothing here trains a network: the
training loop calls these, and the multi-run pipelines that use them
(train dense -> prune -> retrain) are in :mod:`snn_jax.studies`."""

from snn_jax.sparse_training._dynamic import (
    METHODS, REGROW_INITS, ZETA_SCHEDULES, Rewirer, SparseTrainingConfig,
    gradient_block_scores, layer_inputs_and_output_grads,
    remap_optimizer_state, rewire_layers)
from snn_jax.sparse_training._rewire import (
    Rewiring, block_norms, carry_over, grow_by_gradient, grow_by_score,
    grow_random,
    magnitude_drop, merge, set_drop)
from snn_jax.sparse_training._prune import prune_stack
from snn_jax.sparse_training._transform import (
    TRANSFORM_METHODS, DynamicSparsity, SparseOptimizer, SparseTx, prune,
    rigl, set)

from snn_jax.utils.moved import moved_to

__all__ = ["METHODS", "REGROW_INITS", "ZETA_SCHEDULES", "TRANSFORM_METHODS",
           "DynamicSparsity", "SparseOptimizer", "SparseTx", "prune", "rigl",
           "set",
           "Rewirer", "Rewiring", "SparseTrainingConfig", "block_norms",
           "carry_over", "gradient_block_scores", "grow_by_gradient",
           "grow_by_score", "layer_inputs_and_output_grads",
           "grow_random", "magnitude_drop", "merge",
           "prune_stack", "remap_optimizer_state", "rewire_layers", "set_drop"]


__getattr__ = moved_to(
    __name__, ("PruneConfig", "SCOPES", "prune_and_retrain"),
    "snn_jax.studies", "multi-run studies live above training; see "
    "ARCHITECTURE.md")
