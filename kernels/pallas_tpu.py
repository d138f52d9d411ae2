"""Pallas block-sparse kernels for TPU (Mosaic), with the block indices
scalar-prefetched into SMEM so the pipeline's index maps can follow them.
On CPU they run under the TPU interpreter (``pltpu.InterpretParams``).

Schedule. The TPU pipeline requires every visit to an output block to come
on consecutive grid steps. The forward pass therefore walks W's blocks in
column order (``col_order``) on a grid ``(batch tiles, visits)``; a visit is
one stored block, plus one zero-contribution visit for each empty block
column (the way megablox's ``make_group_metadata(visit_empty_groups=True)``
schedules empty groups), so every output element is written. The visit list
has the static length ``nnzb + n_col_blocks``; unused trailing visits repeat
the last column with no contribution. It is computed on device from
``col_ptr``/``col_order`` with static shapes, so changing indices at fixed
nnzb does not retrace. Each visit adds its product into a float32 VMEM
accumulator, which is reset on a column's first visit and stored into the
output tile at every visit (the last store wins).

dX uses the same kernel over the row-ordered view with each block
transposed; dW (SDDMM) runs a grid ``(nnzb, batch tiles)`` accumulating
``x[t, rows_k].T @ dy[t, cols_k]`` over the batch tiles.

Mosaic tiles must be multiples of (8, 128): block sizes must be multiples of
128 and the batch tile a multiple of 8. Block sizes above ``MAX_BLOCK_SIZE``
(1024) are refused: at 2048 (float32) the double-buffered weight block
alone overflows VMEM on every generation compiled for (v4: a 32 MiB window
against 16 MiB; v5e: scoped VMEM exhausted).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

LANE = 128
MAX_BLOCK_SIZE = 1024


def supports(block_size: int) -> bool:
  """Whether the TPU kernels take this block size."""
  return block_size % LANE == 0 and block_size <= MAX_BLOCK_SIZE


def _check(block_size: int, batch_tile: int) -> None:
  if not supports(block_size):
    raise ValueError(
        f"the Pallas TPU kernels need block_size a multiple of {LANE} up to "
        f"{MAX_BLOCK_SIZE} (larger blocks overflow VMEM), got {block_size}; "
        "use impl='xla' for other block sizes"
    )
  if batch_tile % 8:
    raise ValueError(f"batch_tile must be a multiple of 8, got {batch_tile}")


def visit_schedule(ptr: jax.Array, order: jax.Array):
  """Visit metadata for the output-stationary walk (all int32[L], with
  ``L = nnzb + n_segments``):

  ``blk``: storage position of the block visited (0 for a zero visit);
  ``seg``: output segment (block column for the forward pass);
  ``first``: 1 on the first visit of a segment; ``valid``: 1 if the visit
  contributes a stored block.
  """
  n_seg = ptr.shape[0] - 1
  nnzb = order.shape[0]
  length = nnzb + n_seg
  counts = ptr[1:] - ptr[:-1]
  visits = jnp.maximum(counts, 1)
  vstart = jnp.concatenate([jnp.zeros((1,), jnp.int32),
                            jnp.cumsum(visits).astype(jnp.int32)])
  total = vstart[-1]
  v = jnp.arange(length, dtype=jnp.int32)
  seg = jnp.clip(jnp.searchsorted(vstart, v, side="right") - 1, 0, n_seg - 1)
  seg = seg.astype(jnp.int32)
  within = v - vstart[seg]
  in_range = v < total
  valid = in_range & (within < counts[seg])
  pos = jnp.clip(ptr[seg] + within, 0, max(nnzb - 1, 0))
  blk = jnp.where(valid, order[pos] if nnzb else 0, 0).astype(jnp.int32)
  first = (in_range & (within == 0)).astype(jnp.int32)
  return blk, seg, first, valid.astype(jnp.int32)


def _walk_kernel(blk_ref, seg_ref, first_ref, valid_ref, src_ref, x_ref, w_ref,
                 o_ref, acc_ref, *, transpose):
  v = pl.program_id(1)

  @pl.when(first_ref[v] == 1)
  def _init():
    acc_ref[...] = jnp.zeros_like(acc_ref)

  @pl.when(valid_ref[v] == 1)
  def _accumulate():
    dims = (((1,), (1 if transpose else 0,)), ((), ()))
    acc_ref[...] += jax.lax.dot_general(x_ref[...], w_ref[...], dims,
                                        preferred_element_type=jnp.float32)

  o_ref[...] = acc_ref[...].astype(o_ref.dtype)


def _walk(x, values, ptr, order, src, *, n_out, transpose, batch_tile,
          interpret):
  bs = values.shape[-1]
  _check(bs, batch_tile)
  batch = x.shape[0]
  pad = (-batch) % batch_tile
  if pad:
    x = jnp.pad(x, ((0, pad), (0, 0)))
  blk, seg, first, valid = visit_schedule(ptr, order)
  src_of_visit = src[blk] if values.shape[0] else jnp.zeros_like(blk)

  def x_map(m, v, blk, seg, first, valid, srcv):
    return m, srcv[v]

  def w_map(m, v, blk, seg, first, valid, srcv):
    return blk[v], 0, 0

  def o_map(m, v, blk, seg, first, valid, srcv):
    return m, seg[v]

  grid_spec = pltpu.PrefetchScalarGridSpec(
      num_scalar_prefetch=5,
      grid=(x.shape[0] // batch_tile, blk.shape[0]),
      in_specs=[pl.BlockSpec((batch_tile, bs), x_map),
                pl.BlockSpec((None, bs, bs), w_map)],
      out_specs=pl.BlockSpec((batch_tile, bs), o_map),
      scratch_shapes=[pltpu.VMEM((batch_tile, bs), jnp.float32)],
  )
  out = pl.pallas_call(
      functools.partial(_walk_kernel, transpose=transpose),
      grid_spec=grid_spec,
      out_shape=jax.ShapeDtypeStruct((x.shape[0], n_out), x.dtype),
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "arbitrary")),
      interpret=interpret,
      name="bsmm_dx_tpu" if transpose else "bsmm_fwd_tpu",
  )(blk, seg, first, valid, src_of_visit, x, values)
  return out[:batch] if pad else out


def _interpret_arg(interpret: bool):
  return pltpu.InterpretParams() if interpret else False


@functools.partial(jax.jit, static_argnames=("n_out", "batch_tile", "interpret"))
def bsmm_fwd_pallas_tpu(x, values, col_ptr, col_order, row_idx, *, n_out: int,
                        batch_tile: int = 128, interpret: bool = False):
  """``y[B, n_out] = x[B, n_in] @ W`` (column-ordered walk, see module doc)."""
  return _walk(x, values, col_ptr, col_order, row_idx, n_out=n_out,
               transpose=False, batch_tile=batch_tile,
               interpret=_interpret_arg(interpret))


@functools.partial(jax.jit, static_argnames=("n_in", "batch_tile", "interpret"))
def bsmm_dx_pallas_tpu(dy, values, row_ptr, col_idx, *, n_in: int,
                       batch_tile: int = 128, interpret: bool = False):
  """``dx[B, n_in] = dy[B, n_out] @ W.T`` (row-ordered walk)."""
  order = jnp.arange(values.shape[0], dtype=jnp.int32)
  return _walk(dy, values, row_ptr, order, col_idx, n_out=n_in, transpose=True,
               batch_tile=batch_tile, interpret=_interpret_arg(interpret))


def _sddmm_kernel(row_ref, col_ref, x_ref, g_ref, o_ref, acc_ref):
  t = pl.program_id(1)

  @pl.when(t == 0)
  def _init():
    acc_ref[...] = jnp.zeros_like(acc_ref)

  acc_ref[...] += jax.lax.dot_general(x_ref[...], g_ref[...],
                                      (((0,), (0,)), ((), ())),
                                      preferred_element_type=jnp.float32)
  o_ref[...] = acc_ref[...].astype(o_ref.dtype)


@functools.partial(jax.jit, static_argnames=(
    "block_size", "batch_tile", "interpret", "out_dtype"))
def sddmm_pallas_tpu(x, dy, row_idx, col_idx, *, block_size: int,
                     batch_tile: int = 128, interpret: bool = False,
                     out_dtype=jnp.float32):
  """``dW[k] = x[:, rows_k].T @ dy[:, cols_k]``, float[nnzb, bs, bs]."""
  bs = block_size
  _check(bs, batch_tile)
  nnzb = row_idx.shape[0]
  if nnzb == 0:
    return jnp.zeros((0, bs, bs), out_dtype)
  pad = (-x.shape[0]) % batch_tile
  if pad:
    x = jnp.pad(x, ((0, pad), (0, 0)))
    dy = jnp.pad(dy, ((0, pad), (0, 0)))
  grid_spec = pltpu.PrefetchScalarGridSpec(
      num_scalar_prefetch=2,
      grid=(nnzb, x.shape[0] // batch_tile),
      in_specs=[pl.BlockSpec((batch_tile, bs), lambda k, t, r, c: (t, r[k])),
                pl.BlockSpec((batch_tile, bs), lambda k, t, r, c: (t, c[k]))],
      out_specs=pl.BlockSpec((None, bs, bs), lambda k, t, r, c: (k, 0, 0)),
      scratch_shapes=[pltpu.VMEM((bs, bs), jnp.float32)],
  )
  return pl.pallas_call(
      _sddmm_kernel,
      grid_spec=grid_spec,
      out_shape=jax.ShapeDtypeStruct((nnzb, bs, bs), out_dtype),
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "arbitrary")),
      interpret=_interpret_arg(interpret),
      name="bsmm_sddmm_tpu",
  )(row_idx, col_idx, x, dy)
