"""Topologies that change: dynamic sparse training (SET, RigL) at fixed nnzb
and pruning-derived topologies (Alford et al. 2019)."""

from snn_jax.sparse_training._dynamic import (
    METHODS, REGROW_INITS, ZETA_SCHEDULES, Rewirer, SparseTrainingConfig,
    gradient_block_scores, layer_inputs_and_output_grads,
    remap_optimizer_state, rewire_layers)
from snn_jax.sparse_training._rewire import (
    Rewiring, block_norms, carry_over, grow_by_gradient, grow_by_score,
    grow_random,
    magnitude_drop, merge, set_drop)
from snn_jax.sparse_training._prune import (SCOPES, PruneConfig, prune_and_retrain,
                                            prune_stack)

__all__ = ["METHODS", "REGROW_INITS", "SCOPES", "ZETA_SCHEDULES", "PruneConfig",
           "Rewirer", "Rewiring", "SparseTrainingConfig", "block_norms",
           "carry_over", "gradient_block_scores", "grow_by_gradient",
           "grow_by_score", "layer_inputs_and_output_grads",
           "grow_random", "magnitude_drop", "merge", "prune_and_retrain",
           "prune_stack", "remap_optimizer_state", "rewire_layers", "set_drop"]
