"""XLA gather-scatter block-sparse kernels: every backend, jit-able, static
shapes, no dense weight and no dense weight gradient.

Two strategies, chosen per block size by ``kernels.tuning`` (measured on the
2-core CPU, see BUILD_NOTES.md):

``"blocks"``  A ``fori_loop`` over the stored blocks. Step k reads the input
              block ``x[:, in_idx[k]]`` (a dynamic slice), multiplies it by
              block k on its own and adds the ``[B, bs]`` product into the
              output block ``out[:, out_idx[k]]`` in place. Nothing of size
              ``nnzb x B x bs`` is ever materialised, so the working set stays
              in cache -- this is what beats the naive take/einsum/segment_sum
              formulation (which writes and re-reads that tensor) by 5-10x.
              Per-step overhead makes it poor for tiny blocks.
``"chunks"``  The stored blocks, in output order, are cut into chunks of
              ``chunk`` blocks; each step gathers the chunk's input blocks,
              multiplies them and scatter-adds (sorted) into the output. For
              block size 1 (unstructured sparsity) this is a fused
              gather/scale/segment-sum over a cache-sized chunk.

Both visit blocks in a caller-given order (``order``): the forward pass uses
the column-ordered view (``col_order``), so output block columns are
finished one after the other; dX uses storage (row-major) order with the
roles of rows and columns swapped and each block transposed. The step count
is ``nnzb`` (or ``ceil(nnzb / chunk)``), static, so changing indices at fixed
nnzb (adaptive sparse training) never retraces.

Shapes: ``x: [B, n_in]``, ``values: [nnzb, bs, bs]``, index arrays
``int32[nnzb]``; accumulation in float32, outputs in ``x.dtype``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

STRATEGIES = ("blocks", "chunks")


def _check_strategy(strategy: str) -> None:
  if strategy not in STRATEGIES:
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


def _accumulate_blocks(x, values, in_idx, out_idx, order, *, n_out, transpose):
  """out[:, out_idx[k]] += x[:, in_idx[k]] @ V_k (V_k^T if transpose)."""
  bs = values.shape[-1]
  batch = x.shape[0]
  dims = (((1,), (1 if transpose else 0,)), ((), ()))

  def body(p, y):
    k = order[p]
    xb = lax.dynamic_slice_in_dim(x, in_idx[k] * bs, bs, axis=1)
    prod = lax.dot_general(xb, values[k], dims,
                           preferred_element_type=jnp.float32)
    start = out_idx[k] * bs
    yb = lax.dynamic_slice_in_dim(y, start, bs, axis=1)
    return lax.dynamic_update_slice_in_dim(y, yb + prod, start, axis=1)

  y0 = jnp.zeros((batch, n_out), jnp.float32)
  return lax.fori_loop(0, order.shape[0], body, y0)


def _accumulate_chunks(x, values, in_idx, out_idx, order, *, n_out, transpose,
                       chunk):
  """Same product, ``chunk`` blocks per step (gather, batched dot, sorted
  scatter-add); ``order`` must list blocks sorted by ``out_idx``."""
  bs = values.shape[-1]
  batch = x.shape[0]
  nnzb = order.shape[0]
  n_steps = -(-nnzb // chunk)
  pad = n_steps * chunk - nnzb
  # Padding entries repeat the last block with weight zero.
  valid = jnp.arange(n_steps * chunk) < nnzb
  order_p = jnp.concatenate([order, jnp.full((pad,), order[-1] if nnzb else 0,
                                             order.dtype)]).reshape(n_steps, chunk)
  valid = valid.reshape(n_steps, chunk)
  xt = x.T.reshape(x.shape[1] // bs, bs, batch)  # input blocks are contiguous
  w_spec = "sio" if not transpose else "soi"

  def body(s, yt):
    ks = order_p[s]
    g = xt[in_idx[ks]]  # [chunk, bs, B]
    v = jnp.where(valid[s][:, None, None], values[ks], 0).astype(values.dtype)
    prod = jnp.einsum(f"sib,{w_spec}->sob", g, v,
                      preferred_element_type=jnp.float32)
    return yt.at[out_idx[ks]].add(prod, indices_are_sorted=True)

  yt0 = jnp.zeros((n_out // bs, bs, batch), jnp.float32)
  yt = lax.fori_loop(0, n_steps, body, yt0)
  return yt.reshape(n_out, batch).T


@functools.partial(jax.jit, static_argnames=("n_out", "strategy", "chunk"))
def bsmm_fwd_xla(x, values, row_idx, col_idx, col_order, *, n_out: int,
                 strategy: str = "blocks", chunk: int = 1024):
  """``y[B, n_out] = x[B, n_in] @ W``, visiting blocks by output column.

  Args:
    x: float[B, n_in]. values: float[nnzb, bs, bs].
    row_idx, col_idx: int32[nnzb] block coordinates (storage order).
    col_order: int32[nnzb], storage positions in column-major order.
    n_out: output width. strategy/chunk: see the module docstring.
  """
  _check_strategy(strategy)
  if values.shape[0] == 0:
    return jnp.zeros((x.shape[0], n_out), x.dtype)
  if strategy == "blocks":
    y = _accumulate_blocks(x, values, row_idx, col_idx, col_order,
                           n_out=n_out, transpose=False)
  else:
    y = _accumulate_chunks(x, values, row_idx, col_idx, col_order,
                           n_out=n_out, transpose=False, chunk=chunk)
  return y.astype(x.dtype)


@functools.partial(jax.jit, static_argnames=("n_in", "strategy", "chunk"))
def bsmm_dx_xla(dy, values, row_idx, col_idx, *, n_in: int,
                strategy: str = "blocks", chunk: int = 1024):
  """``dx[B, n_in] = dy[B, n_out] @ W.T`` through the row-ordered view
  (storage order is already sorted by block row)."""
  _check_strategy(strategy)
  if values.shape[0] == 0:
    return jnp.zeros((dy.shape[0], n_in), dy.dtype)
  order = jnp.arange(values.shape[0], dtype=jnp.int32)
  if strategy == "blocks":
    dx = _accumulate_blocks(dy, values, col_idx, row_idx, order, n_out=n_in,
                            transpose=True)
  else:
    dx = _accumulate_chunks(dy, values, col_idx, row_idx, order, n_out=n_in,
                            transpose=True, chunk=chunk)
  return dx.astype(dy.dtype)


@functools.partial(jax.jit, static_argnames=("block_size", "strategy", "chunk",
                                             "out_dtype"))
def sddmm_xla(x, dy, row_idx, col_idx, *, block_size: int,
              strategy: str = "blocks", chunk: int = 1024,
              out_dtype=jnp.float32):
  """``dW[k] = x[:, rows of block k].T @ dy[:, cols of block k]``: the
  weight gradient sampled at the stored blocks only, float[nnzb, bs, bs]."""
  _check_strategy(strategy)
  bs = block_size
  nnzb = row_idx.shape[0]
  if nnzb == 0:
    return jnp.zeros((0, bs, bs), out_dtype)
  dims = (((0,), (0,)), ((), ()))
  if strategy == "blocks":
    def body(k, out):
      xb = lax.dynamic_slice_in_dim(x, row_idx[k] * bs, bs, axis=1)
      gb = lax.dynamic_slice_in_dim(dy, col_idx[k] * bs, bs, axis=1)
      blk = lax.dot_general(xb, gb, dims, preferred_element_type=jnp.float32)
      return lax.dynamic_update_index_in_dim(out, blk.astype(out.dtype), k, 0)
    return lax.fori_loop(0, nnzb, body, jnp.zeros((nnzb, bs, bs), out_dtype))
  n_steps = -(-nnzb // chunk)
  pad = n_steps * chunk - nnzb
  ridx = jnp.pad(row_idx, (0, pad)).reshape(n_steps, chunk)
  cidx = jnp.pad(col_idx, (0, pad)).reshape(n_steps, chunk)
  batch = x.shape[0]
  xt = x.T.reshape(x.shape[1] // bs, bs, batch)
  gt = dy.T.reshape(dy.shape[1] // bs, bs, batch)

  def chunk_body(s, out):
    blk = jnp.einsum("sib,sob->sio", xt[ridx[s]], gt[cidx[s]],
                     preferred_element_type=jnp.float32)
    return lax.dynamic_update_index_in_dim(out, blk.astype(out.dtype), s, 0)

  out = lax.fori_loop(0, n_steps, chunk_body,
                      jnp.zeros((n_steps, chunk, bs, bs), out_dtype))
  return out.reshape(n_steps * chunk, bs, bs)[:nnzb]
