"""``bsmm``: the one public block-sparse matmul, with its custom VJP.

``y = bsmm(x, w)`` computes ``x @ W`` for a dense ``x[..., n_in]`` and a
``BlockCSR`` ``w`` of shape ``(n_in, n_out)``. Reverse mode is wired here and
only here (``jax.custom_vjp``): ``dx = dy @ W.T`` runs the forward-style
kernel over the row-ordered view, ``dW`` is the SDDMM at W's stored blocks --
a dense weight gradient is never formed (except by ``impl="dense"``, the
reference). Index arrays get no cotangent. Only the cotangents asked for
are formed (the VJP's symbolic zeros): no dX for an undifferentiated ``x``
such as a first layer's data, no dW for frozen weights; where both are
wanted at block size 1 on the native kernels, one fused call forms them,
reading ``dy`` once (``kernels.native_cpu.bsmm_bwd_native``).

Implementations (``impl``):
  ``"xla"``        gather/scatter kernels, every backend (``kernels/xla.py``);
  ``"native_cpu"`` C++ kernels through XLA's FFI on the CPU backend, every
                   block size, forward, dX and dW, all cores, deterministic
                   (``kernels/native_cpu.py``; built by ``pip install -e .``);
  ``"pallas"``     Pallas for the target's platform: Triton on GPU (Mosaic
                   GPU where this JAX has no Triton backend), Mosaic on TPU;
                   on CPU the GPU kernels run in interpret mode (slow -- for
                   testing);
  ``"pallas_gpu"``, ``"pallas_tpu"``  a specific Pallas kernel (interpret mode
                   off its hardware);
  ``"mosaic_gpu"`` the Mosaic GPU forward kernel (Hopper and newer, block
                   sizes 64 and 128; ``kernels/mosaic_gpu.py``) with the
                   Triton backward kernels (XLA's where Triton is absent);
  ``"dense"``      masked dense matmul (the weights laid out densely, one
                   ``jnp.dot``; dW sampled at the stored blocks);
  ``"auto"``       A *fully stored* matrix (every block present, e.g. the
                   ``dense`` topology) is one dense ``jnp.dot`` on the
                   values laid out as [n_in, n_out] -- block kernels would
                   only add overhead there. Otherwise CPU: dense from the
                   block density where the committed benchmark measured it
                   faster for a training step
                   (``kernels.tuning.cpu_dense_threshold``: 0.29 at block
                   size 1, 0.32 at 8, 0.72 at 32, 0.64 at 128), below it
                   native_cpu where it was built (else xla, with one
                   warning saying why).
                   GPU: pallas_gpu for block sizes 16/32/64/128, else xla;
                   where this JAX has no Triton backend, mosaic_gpu on
                   compute capability >= 9 at block sizes 64/128. TPU:
                   pallas_tpu for block sizes that are multiples of 128
                   up to 1024, else xla. (Measurements behind these: BUILD_NOTES.md.)
                   "Target" is ``target_device()``: ``jax.default_device``
                   when set -- which is how a deviceless compile names the
                   card it compiles for -- else the first device.
No kernel path depends on ``jax.experimental.sparse``; its BCSR product
(``kernels/csr_cpu.py``) remains a benchmark baseline only.
``backward_impl`` (default: same as ``impl``) picks the backward kernels
separately -- e.g. debug a Pallas forward against the trusted XLA backward.

dtypes: float32 and bfloat16 (``x`` and ``w.values`` must match); every
kernel accumulates in float32 and returns ``x.dtype``.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp

from snn_jax.kernels import (mosaic_gpu, native_cpu, pallas_gpu, pallas_tpu,
                             reference, tuning, xla)
from snn_jax.sparse import BlockCSR
from snn_jax.utils.env import target_device  # also this module's API (re-exported)

IMPLS = ("auto", "xla", "native_cpu", "pallas", "pallas_gpu", "pallas_tpu",
         "mosaic_gpu", "dense")
_warned_no_native = False
_SUPPORTED_DTYPES = (jnp.float32, jnp.bfloat16)


@dataclasses.dataclass(frozen=True)
class _Static:
  """Hashable static options of one bsmm call (the custom_vjp's nondiff arg)."""
  impl: str
  backward_impl: str
  interpret: bool
  n_in: int
  n_out: int
  block_size: int
  device_kind: str


def resolve_impl(impl: str, block_size: int, backend: str | None = None,
                 density: float | None = None,
                 compute_capability: float | None = None) -> str:
  """The concrete kernel family ``impl`` means on ``backend`` (default: the
  platform of ``target_device()``): one of xla, native_cpu, pallas_gpu,
  pallas_tpu, mosaic_gpu, dense.

  ``auto`` on CPU picks ``dense`` when the block density (stored blocks /
  all blocks) is at least ``kernels.tuning.cpu_dense_threshold(block_size)``
  -- where the committed benchmark measured dense ``jnp.dot`` faster than
  the native kernel for a training step (e.g. 0.29 at block size 1, 0.72
  at 32) -- and the native kernel below it. On GPU, ``compute_capability``
  (e.g. 9.0; None: unknown) admits the Mosaic GPU kernel where this JAX
  has no Triton backend."""
  global _warned_no_native
  if impl == "csr_cpu":
    raise ValueError("impl 'csr_cpu' is gone: it ran on jax.experimental."
                     "sparse, which JAX no longer develops; use 'native_cpu' "
                     "(every block size) or 'auto'")
  if impl not in IMPLS:
    raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
  backend = backend or target_device().platform
  if impl == "auto":
    if backend == "gpu":
      if pallas_gpu.AVAILABLE and block_size in pallas_gpu.BLOCK_SIZES:
        return "pallas_gpu"
      if (mosaic_gpu.supports(block_size) and compute_capability is not None
          and compute_capability >= 9):
        return "mosaic_gpu"
      return "xla"
    if backend == "tpu" and pallas_tpu.supports(block_size):
      return "pallas_tpu"
    if backend == "cpu":
      if density is not None and density >= tuning.cpu_dense_threshold(
          block_size):
        return "dense"
      if native_cpu.AVAILABLE:
        return "native_cpu"
      if not _warned_no_native:
        _warned_no_native = True
        warnings.warn(f"snn_jax: {native_cpu.UNAVAILABLE_REASON}; impl='auto' "
                      "uses the slower XLA kernels on CPU", RuntimeWarning,
                      stacklevel=3)
    return "xla"
  if impl == "pallas":
    if backend == "tpu":
      return "pallas_tpu"
    return "pallas_gpu" if pallas_gpu.AVAILABLE else "mosaic_gpu"
  return impl


def _compute_capability(device: jax.Device) -> float | None:
  cc = getattr(device, "compute_capability", None)
  try:
    return float(cc) if cc is not None else None
  except ValueError:
    return None


def _backward_of_mosaic(block_size: int) -> str:
  """The backward kernels paired with the forward-only Mosaic GPU kernel."""
  if pallas_gpu.AVAILABLE and block_size in pallas_gpu.BLOCK_SIZES:
    return "pallas_gpu"
  return "xla"




def _gpu_tiles(s: _Static, dtype) -> tuning.GpuTiles:
  return tuning.gpu_tiles(s.device_kind, s.block_size, jnp.dtype(dtype).name)


def _tpu_tile(s: _Static, dtype) -> int:
  return tuning.tpu_batch_tile(s.device_kind, s.block_size,
                               jnp.dtype(dtype).name)


def _xla_options(s: _Static, values) -> dict:
  nnzb = values.shape[0]
  return dict(strategy=tuning.xla_strategy(s.block_size, nnzb),
              chunk=tuning.xla_chunk(s.block_size, nnzb))


def _forward(s: _Static, x, values, row_ptr, col_idx, row_idx, col_ptr,
             col_order):
  if s.impl == "xla":
    return xla.bsmm_fwd_xla(x, values, row_idx, col_idx, col_order,
                            n_out=s.n_out,
                            **_xla_options(s, values))
  if s.impl == "native_cpu":
    return native_cpu.bsmm_fwd_native(
        x, values, row_idx, col_ptr, col_order, n_out=s.n_out,
        feature_major_operands=native_cpu.feature_major(s.block_size))
  if s.impl == "pallas_gpu":
    t = _gpu_tiles(s, x.dtype)
    return pallas_gpu.bsmm_fwd_pallas(
        x, values, col_ptr, col_order, row_idx, n_out=s.n_out,
        batch_tile=t.batch_tile, num_warps=t.num_warps,
        num_stages=t.num_stages, interpret=s.interpret)
  if s.impl == "mosaic_gpu":
    return mosaic_gpu.bsmm_fwd_mosaic(x, values, col_ptr, col_order, row_idx,
                                      n_out=s.n_out, interpret=s.interpret)
  if s.impl == "pallas_tpu":
    return pallas_tpu.bsmm_fwd_pallas_tpu(
        x, values, col_ptr, col_order, row_idx, n_out=s.n_out,
        batch_tile=_tpu_tile(s, x.dtype), interpret=s.interpret)
  return reference.bsmm_reference(x, values, row_idx, col_idx, n_out=s.n_out)


def _dx(s: _Static, dy, values, row_ptr, col_idx, row_idx):
  impl = s.backward_impl
  if impl == "native_cpu":
    return native_cpu.bsmm_dx_native(
        dy, values, row_ptr, col_idx, n_in=s.n_in,
        feature_major_operands=native_cpu.feature_major(s.block_size))
  if impl == "xla":
    return xla.bsmm_dx_xla(dy, values, row_idx, col_idx, n_in=s.n_in,
                           **_xla_options(s, values))
  if impl == "pallas_gpu":
    t = _gpu_tiles(s, dy.dtype)
    return pallas_gpu.bsmm_dx_pallas(
        dy, values, row_ptr, col_idx, n_in=s.n_in, batch_tile=t.batch_tile,
        num_warps=t.num_warps, num_stages=t.num_stages, interpret=s.interpret)
  if impl == "pallas_tpu":
    return pallas_tpu.bsmm_dx_pallas_tpu(
        dy, values, row_ptr, col_idx, n_in=s.n_in,
        batch_tile=_tpu_tile(s, dy.dtype), interpret=s.interpret)
  return reference.dx_reference(dy, values, row_idx, col_idx, n_in=s.n_in)


def _dw(s: _Static, x, dy, values, row_idx, col_idx):
  impl = s.backward_impl
  if impl == "native_cpu":
    return native_cpu.sddmm_native(
        x, dy, row_idx, col_idx, block_size=s.block_size, out_dtype=values.dtype,
        feature_major_operands=native_cpu.feature_major(s.block_size))
  if impl == "xla":
    return xla.sddmm_xla(x, dy, row_idx, col_idx, block_size=s.block_size,
                         out_dtype=values.dtype, **_xla_options(s, values))
  if impl == "pallas_gpu":
    t = _gpu_tiles(s, x.dtype)
    return pallas_gpu.sddmm_pallas(
        x, dy, row_idx, col_idx, block_size=s.block_size,
        batch_tile=t.batch_tile, num_warps=t.num_warps,
        num_stages=t.num_stages, interpret=s.interpret, out_dtype=values.dtype)
  if impl == "pallas_tpu":
    return pallas_tpu.sddmm_pallas_tpu(
        x, dy, row_idx, col_idx, block_size=s.block_size,
        batch_tile=_tpu_tile(s, x.dtype), interpret=s.interpret,
        out_dtype=values.dtype)
  return reference.sddmm_reference(x, dy, row_idx, col_idx, values)


def _full_matmul(x: jax.Array, w: BlockCSR) -> jax.Array:
  """``x @ W`` for a BlockCSR holding every block: a validated structure with
  all blocks stored lists them row-major, so the values are the dense matrix
  up to a transpose of the block grid. Ordinary autodiff gives dvalues."""
  bs = w.block_size
  dense = w.values.reshape(w.n_row_blocks, w.n_col_blocks, bs, bs).transpose(
      0, 2, 1, 3).reshape(w.shape)
  return jnp.dot(x, dense, preferred_element_type=jnp.float32).astype(x.dtype)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class _Needs:
  """Which cotangents a backward forms, from the custom VJP's symbolic
  zeros (``CustomVJPPrimal.perturbed``): ``dx`` only where ``x`` is
  differentiated (not for a network's first layer, whose ``x`` is the data),
  ``dvalues`` only where the weights are, ``dbias`` where the bias is. A
  static pytree node: it rides in the residuals without becoming an array."""
  dx: bool
  dvalues: bool
  dbias: bool = False


def _backward(s: _Static, needs: _Needs, x, values, row_ptr, col_idx, row_idx,
              dy):
  """``(dx, dvalues)``, each None where ``needs`` says it is not wanted. Both
  wanted at block size 1 on the native kernels: one fused call that reads
  ``dy`` once for the two (``native_cpu.bsmm_bwd_native``, the same bits as
  the two calls)."""
  if (needs.dx and needs.dvalues and s.backward_impl == "native_cpu"
      and s.block_size == 1):
    return native_cpu.bsmm_bwd_native(
        x, dy, values, row_ptr, col_idx, row_idx,
        feature_major_operands=native_cpu.feature_major(s.block_size))
  dx = _dx(s, dy, values, row_ptr, col_idx, row_idx) if needs.dx else None
  dvalues = _dw(s, x, dy, values, row_idx, col_idx) if needs.dvalues else None
  return dx, dvalues


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _bsmm(s: _Static, x, values, row_ptr, col_idx, row_idx, col_ptr, col_order):
  return _forward(s, x, values, row_ptr, col_idx, row_idx, col_ptr, col_order)


def _bsmm_fwd(s, x, values, row_ptr, col_idx, row_idx, col_ptr, col_order):
  # symbolic_zeros: the arrays come as CustomVJPPrimal (value, perturbed).
  needs = _Needs(dx=x.perturbed, dvalues=values.perturbed)
  x, values, row_ptr, col_idx, row_idx, col_ptr, col_order = (
      a.value for a in (x, values, row_ptr, col_idx, row_idx, col_ptr,
                        col_order))
  y = _forward(s, x, values, row_ptr, col_idx, row_idx, col_ptr, col_order)
  return y, (needs, x, values, row_ptr, col_idx, row_idx)


def _bsmm_bwd(s, res, dy):
  needs, x, values, row_ptr, col_idx, row_idx = res
  if isinstance(dy, jax.custom_derivatives.SymbolicZero):
    return (None,) * 7
  dx, dvalues = _backward(s, needs, x, values, row_ptr, col_idx, row_idx, dy)
  return dx, dvalues, None, None, None, None, None


_bsmm.defvjp(_bsmm_fwd, _bsmm_bwd, symbolic_zeros=True)


def _dbias(s: _Static, dy):
  if s.backward_impl == "native_cpu":
    return native_cpu.bias_grad_native(
        dy, feature_major_operands=native_cpu.feature_major(s.block_size))
  return jnp.sum(dy, axis=0, dtype=jnp.float32).astype(dy.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _bsmm_bias(s: _Static, x, values, bias, row_ptr, col_idx, row_idx, col_ptr,
               col_order):
  return _forward(s, x, values, row_ptr, col_idx, row_idx, col_ptr,
                  col_order) + bias[None, :]


def _bsmm_bias_fwd(s, x, values, bias, row_ptr, col_idx, row_idx, col_ptr,
                   col_order):
  y, (needs, *res) = _bsmm_fwd(s, x, values, row_ptr, col_idx, row_idx,
                               col_ptr, col_order)
  needs = dataclasses.replace(needs, dbias=bias.perturbed)
  return y + bias.value[None, :], (needs, *res)


def _bsmm_bias_bwd(s, res, dy):
  needs = res[0]
  if isinstance(dy, jax.custom_derivatives.SymbolicZero):
    return (None,) * 8
  dx, dvalues = _backward(s, *res, dy)
  dbias = _dbias(s, dy) if needs.dbias else None
  return (dx, dvalues, dbias, None, None, None, None, None)


_bsmm_bias.defvjp(_bsmm_bias_fwd, _bsmm_bias_bwd, symbolic_zeros=True)


def bsmm(x: jax.Array, w: BlockCSR, *, bias: jax.Array | None = None,
         impl: str = "auto", backward_impl: str | None = None,
         interpret: bool | None = None) -> jax.Array:
  """Block-sparse matmul ``x @ W`` (see module docstring), ``+ bias`` if given.

  Args:
    x: float32 or bfloat16 ``[..., n_in]``; any leading dimensions.
    w: ``BlockCSR`` of shape ``(n_in, n_out)`` and the same dtype. Its
      constructors keep the index arrays on the host (NumPy); a jitted
      function that takes ``w`` as an argument copies host arrays to the
      device on every call, so place it there once (``w =
      jax.device_put(w)``) or close over it: at 1000 x 1000, 4.5 %, batch
      128 on the 2-core CPU the copy was about 40 % of the forward's time
      (BUILD_NOTES.md). The Flax layers hold theirs on the device.
    bias: optional ``[n_out]`` in ``x``'s dtype, added to every row. Its
      gradient (``dy`` summed over the rows) is computed in the custom VJP
      beside dX and dW, by the backward kernels' family: natively on CPU,
      reading ``dy`` in the layout those kernels take it (XLA's own
      reduction of a feature-major ``dy`` first copies it back to
      batch-major, which cost more than the sum; BUILD_NOTES.md).
    impl: ``"auto"``, ``"xla"``, ``"native_cpu"``, ``"pallas"``,
      ``"pallas_gpu"``, ``"pallas_tpu"``, ``"mosaic_gpu"`` or ``"dense"``
      (module docstring).
    backward_impl: kernels for the backward pass (default: ``impl``).
    interpret: run Pallas kernels in interpret mode (default: only where the
      backend is not the kernel's hardware).

  Returns:
    ``[..., n_out]`` in ``x.dtype``.

  Example:
    >>> import numpy as np, jax.numpy as jnp
    >>> from snn_jax.sparse import BlockCSR
    >>> w = BlockCSR.from_dense(np.eye(4, dtype=np.float32), 2)
    >>> bsmm(jnp.ones((3, 4)), w).shape
    (3, 4)
  """
  if not isinstance(w, BlockCSR):
    raise TypeError(f"w must be a snn_jax.sparse.BlockCSR, got {type(w).__name__}")
  x = jnp.asarray(x)
  n_in, n_out = w.shape
  if x.ndim < 1 or x.shape[-1] != n_in:
    raise ValueError(
        f"x must have shape [..., {n_in}] to multiply a {w.shape} BlockCSR, "
        f"got {x.shape}"
    )
  if x.dtype not in _SUPPORTED_DTYPES:
    raise TypeError(f"x must be float32 or bfloat16, got {x.dtype}")
  if x.dtype != w.values.dtype:
    raise TypeError(
        f"x is {x.dtype} but w.values is {w.values.dtype}; cast one of them"
    )
  if bias is not None:
    bias = jnp.asarray(bias)
    if bias.shape != (n_out,):
      raise ValueError(f"bias must have shape ({n_out},) for a {w.shape} "
                       f"BlockCSR, got {bias.shape}")
    if bias.dtype != x.dtype:
      raise TypeError(f"bias is {bias.dtype} but x is {x.dtype}; cast one of "
                      "them")
  if impl == "auto" and backward_impl is None and (
      w.nnzb == w.n_row_blocks * w.n_col_blocks):
    y = _full_matmul(x, w)
    return y if bias is None else y + bias.reshape((1,) * (y.ndim - 1) + (-1,))
  target = target_device()
  backend = target.platform
  density = w.nnzb / (w.n_row_blocks * w.n_col_blocks)
  cc = _compute_capability(target)
  fwd = resolve_impl(impl, w.block_size, backend, density, cc)
  if backward_impl is not None:
    bwd = resolve_impl(backward_impl, w.block_size, backend, density, cc)
  elif fwd == "mosaic_gpu":
    bwd = _backward_of_mosaic(w.block_size)
  else:
    bwd = fwd
  if bwd == "mosaic_gpu":
    raise ValueError("the Mosaic GPU kernel is forward only; pass "
                     "backward_impl='pallas_gpu' or 'xla' (or leave it unset)")
  if interpret is None:
    on_hw = {"pallas_gpu": "gpu", "pallas_tpu": "tpu", "mosaic_gpu": "gpu"}
    interpret = any(on_hw.get(i, backend) != backend for i in (fwd, bwd))
  for i in (fwd, bwd):
    if i == "pallas_gpu" and w.block_size not in pallas_gpu.BLOCK_SIZES:
      raise ValueError(
          f"impl {i!r} takes block sizes {pallas_gpu.BLOCK_SIZES}, got "
          f"{w.block_size}; use impl='xla'")
    if i == "mosaic_gpu" and not mosaic_gpu.supports(w.block_size):
      raise ValueError(
          f"impl {i!r} takes block sizes {mosaic_gpu.BLOCK_SIZES} on a JAX "
          f"with Pallas' Mosaic GPU backend, got {w.block_size}"
          + ("" if mosaic_gpu.AVAILABLE else " (this JAX has none)")
          + "; use impl='pallas_gpu' or 'xla'")
    if i == "pallas_tpu" and not pallas_tpu.supports(w.block_size):
      raise ValueError(
          f"impl {i!r} needs block_size a multiple of {pallas_tpu.LANE} up to "
          f"{pallas_tpu.MAX_BLOCK_SIZE}, got {w.block_size}; use impl='xla'")
    if i == "native_cpu" and (backend != "cpu" or not native_cpu.AVAILABLE):
      raise ValueError(
          "impl 'native_cpu' runs on the CPU backend only, and only where it "
          f"was built; here the backend is {backend!r}"
          + ("" if native_cpu.AVAILABLE else
             f" and {native_cpu.UNAVAILABLE_REASON}") + "; use impl='xla'")
  on_accel = {"pallas_gpu", "pallas_tpu", "mosaic_gpu"} & {fwd, bwd}
  device_kind = target.device_kind if on_accel else ""
  s = _Static(fwd, bwd, bool(interpret), n_in, n_out, w.block_size, device_kind)
  lead = x.shape[:-1]
  x2 = x.reshape(-1, n_in)
  if x2.shape[0] == 0:
    return jnp.zeros((*lead, n_out), x.dtype)
  if bias is None:
    y = _bsmm(s, x2, w.values, w.row_ptr, w.col_idx, w.row_idx, w.col_ptr,
              w.col_order)
  else:
    y = _bsmm_bias(s, x2, w.values, bias, w.row_ptr, w.col_idx, w.row_idx,
                   w.col_ptr, w.col_order)
  return y.reshape(*lead, n_out)
