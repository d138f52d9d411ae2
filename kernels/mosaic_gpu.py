"""Block-sparse forward kernel in Pallas' Mosaic GPU backend (Hopper and
newer), the backend JAX's Pallas changelog names as the Triton lowering's
successor. On CPU it runs in Mosaic GPU interpret mode
(``plgpu.InterpretParams``), which simulates shared memory, TMA copies,
barriers and wgmma -- how the test suite checks it.

Design (output-stationary, like ``pallas_gpu``'s forward): grid ``(batch
tiles, output block columns)``, one warpgroup per program. Program ``(m,
j)`` walks the column-ordered view of W -- ``col_order[col_ptr[j]:
col_ptr[j+1]]`` -- and for each stored block ``k`` TMA-copies the input
tile ``x[m-tile, block row_idx[k]]`` and ``W_k`` into swizzled shared
memory, waits on their barriers, and accumulates ``x_tile @ W_k`` with
wgmma into a float32 register accumulator (float32 operands go through
tf32, as Triton's ``dot`` does by default on these cards). The tile is then
stored once through shared memory by TMA, so an empty block column writes
its zero tile.

Forward only: ``snn_jax.ops`` pairs it with the Triton (or XLA) backward
kernels. Block sizes 64 and 128 (``BLOCK_SIZES``), float32 or bfloat16; the
batch is padded to a multiple of the batch tile (64, one wgmma M). tf32
wgmma takes its B operand only K-major, so for float32 the blocks are
passed transposed (one XLA pass over W per call) and read through
``transpose_ref``; JAX 0.10's GPU interpreter cannot run that read, so
float32 is checked by compiling for an H100 description
(``kernels/deviceless.py``) and waits for a device for its numbers.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

try:
  from jax.experimental.pallas import mosaic_gpu as plgpu
  AVAILABLE = hasattr(plgpu, "wgmma") and hasattr(plgpu, "kernel")
except ImportError:  # a JAX without the Mosaic GPU backend
  plgpu = None
  AVAILABLE = False

# The GPU interpreter (public as plgpu.InterpretParams in newer JAX, only
# under jax._src in 0.10) and its race detector's state.
_InterpretParams = getattr(plgpu, "InterpretParams", None)
_get_races = None
if AVAILABLE:
  try:
    if _InterpretParams is None:
      from jax._src.pallas.mosaic_gpu.interpret.params import (
          InterpretGPUParams as _InterpretParams)
    from jax._src.pallas.mosaic_gpu.interpret.interpret_pallas_call import (
        get_races as _get_races)
  except ImportError:
    pass


BLOCK_SIZES = (64, 128)
BATCH_TILE = 64  # one warpgroup's wgmma M


def supports(block_size: int) -> bool:
  """Whether this JAX has the Mosaic GPU backend and the kernel takes this
  block size."""
  return AVAILABLE and block_size in BLOCK_SIZES


def races_found() -> bool:
  """Whether the GPU interpreter's race detector (on for every interpreted
  run of this kernel: shared memory, TMA and wgmma are simulated with
  happens-before tracking) has reported a data race in this process."""
  if _get_races is None:
    raise RuntimeError("this JAX has no Mosaic GPU race detector")
  return bool(_get_races().races_found)


def _check(block_size: int, dtype) -> None:
  if not AVAILABLE:
    raise ValueError("this JAX has no Pallas Mosaic GPU backend "
                     "(jax.experimental.pallas.mosaic_gpu); use "
                     "impl='pallas_gpu' or 'xla'")
  if not supports(block_size):
    raise ValueError(f"the Mosaic GPU kernel takes block sizes {BLOCK_SIZES}, "
                     f"got {block_size}; use impl='pallas_gpu' or 'xla'")
  if jnp.dtype(dtype) not in (jnp.float32, jnp.bfloat16):
    raise TypeError(f"the Mosaic GPU kernel takes float32 or bfloat16, got "
                    f"{jnp.dtype(dtype)}")


def _smem_transforms(block_size: int, dtype) -> tuple:
  """Tiling + swizzle that make a ``[rows, block_size]`` shared-memory tile
  a wgmma operand and a TMA target."""
  bits = jnp.finfo(dtype).bits
  swizzle = plgpu.find_swizzle(block_size * bits)
  return (plgpu.TilingTransform((8, swizzle * 8 // bits)),
          plgpu.SwizzleTransform(swizzle))


def _fwd_body(col_ptr, col_order, row_idx, x, values, out, *, bs, bm,
              values_transposed):
  m = lax.axis_index("m")
  j = lax.axis_index("j")
  start = col_ptr[j]
  end = col_ptr[j + 1]
  transforms = _smem_transforms(bs, x.dtype)

  def scope(x_smem, w_smem, o_smem, barriers):
    def accumulate(acc):
      def visit(p, carry):
        k = col_order[p]
        plgpu.copy_gmem_to_smem(
            x.at[pl.ds(m * bm, bm), pl.ds(row_idx[k] * bs, bs)], x_smem,
            barriers.at[0])
        plgpu.copy_gmem_to_smem(values.at[k], w_smem, barriers.at[1])
        plgpu.barrier_wait(barriers.at[0])
        plgpu.barrier_wait(barriers.at[1])
        w_op = plgpu.transpose_ref(w_smem, (1, 0)) if values_transposed else w_smem
        plgpu.wgmma(acc, x_smem, w_op)
        plgpu.wgmma_wait(0)  # the next visit's copies overwrite both operands
        return carry

      lax.fori_loop(start, end, visit, 0)
      return acc[...]

    tile = pl.run_scoped(accumulate, plgpu.ACC((bm, bs), jnp.float32))
    o_smem[...] = tile.astype(o_smem.dtype)
    plgpu.commit_smem()
    plgpu.copy_smem_to_gmem(o_smem,
                            out.at[pl.ds(m * bm, bm), pl.ds(j * bs, bs)])
    plgpu.wait_smem_to_gmem(0)

  pl.run_scoped(
      scope,
      plgpu.SMEM((bm, bs), x.dtype, transforms=transforms),
      plgpu.SMEM((bs, bs), x.dtype, transforms=transforms),
      plgpu.SMEM((bm, bs), x.dtype, transforms=transforms),
      plgpu.Barrier(num_barriers=2),
  )


@functools.partial(jax.jit, static_argnames=("n_out", "interpret"))
def bsmm_fwd_mosaic(x, values, col_ptr, col_order, row_idx, *, n_out: int,
                    interpret: bool = False):
  """``y[B, n_out] = x[B, n_in] @ W`` through the column-ordered view.

  Args:
    x: float32 or bfloat16 ``[B, n_in]`` (B is padded to a multiple of 64).
    values: ``[nnzb, bs, bs]`` in x's dtype; col_ptr: int32[n_out/bs + 1];
    col_order: int32[nnzb]; row_idx: int32[nnzb].
    interpret: run in Mosaic GPU interpret mode (any backend).
  """
  bs = values.shape[-1]
  _check(bs, x.dtype)
  if interpret and _InterpretParams is None:
    raise ValueError("this JAX has no Mosaic GPU interpret mode")
  if interpret and jnp.dtype(x.dtype) == jnp.float32:
    raise NotImplementedError(
        "the float32 Mosaic GPU kernel reads W through a transposed "
        "shared-memory ref (tf32 wgmma needs it K-major), which JAX's GPU "
        "interpreter cannot run (it takes tiling and swizzle transforms "
        "only); interpret bfloat16, or check float32 on a device "
        "(experiments/bench_kernels.py --suite=gpu)")
  batch = x.shape[0]
  pad = (-batch) % BATCH_TILE
  if pad:
    x = jnp.pad(x, ((0, pad), (0, 0)))
  # tf32 wgmma (float32 operands) takes B only K-major; W's blocks are
  # stored [in, out] (N-major), so it gets them transposed -- one pass over
  # W per call -- and reads the shared-memory tile through a transpose.
  values_transposed = jnp.dtype(x.dtype) == jnp.float32
  if values_transposed:
    values = jnp.swapaxes(values, 1, 2)
  kernel = plgpu.kernel(
      functools.partial(_fwd_body, bs=bs, bm=BATCH_TILE,
                        values_transposed=values_transposed),
      out_type=jax.ShapeDtypeStruct((x.shape[0], n_out), x.dtype),
      grid=(x.shape[0] // BATCH_TILE, n_out // bs),
      grid_names=("m", "j"),
      compiler_params=plgpu.CompilerParams(
          lowering_semantics=plgpu.LoweringSemantics.Warpgroup),
      interpret=_InterpretParams(detect_races=True) if interpret else False,
      kernel_name="bsmm_fwd_mosaic",
  )
  out = kernel(col_ptr, col_order, row_idx, x, values)
  return out[:batch] if pad else out
