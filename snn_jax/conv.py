"""``sparse_conv2d``: a 2-D convolution whose kernel is a weight-level
sparse matrix, with its custom VJP.

The kernel is a block-size-1 ``BlockCSR`` of shape ``(C * kh * kw, O)``:
row ``c * kh * kw + i * kw + j`` is input channel ``c`` at kernel offset
``(i, j)`` -- the channel-major patch order of
``lax.conv_general_dilated_patches`` -- and column ``o`` the output
channel. This is how a magnitude-pruned convolution is stored (Alford et
al. 2019 prune per weight, every layer carrying a mask; ``nn.AlfordLeNet5``)
and how a channel-level topology expands (``nn.expand_channel_topology``,
``nn.LeNet5``).

Implementations (``impl``):
  ``"native_cpu"`` C++ kernels through XLA's FFI (``kernels/native/
                   conv_cpu.cc``): forward, dX and dW multiply only the
                   stored weights -- ``nnz * Ho * Wo * B`` multiply-adds
                   each -- on all cores, bit-identical for any thread
                   count; float32, CPU backend, stride 1. A dense weight
                   gradient is never formed.
  ``"dense"``      the stored weights scattered into a dense kernel and one
                   ``lax.conv_general_dilated`` (every backend and dtype;
                   its weight gradient is the dense one, gathered at the
                   stored entries).
  ``"auto"``       ``"native_cpu"`` on the CPU backend for float32 where it
                   was built and the kernel's density (stored entries /
                   ``C * kh * kw * O``) is below
                   ``kernels.tuning.CPU_CONV_DENSE_THRESHOLD`` (measured:
                   where a training step's convolution, forward + dX + dW,
                   ran faster dense; BUILD_NOTES.md); ``"dense"`` otherwise.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from snn_jax.kernels import native_cpu, tuning
from snn_jax.sparse import BlockCSR
from snn_jax.utils.env import target_device

CONV_IMPLS = ("auto", "native_cpu", "dense")
PADDINGS = ("SAME", "VALID")
LAYOUTS = ("NHWC", "CHWB")


@dataclasses.dataclass(frozen=True)
class _ConvStatic:
  """Hashable static geometry of one native call (the custom_vjp's
  nondiff argument)."""
  kernel_size: tuple[int, int]
  pads: tuple[tuple[int, int], tuple[int, int]]  # (top, bottom), (left, right)


def same_pads(kernel_size: tuple[int, int]) -> tuple[tuple[int, int], ...]:
  """XLA's ``"SAME"`` padding at stride 1: ``k - 1`` in all, the smaller
  half before."""
  return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size)


def resolve_conv_impl(impl: str, density: float, dtype, backend: str) -> str:
  """The implementation ``sparse_conv2d`` runs for ``impl`` (module
  docstring); raises ``ValueError`` for a native request it cannot serve."""
  if impl not in CONV_IMPLS:
    raise ValueError(f"unknown convolution impl {impl!r}; known: "
                     f"{', '.join(CONV_IMPLS)}")
  native_ok = (backend == "cpu" and native_cpu.AVAILABLE
               and jnp.dtype(dtype) == jnp.float32)
  if impl == "native_cpu" and not native_ok:
    why = (f"the backend is {backend!r}" if backend != "cpu" else
           native_cpu.UNAVAILABLE_REASON if not native_cpu.AVAILABLE else
           f"the dtype is {jnp.dtype(dtype).name}")
    raise ValueError("impl 'native_cpu' runs float32 convolutions on the CPU "
                     f"backend where it was built; here {why}; use "
                     "impl='dense'")
  if impl == "auto":
    return ("native_cpu" if native_ok
            and density < tuning.CPU_CONV_DENSE_THRESHOLD else "dense")
  return impl


def dense_kernel_hwio(kernel: jax.Array, kernel_size: tuple[int, int]
                      ) -> jax.Array:
  """``[C * kh * kw, O]`` (patch rows, channel-major) -> ``[kh, kw, C, O]``."""
  kh, kw = kernel_size
  c = kernel.shape[0] // (kh * kw)
  return jnp.transpose(kernel.reshape(c, kh, kw, kernel.shape[1]), (1, 2, 0, 3))


def conv2d_dense(x: jax.Array, kernel: jax.Array, kernel_size: tuple[int, int],
                 padding: str, layout: str = "NHWC") -> jax.Array:
  """The ``"dense"`` implementation on a dense ``[C * kh * kw, O]`` kernel."""
  spec = "CHWN" if layout == "CHWB" else "NHWC"
  return jax.lax.conv_general_dilated(
      x, dense_kernel_hwio(kernel, kernel_size).astype(x.dtype), (1, 1),
      padding, dimension_numbers=(spec, "HWIO", spec))


def add_channel_bias(y: jax.Array, bias: jax.Array | None,
                     layout: str = "NHWC") -> jax.Array:
  """``y`` plus ``bias[O]`` along the channel axis of ``layout``."""
  if bias is None:
    return y
  return y + (bias[None, None, None, :] if layout == "NHWC"
              else bias[:, None, None, None])


def _pad_hw(x, pads):
  return jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


# The native kernels take and return plane-major [C, H, W, B] float32; an
# NHWC call is transposed on the way in and out ((3, 1, 2, 0) is its own
# inverse).
_TO_OTHER_LAYOUT = (3, 1, 2, 0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _native_conv(s: _ConvStatic, x, values, row_ptr, col_idx, row_idx, col_ptr,
                 col_order):
  return _native_conv_fwd(s, x, values, row_ptr, col_idx, row_idx, col_ptr,
                          col_order)[0]


def _native_conv_fwd(s, x, values, row_ptr, col_idx, row_idx, col_ptr,
                     col_order):
  """``x``: [C, H, W, B] float32."""
  xp = _pad_hw(x, s.pads)
  y = native_cpu.conv_fwd_native(xp, values, row_idx, col_ptr, col_order,
                                 kernel_size=s.kernel_size)
  return y, (xp, x.shape[1:3], values, row_ptr, col_idx, row_idx, col_ptr,
             col_order)


def _native_conv_bwd(s, res, dy):
  xp, input_hw, values, row_ptr, col_idx, row_idx, col_ptr, col_order = res
  dvalues = native_cpu.conv_dw_native(xp, dy, row_idx, col_ptr, col_order,
                                      kernel_size=s.kernel_size)
  dx = native_cpu.conv_dx_native(
      dy, values, row_ptr, col_idx, kernel_size=s.kernel_size,
      input_hw=input_hw, pads_before=(s.pads[0][0], s.pads[1][0]))
  return (dx, dvalues.reshape(values.shape).astype(values.dtype),
          None, None, None, None, None)


_native_conv.defvjp(_native_conv_fwd, _native_conv_bwd)


def sparse_conv2d(x: jax.Array, w: BlockCSR, *,
                  kernel_size: tuple[int, int] = (5, 5), padding: str = "SAME",
                  bias: jax.Array | None = None, impl: str = "auto",
                  layout: str = "NHWC") -> jax.Array:
  """Stride-1 2-D convolution of ``x`` with the weight-level sparse kernel
  ``w`` (module docstring), ``+ bias`` if given.

  Args:
    x: float32 or bfloat16 ``[B, H, W, C]`` (layout ``"NHWC"``) or
      ``[C, H, W, B]`` (``"CHWB"``: plane-major, batch innermost -- the
      native kernels' own layout, so a network that keeps its activations
      that way between convolutions pays no transposes).
    w: block-size-1 ``BlockCSR`` of shape ``(C * kh * kw, O)``, ``x``'s dtype.
    kernel_size: ``(kh, kw)``.
    padding: ``"SAME"`` (output ``H x W``) or ``"VALID"`` (``H - kh + 1``
      by ``W - kw + 1``).
    bias: optional ``[O]`` in ``x``'s dtype.
    impl: ``"auto"``, ``"native_cpu"`` or ``"dense"``.
    layout: ``"NHWC"`` or ``"CHWB"``, of ``x`` and of the result.

  Returns:
    ``[B, Ho, Wo, O]`` (NHWC) or ``[O, Ho, Wo, B]`` (CHWB) in ``x.dtype``.
  """
  if not isinstance(w, BlockCSR):
    raise TypeError(f"w must be a snn_jax.sparse.BlockCSR, got {type(w).__name__}")
  kernel_size = tuple(int(k) for k in kernel_size)
  if len(kernel_size) != 2 or min(kernel_size) < 1:
    raise ValueError(f"kernel_size must be two positive ints, got {kernel_size}")
  kh, kw = kernel_size
  x = jnp.asarray(x)
  if layout not in LAYOUTS:
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
  channel_axis = 3 if layout == "NHWC" else 0
  if w.block_size != 1:
    raise ValueError("a convolution's weight is weight-level: block_size 1, "
                     f"got {w.block_size}")
  if x.ndim != 4 or w.shape[0] != x.shape[channel_axis] * kh * kw:
    raise ValueError(
        f"x must be {layout} with C * {kh} * {kw} = {w.shape[0]} (the "
        f"weight's rows), got shape {x.shape}")
  if x.dtype not in (jnp.float32, jnp.bfloat16) or x.dtype != w.values.dtype:
    raise TypeError(f"x and w.values must both be float32 or both bfloat16, "
                    f"got {x.dtype} and {w.values.dtype}")
  if padding not in PADDINGS:
    raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
  pads = same_pads(kernel_size) if padding == "SAME" else ((0, 0), (0, 0))
  ho = x.shape[1] + sum(pads[0]) - kh + 1
  wo = x.shape[2] + sum(pads[1]) - kw + 1
  if ho < 1 or wo < 1:
    raise ValueError(f"a {kernel_size} kernel with {padding} padding does not "
                     f"fit a {x.shape[1]}x{x.shape[2]} image")
  n_out = w.shape[1]
  if bias is not None:
    bias = jnp.asarray(bias)
    if bias.shape != (n_out,) or bias.dtype != x.dtype:
      raise ValueError(f"bias must be [{n_out}] {x.dtype}, got "
                       f"{bias.shape} {bias.dtype}")
  density = w.nnzb / (w.shape[0] * n_out)
  chosen = resolve_conv_impl(impl, density, x.dtype, target_device().platform)
  batch = x.shape[3 - channel_axis]
  if chosen == "dense" or batch == 0:
    y = conv2d_dense(x, w.to_dense(), kernel_size, padding, layout)
  else:
    planes = x if layout == "CHWB" else jnp.transpose(x, _TO_OTHER_LAYOUT)
    y = _native_conv(_ConvStatic(kernel_size, pads), planes, w.values,
                     w.row_ptr, w.col_idx, w.row_idx, w.col_ptr, w.col_order)
    if layout == "NHWC":
      y = jnp.transpose(y, _TO_OTHER_LAYOUT)
  return add_channel_bias(y, bias, layout)
