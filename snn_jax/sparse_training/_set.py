"""SET, Sparse Evolutionary Training (Mocanu et al., "Scalable training of
artificial neural networks with adaptive sparse connectivity inspired by
network science", Nature Communications 2018; the method Liu et al. 2020,
arXiv:2006.14085, analyse).

Start from Erdős–Rényi(ε); at every update each layer removes the fraction
ζ of its smallest positive and largest negative weights (:func:`set_drop`)
and regrows as many at uniformly random empty positions
(:func:`grow_random`). Regrown weights are drawn from N(0, 0.1²), as the
authors' truly-sparse reference code draws them (``regrow_init=
"set_normal"``). Above block size 1 whole blocks move, scored by their
Frobenius norm (*block SET*), so dynamic training keeps the block kernels.
The schedule (every ``update_every`` steps, or after every epoch but the
last) is :class:`~snn_jax.sparse_training._method.DropAndGrow`'s.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from snn_jax.sparse_training import _blocks
from snn_jax.sparse_training._config import SparseTrainingConfig
from snn_jax.sparse_training._method import DropAndGrow, register

def set_drop(values: jax.Array, zeta: jax.Array) -> jax.Array:
  """SET's drop rule (Mocanu et al. 2018), bool[nnzb]: at block size 1 the
  ``round(ζ·n₊)`` non-negative weights and ``round(ζ·n₋)`` negative weights
  closest to zero (ties: lower index); above it the ``round(ζ·nnzb)``
  blocks of smallest norm. ``zeta`` may be traced."""
  nnzb, bs = values.shape[0], values.shape[-1]
  if bs > 1:
    return _blocks.magnitude_drop(values, jnp.round(
        jnp.asarray(zeta, jnp.float32) * nnzb).astype(jnp.int32))
  w = values.reshape(-1).astype(jnp.float32)
  negative = w < 0
  rank = _blocks.rank(negative.astype(jnp.int32), jnp.abs(w))
  zeta = jnp.asarray(zeta, jnp.float32)
  n_pos = jnp.sum(~negative).astype(jnp.int32)
  k_pos = jnp.round(zeta * n_pos.astype(jnp.float32)).astype(jnp.int32)
  k_neg = jnp.round(zeta * (nnzb - n_pos).astype(jnp.float32)).astype(
      jnp.int32)
  return jnp.where(negative, rank - n_pos < k_neg, rank < k_pos)

def candidate_count(k_max: int, density: float) -> int:
  """How many random positions :func:`grow_random` draws for ``k_max``
  blocks on a grid filled to ``density``: four times the expected need,
  plus slack."""
  need = k_max / max(1.0 - density, 1e-3)
  return int(4 * need) + 64

def grow_random(bits: jax.Array, row_idx: jax.Array, col_idx: jax.Array,
                grid: tuple[int, int], k_max: int, k: jax.Array
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """SET's growth: up to ``k`` distinct empty block positions, uniformly
  at random. ``bits`` (uint32[2, n_candidates], from ``jax.random.bits``)
  gives ``n_candidates`` uniform draws; the first ``k`` that are empty and
  not drawn before are taken, which is uniform sampling without replacement
  over the empty positions. (A draw is its bits modulo the grid side: a
  bias below n / 2**32, none where n divides 2**32.)

  Returns ``(rows, cols, found)``: int32[k_max] with the first ``found``
  entries valid; ``found = min(k, empty draws)``.
  """
  n_rb, n_cb = grid
  n_candidates = bits.shape[1]
  r = (bits[0] % jnp.uint32(n_rb)).astype(jnp.int32)
  c = (bits[1] % jnp.uint32(n_cb)).astype(jnp.int32)
  # One sort of the stored blocks and the draws by (row, col, stored
  # first): a draw is fresh where it is the first of its position.
  nnzb = row_idx.shape[0]
  tag = jnp.concatenate([jnp.zeros(nnzb, jnp.int32),
                         jnp.ones(n_candidates, jnp.int32)])
  index = jnp.concatenate([jnp.full(nnzb, n_candidates, jnp.int32),
                           jnp.arange(n_candidates, dtype=jnp.int32)])
  sr, sc, st, si = lax.sort(
      (jnp.concatenate([row_idx, r]), jnp.concatenate([col_idx, c]), tag,
       index), num_keys=4)
  first = jnp.concatenate([jnp.ones(1, bool),
                           (sr[1:] != sr[:-1]) | (sc[1:] != sc[:-1])])
  fresh = jnp.zeros(n_candidates, bool).at[si].set(first & (st == 1),
                                                   mode="drop")
  slot = jnp.cumsum(fresh.astype(jnp.int32)) - 1
  take = fresh & (slot < k)
  slot = jnp.where(take, slot, k_max)
  rows = jnp.zeros(k_max, jnp.int32).at[slot].set(r, mode="drop")
  cols = jnp.zeros(k_max, jnp.int32).at[slot].set(c, mode="drop")
  return rows, cols, jnp.minimum(k, jnp.sum(fresh)).astype(jnp.int32)

class SetRules(DropAndGrow):
  """SET's update of one layer: :func:`set_drop`, then :func:`grow_random`
  into the positions empty before the update, as many as were dropped."""
  name = "set"
  draws_positions = True

  def candidates(self, k_max, density):
    return candidate_count(k_max, density)

  def k_max(self, k, nnzb, n_empty):
    # At block size 1 the count is split by sign: one more at most.
    return min(int(k.max(initial=0)) + 1, nnzb, n_empty)

  def rewire_layer(self, plan, layer, inputs):
    values = layer["values"]
    drop = set_drop(values, inputs.amount)
    if plan.n_empty < plan.nnzb:  # Nowhere to grow that many: drop fewer.
      drop = jnp.where(jnp.sum(drop) > plan.n_empty,
                       _blocks.magnitude_drop(values, plan.n_empty), drop)
    rows, cols, found = grow_random(
        inputs.position_bits, layer["row_idx"], layer["col_idx"], plan.grid,
        plan.k_max, jnp.sum(drop).astype(jnp.int32))
    # Fewer empty draws than drops (a nearly full layer): keep the dropped
    # blocks of largest norm, so drops and growths match.
    drop = drop & (_blocks.rank((~drop).astype(jnp.int32),
                                _blocks.block_norms(values)) < found)
    return self.regrow(plan, layer, drop, rows, cols, inputs), found

SET = register(SetRules())

def set(*, total_steps: int, zeta: float = 0.3, update_every: int = 100,
        regrow_init: str | None = None, zeta_schedule: str | None = None,
        end_fraction: float | None = None, seed: int = 0,
        steps_per_epoch: int | None = None):
  """SET (Mocanu et al. 2018); block SET at block size > 1. Regrown weights
  from N(0, 0.1²) unless ``regrow_init`` says otherwise. ``update_every=0``
  rewires after every epoch but the last (give ``steps_per_epoch``; call
  ``SparseOptimizer.rewire`` after the epoch's evaluation).
  Returns a :class:`~snn_jax.sparse_training.DynamicSparsity`."""
  from snn_jax.sparse_training._optimizer import DynamicSparsity
  return DynamicSparsity(SparseTrainingConfig(
      method="set", zeta=zeta, update_every=update_every,
      regrow_init=regrow_init, zeta_schedule=zeta_schedule,
      end_fraction=end_fraction, seed=seed), total_steps,
      steps_per_epoch=steps_per_epoch)
