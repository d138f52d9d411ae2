"""Pallas block-sparse kernels for GPU (Triton lowering); on CPU they run in
Pallas interpret mode, which is how the test suite exercises them.

Design (output-stationary, one program per output tile):

* ``bsmm_fwd_pallas``: grid ``(batch tiles, output block columns)``. Program
  ``(m, j)`` walks the column-ordered view of W -- ``col_order[col_ptr[j]:
  col_ptr[j+1]]`` -- and accumulates ``x[m-tile, rows of block] @ block`` in
  float32 registers, then writes its ``[bm, bs]`` tile once. An empty block
  column runs zero iterations and still writes its (zero) tile, so every
  output element is written and a NaN-poisoned buffer would expose a miss.
* ``bsmm_dx_pallas``: the same kernel on the row-ordered view (``row_ptr``,
  storage order) with each block transposed: ``dx = dy @ W.T``.
* ``sddmm_pallas``: grid ``(nnzb,)``; program k loops over batch tiles and
  accumulates ``x[:, rows_k].T @ dy[:, cols_k]`` -- dW only at stored blocks.

Block sizes are the powers of two from 16 to 128 (``BLOCK_SIZES``):
Triton's ``dot`` needs both matrix sides >= 16, the Triton lowering needs
power-of-two array shapes, and at 256 the blocks overflow shared memory
(an H100 compile asked for 589,824 bytes of its 232,448); others are
refused with a pointer to ``impl="xla"``. Tile sizes come from
``kernels.tuning``, chosen for the device compiled for.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

try:  # deprecated upstream in favour of Mosaic GPU (kernels/mosaic_gpu.py)
  from jax.experimental.pallas import triton as plgpu
  AVAILABLE = True
except ImportError:
  plgpu = None
  AVAILABLE = False

BLOCK_SIZES = (16, 32, 64, 128)


def _check(block_size: int, batch_tile: int) -> None:
  if not AVAILABLE:
    raise ValueError("this JAX has no Pallas Triton backend "
                     "(jax.experimental.pallas.triton); use "
                     "impl='mosaic_gpu' (forward) or 'xla'")
  if block_size not in BLOCK_SIZES:
    raise ValueError(
        f"the Pallas GPU kernels take block sizes {BLOCK_SIZES} (Triton dot "
        f"and power-of-two shapes; 256 overflows shared memory), got "
        f"{block_size}; use impl='xla' for other block sizes"
    )
  if batch_tile < 16 or batch_tile & (batch_tile - 1):
    raise ValueError(f"batch_tile must be a power of two >= 16, got {batch_tile}")


def _walk_kernel(ptr_ref, order_ref, other_ref, x_ref, v_ref, o_ref, *, bs,
                 transpose):
  """o[m-tile, block j] = sum over blocks k of segment j of
  x[m-tile, block other[k]] @ V_k (or V_k^T)."""
  j = pl.program_id(1)
  start = ptr_ref[j]
  end = ptr_ref[j + 1]
  bm = o_ref.shape[0]

  def body(p, acc):
    k = order_ref[p]
    src = other_ref[k]
    xb = x_ref[:, pl.ds(src * bs, bs)]
    return acc + plgpu.dot(xb, v_ref[k], trans_b=transpose)  # f32 result

  acc = lax.fori_loop(start, end, body, jnp.zeros((bm, bs), jnp.float32))
  o_ref[...] = acc.astype(o_ref.dtype)


def _walk(x, values, ptr, order, other, *, n_out, bs, transpose, batch_tile,
          num_warps, num_stages, interpret):
  batch, n_in = x.shape
  pad = (-batch) % batch_tile
  if pad:
    x = jnp.pad(x, ((0, pad), (0, 0)))
  grid = (x.shape[0] // batch_tile, n_out // bs)
  whole = lambda a: pl.BlockSpec(a.shape, lambda m, j, n=a.ndim: (0,) * n)
  kernel = functools.partial(_walk_kernel, bs=bs, transpose=transpose)
  compiler_params = None
  if not interpret:
    compiler_params = plgpu.CompilerParams(num_warps=num_warps,
                                           num_stages=num_stages)
  out = pl.pallas_call(
      kernel,
      grid=grid,
      in_specs=[whole(ptr), whole(order), whole(other),
                pl.BlockSpec((batch_tile, n_in), lambda m, j: (m, 0)),
                whole(values)],
      out_specs=pl.BlockSpec((batch_tile, bs), lambda m, j: (m, j)),
      out_shape=jax.ShapeDtypeStruct((x.shape[0], n_out), x.dtype),
      compiler_params=compiler_params,
      interpret=interpret,
      name="bsmm_dx" if transpose else "bsmm_fwd",
  )(ptr, order, other, x, values)
  return out[:batch] if pad else out


@functools.partial(jax.jit, static_argnames=(
    "n_out", "batch_tile", "num_warps", "num_stages", "interpret"))
def bsmm_fwd_pallas(x, values, col_ptr, col_order, row_idx, *, n_out: int,
                    batch_tile: int = 64, num_warps: int = 4,
                    num_stages: int = 2, interpret: bool = False):
  """``y[B, n_out] = x[B, n_in] @ W`` through the column-ordered view.

  Args:
    x: float[B, n_in] (B is padded to a multiple of ``batch_tile``).
    values: float[nnzb, bs, bs]; col_ptr: int32[n_out/bs + 1];
    col_order: int32[nnzb]; row_idx: int32[nnzb].
  """
  bs = values.shape[-1]
  _check(bs, batch_tile)
  return _walk(x, values, col_ptr, col_order, row_idx, n_out=n_out, bs=bs,
               transpose=False, batch_tile=batch_tile, num_warps=num_warps,
               num_stages=num_stages, interpret=interpret)


@functools.partial(jax.jit, static_argnames=(
    "n_in", "batch_tile", "num_warps", "num_stages", "interpret"))
def bsmm_dx_pallas(dy, values, row_ptr, col_idx, *, n_in: int,
                   batch_tile: int = 64, num_warps: int = 4,
                   num_stages: int = 2, interpret: bool = False):
  """``dx[B, n_in] = dy[B, n_out] @ W.T`` through the row-ordered view."""
  bs = values.shape[-1]
  _check(bs, batch_tile)
  order = jnp.arange(values.shape[0], dtype=jnp.int32)
  return _walk(dy, values, row_ptr, order, col_idx, n_out=n_in, bs=bs,
               transpose=True, batch_tile=batch_tile, num_warps=num_warps,
               num_stages=num_stages, interpret=interpret)


def _sddmm_kernel(row_ref, col_ref, x_ref, g_ref, o_ref, *, bs, batch_tile,
                  n_tiles):
  k = pl.program_id(0)
  r = row_ref[k]
  c = col_ref[k]

  def body(t, acc):
    rows = pl.ds(t * batch_tile, batch_tile)
    xb = x_ref[rows, pl.ds(r * bs, bs)]
    gb = g_ref[rows, pl.ds(c * bs, bs)]
    return acc + plgpu.dot(xb, gb, trans_a=True)

  acc = lax.fori_loop(0, n_tiles, body, jnp.zeros((bs, bs), jnp.float32))
  o_ref[0] = acc.astype(o_ref.dtype)


@functools.partial(jax.jit, static_argnames=(
    "block_size", "batch_tile", "num_warps", "num_stages", "interpret",
    "out_dtype"))
def sddmm_pallas(x, dy, row_idx, col_idx, *, block_size: int,
                 batch_tile: int = 64, num_warps: int = 4, num_stages: int = 2,
                 interpret: bool = False, out_dtype=jnp.float32):
  """``dW[k] = x[:, rows_k].T @ dy[:, cols_k]``, float[nnzb, bs, bs]."""
  bs = block_size
  _check(bs, batch_tile)
  nnzb = row_idx.shape[0]
  if nnzb == 0:
    return jnp.zeros((0, bs, bs), out_dtype)
  batch = x.shape[0]
  pad = (-batch) % batch_tile
  if pad:  # Zero rows add nothing to x.T @ dy.
    x = jnp.pad(x, ((0, pad), (0, 0)))
    dy = jnp.pad(dy, ((0, pad), (0, 0)))
  whole = lambda a: pl.BlockSpec(a.shape, lambda k, n=a.ndim: (0,) * n)
  compiler_params = None
  if not interpret:
    compiler_params = plgpu.CompilerParams(num_warps=num_warps,
                                           num_stages=num_stages)
  kernel = functools.partial(_sddmm_kernel, bs=bs, batch_tile=batch_tile,
                             n_tiles=x.shape[0] // batch_tile)
  return pl.pallas_call(
      kernel,
      grid=(nnzb,),
      in_specs=[whole(row_idx), whole(col_idx), whole(x), whole(dy)],
      out_specs=pl.BlockSpec((1, bs, bs), lambda k: (k, 0, 0)),
      out_shape=jax.ShapeDtypeStruct((nnzb, bs, bs), out_dtype),
      compiler_params=compiler_params,
      interpret=interpret,
      name="bsmm_sddmm",
  )(row_idx, col_idx, x, dy)
