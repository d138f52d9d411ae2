"""The block operations every method shares, on device: pure ``jax.numpy``
at fixed shapes, so a rewiring runs inside a jitted step and never
retraces. The number of blocks to move, ``k``, is a traced integer
``<= k_max`` (a static bound), and every array keeps its size. Growth is
only ever at positions empty *before* the update; the merged blocks are
row-major sorted, each with the storage index it continues.

A layer is its CSR structure ``row_idx, col_idx`` (int32[nnzb], row-major
sorted), ``row_ptr`` (int32[n_row_blocks + 1]) and values
``[nnzb, bs, bs]``; see :mod:`snn_jax.sparse`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def block_norms(values: jax.Array) -> jax.Array:
  """float32[nnzb]: the Frobenius norm of every block."""
  v = values.astype(jnp.float32).reshape(values.shape[0], -1)
  return jnp.sqrt(jnp.sum(v * v, axis=1))


def rank(*keys: jax.Array) -> jax.Array:
  """int32[n]: each entry's position in the order of ``keys`` (the first
  key most significant), ties to the lower index."""
  n = keys[0].shape[0]
  index = jnp.arange(n, dtype=jnp.int32)
  order = lax.sort(tuple(keys) + (index,), num_keys=len(keys) + 1)[-1]
  return jnp.zeros(n, jnp.int32).at[order].set(index)


def magnitude_drop(values: jax.Array, k: jax.Array,
                   keep_first: jax.Array | None = None) -> jax.Array:
  """bool[nnzb]: the ``k`` blocks of smallest norm (ties: lower storage
  index first). With ``keep_first`` (bool[nnzb]), blocks where it is False
  come first whatever their norm (pruning: the already pruned)."""
  norms = block_norms(values)
  if keep_first is None:
    return rank(norms) < k
  return rank(keep_first.astype(jnp.int32), norms) < k


def merge(row_idx: jax.Array, col_idx: jax.Array, drop: jax.Array,
          grow_rows: jax.Array, grow_cols: jax.Array
          ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Kept blocks plus grown ones, row-major sorted: the j-th dropped block
  (in storage order) is replaced by ``(grow_rows[j], grow_cols[j])``.
  ``drop`` must mark exactly as many blocks as there are valid grown ones.

  Returns ``(rows, cols, source)`` int32[nnzb]: source = the old storage
  index each new block continues, -1 for grown ones.
  """
  nnzb = row_idx.shape[0]
  j = jnp.clip(jnp.cumsum(drop.astype(jnp.int32)) - 1, 0,
               grow_rows.shape[0] - 1)
  rows = jnp.where(drop, grow_rows[j], row_idx)
  cols = jnp.where(drop, grow_cols[j], col_idx)
  source = jnp.where(drop, -1, jnp.arange(nnzb, dtype=jnp.int32))
  return lax.sort((rows, cols, source), num_keys=2)


def csr_metadata(rows: jax.Array, cols: jax.Array, grid: tuple[int, int]
                 ) -> dict[str, jax.Array]:
  """Every index array of ``BlockCSR`` from row-major sorted coordinates,
  on device (what :func:`snn_jax.sparse.block_metadata` builds on the host)."""
  n_rb, n_cb = grid
  nnzb = rows.shape[0]
  position = jnp.arange(nnzb, dtype=jnp.int32)
  sorted_cols, col_order = lax.sort((cols, position), num_keys=2)
  def starts(keys, n):  # CSR pointers from sorted keys, without a search
    counts = jnp.zeros(n, jnp.int32).at[keys].add(1)
    return jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.cumsum(counts)])

  return {
      "col_idx": cols.astype(jnp.int32),
      "row_ptr": starts(rows, n_rb).astype(jnp.int32),
      "row_idx": rows.astype(jnp.int32),
      "col_order": col_order.astype(jnp.int32),
      "col_ptr": starts(sorted_cols, n_cb).astype(jnp.int32),
  }


def carry_over(old: jax.Array, source: jax.Array, fill: jax.Array | float
               ) -> jax.Array:
  """New per-block array: ``old[source]`` for continued blocks, ``fill``
  (broadcast to the blocks' shape) for grown ones."""
  moved = jnp.take(old, jnp.maximum(source, 0), axis=0)
  grown = (source < 0).reshape((-1,) + (1,) * (old.ndim - 1))
  return jnp.where(grown, jnp.asarray(fill, old.dtype), moved)


def masked(values: jax.Array, alive: jax.Array) -> jax.Array:
  """``values`` with the blocks where ``alive`` (bool[nnzb]) is False zeroed."""
  return jnp.where(alive.reshape((-1,) + (1,) * (values.ndim - 1)), values,
                   jnp.zeros((), values.dtype))
