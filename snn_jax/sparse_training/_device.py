"""Drop-and-grow on one layer's blocks on device: pure ``jax.numpy`` at fixed
shapes, so a rewiring runs inside a jitted training step and never
retraces.

The rules are those of the host-side :mod:`snn_jax.sparse_training._rewire`
(same drop order and ties, growth only at positions empty *before* the step,
the merged blocks row-major sorted with each new block's source), rewritten
for static shapes: the number of blocks to move, ``k``, is a traced integer
``<= k_max`` (a static bound), and every array keeps its size.

A layer is its CSR structure ``row_idx, col_idx`` (int32[nnzb], row-major
sorted), ``row_ptr`` (int32[n_row_blocks + 1]) and values
``[nnzb, bs, bs]``; see :mod:`snn_jax.sparse`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

# The largest slice of ``Xᵀ·dY`` formed at once: the host rule's bound.
from snn_jax.sparse_training._rewire import GRADIENT_CHUNK_FLOATS


def block_norms(values: jax.Array) -> jax.Array:
  """float32[nnzb]: the Frobenius norm of every block."""
  v = values.astype(jnp.float32).reshape(values.shape[0], -1)
  return jnp.sqrt(jnp.sum(v * v, axis=1))


def _rank(*keys: jax.Array) -> jax.Array:
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
    return _rank(norms) < k
  return _rank(keep_first.astype(jnp.int32), norms) < k


def set_drop(values: jax.Array, zeta: jax.Array) -> jax.Array:
  """SET's drop rule (Mocanu et al. 2018), bool[nnzb]: at block size 1 the
  ``round(ζ·n₊)`` non-negative weights and ``round(ζ·n₋)`` negative weights
  closest to zero (ties: lower index); above it the ``round(ζ·nnzb)``
  blocks of smallest norm. ``zeta`` may be traced."""
  nnzb, bs = values.shape[0], values.shape[-1]
  if bs > 1:
    return magnitude_drop(values, jnp.round(
        jnp.asarray(zeta, jnp.float32) * nnzb).astype(jnp.int32))
  w = values.reshape(-1).astype(jnp.float32)
  negative = w < 0
  rank = _rank(negative.astype(jnp.int32), jnp.abs(w))
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


def grow_by_gradient(x: jax.Array, dy: jax.Array, row_idx: jax.Array,
                     col_idx: jax.Array, row_ptr: jax.Array, block_size: int,
                     k_max: int, *, chunk_floats: int = GRADIENT_CHUNK_FLOATS
                     ) -> tuple[jax.Array, jax.Array]:
  """RigL's growth (Evci et al. 2020) without the dense gradient: the
  ``k_max`` empty block positions where the block norm of ``G = xᵀ·dy`` is
  largest, best first (ties: lower row-major position first, as the host
  rule). ``G`` is formed a few block rows at a time (at most
  ``chunk_floats`` entries) with a running top-k: memory O(chunk + k_max),
  never O(n_in·n_out).

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
