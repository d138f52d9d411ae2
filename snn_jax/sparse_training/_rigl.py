"""RigL, "Rigging the Lottery: Making All Tickets Winners" (Evci et al.,
ICML 2020).

Drop the ζ_t smallest-magnitude blocks and grow where the loss gradient
with respect to the dense weight is largest on the current batch
(:func:`grow_by_gradient`: ``Xᵀ·dY`` formed a few block rows at a time with
a running top-k, never whole). Grown weights start at zero; ζ_t follows a
cosine decay ζ/2·(1 + cos(π t / T_end)) and updates stop at
``end_fraction`` (0.75) of training. ``X`` and ``dY`` come from the growth
taps of :mod:`snn_jax.nn._taps`, so any model built of ``SparseDense``
layers can use it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from snn_jax.sparse_training import _blocks
from snn_jax.sparse_training._config import SparseTrainingConfig
from snn_jax.sparse_training._method import DropAndGrow, register

# The largest slice of ``Xᵀ·dY`` formed at once, in floats (64 MiB of f32).
GRADIENT_CHUNK_FLOATS = 1 << 24


def grow_by_gradient(x: jax.Array, dy: jax.Array, row_idx: jax.Array,
                     col_idx: jax.Array, row_ptr: jax.Array, block_size: int,
                     k_max: int, *, chunk_floats: int = GRADIENT_CHUNK_FLOATS
                     ) -> tuple[jax.Array, jax.Array]:
  """RigL's growth (Evci et al. 2020) without the dense gradient: the
  ``k_max`` empty block positions where the block norm of ``G = xᵀ·dy`` is
  largest, best first (ties: lower row-major position first, as the host
  rule). ``G`` is formed a few block rows at a time (at most
  ``chunk_floats`` entries) with a running top-k: memory O(chunk + k_max),
  never O(n_in·n_out). Each chunk costs one ``lax.top_k`` over the best
  so far and the chunk's scores (XLA's TopK, a partial sort), which on the
  2-core CPU is 6.6x faster than the host rule this replaced on a
  4096-wide layer and 1.2-1.6x slower on 16,384-65,536-wide ones
  (``benchmarks/rigl_growth.py``); a buffer that admits only scores above
  the last k-th best was slower still (``jnp.nonzero``'s scatter over
  every chunk).

  Args:
    x: float32[rows, n_in], the layer's inputs; dy: float32[rows, n_out],
      the loss gradient at its output.
    row_idx, col_idx, row_ptr: the stored blocks (CSR, see module doc).
    block_size, k_max: static.

  Returns:
    (rows, cols) int32[k_max], best first; take the first ``k``.
  """
  bs = block_size
  n_in, n_out = x.shape[1], dy.shape[1]
  n_rb, n_cb = n_in // bs, n_out // bs
  nnzb = row_idx.shape[0]
  rows_per_chunk = max(1, min(n_rb, chunk_floats // (bs * n_out)))
  n_chunks = -(-n_rb // rows_per_chunk)
  pad = n_chunks * rows_per_chunk * bs - n_in
  x = jnp.pad(x, ((0, 0), (0, pad)))
  stored_len = min(nnzb, rows_per_chunk * n_cb)
  local_r = jnp.repeat(jnp.arange(rows_per_chunk, dtype=jnp.int32), n_cb)
  local_c = jnp.tile(jnp.arange(n_cb, dtype=jnp.int32), rows_per_chunk)

  def chunk(best, i):
    best_score, best_r, best_c = best
    r0 = i * rows_per_chunk
    xs = lax.dynamic_slice_in_dim(x, r0 * bs, rows_per_chunk * bs, axis=1)
    g = jnp.dot(xs.T, dy, preferred_element_type=jnp.float32)
    score = jnp.sqrt(jnp.sum(
        g.reshape(rows_per_chunk, bs, n_cb, bs) ** 2, axis=(1, 3)))
    start = row_ptr[jnp.minimum(r0, n_rb)]
    end = row_ptr[jnp.minimum(r0 + rows_per_chunk, n_rb)]
    first = jnp.clip(start, 0, nnzb - stored_len)
    pos = first + jnp.arange(stored_len, dtype=jnp.int32)
    mine = (pos >= start) & (pos < end)
    sr = jnp.where(mine, row_idx[pos] - r0, rows_per_chunk)
    score = score.at[sr, col_idx[pos]].set(-jnp.inf, mode="drop")
    real = (r0 + jnp.arange(rows_per_chunk)) < n_rb
    score = jnp.where(real[:, None], score, -jnp.inf)
    cand = jnp.concatenate([best_score, score.reshape(-1)])
    top, at = lax.top_k(cand, k_max)
    cand_r = jnp.concatenate([best_r, r0 + local_r])
    cand_c = jnp.concatenate([best_c, local_c])
    return (top, cand_r[at], cand_c[at]), None

  init = (jnp.full(k_max, -jnp.inf, jnp.float32),
          jnp.zeros(k_max, jnp.int32), jnp.zeros(k_max, jnp.int32))
  (_, rows, cols), _ = lax.scan(chunk, init,
                                jnp.arange(n_chunks, dtype=jnp.int32))
  return rows, cols


class RiglRules(DropAndGrow):
  """RigL's update of one layer: the ``k`` smallest-norm blocks dropped,
  as many grown where the gradient's block norm is largest."""
  name = "rigl"
  needs_gradient = True
  default_regrow_init = "zero"
  default_zeta_schedule = "cosine"
  default_end_fraction = 0.75

  def rewire_layer(self, plan, layer, inputs):
    drop = _blocks.magnitude_drop(layer["values"], inputs.k)
    x, dy = inputs.gradient
    rows, cols = grow_by_gradient(
        x, dy, layer["row_idx"], layer["col_idx"], layer["row_ptr"],
        plan.block_size, plan.k_max, chunk_floats=inputs.chunk_floats)
    return (self.regrow(plan, layer, drop, rows, cols, inputs),
            jnp.asarray(inputs.k, jnp.int32))


RIGL = register(RiglRules())


def rigl(*, total_steps: int, zeta: float = 0.3, update_every: int = 100,
         end_fraction: float | None = None, zeta_schedule: str | None = None,
         regrow_init: str | None = None, seed: int = 0,
         chunk_floats: int = GRADIENT_CHUNK_FLOATS,
         steps_per_epoch: int | None = None):
  """RigL (Evci et al. 2020): cosine-decayed ζ, updates until
  ``end_fraction`` (0.75) of training, growth by gradient. The optimizer's
  ``update`` (or ``rewire``, with ``update_every=0``) then needs
  ``grow_loss``. Returns a
  :class:`~snn_jax.sparse_training.DynamicSparsity`."""
  from snn_jax.sparse_training._optimizer import DynamicSparsity
  return DynamicSparsity(SparseTrainingConfig(
      method="rigl", zeta=zeta, update_every=update_every,
      regrow_init=regrow_init, zeta_schedule=zeta_schedule,
      end_fraction=end_fraction, seed=seed), total_steps, chunk_floats,
      steps_per_epoch=steps_per_epoch)
