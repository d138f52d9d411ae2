"""Native CPU kernels (C++, XLA FFI) for every block size, f32 and bf16.

The C++ source is ``kernels/native/bsmm_cpu.cc``; ``pip install -e .``
compiles it once per CPU target (x86-64-v4 / v3 / v2, ARMv8 NEON;
``setup.py``) into ``snn_jax.kernels._native_cpu_<target>``, and this module
loads at import the best one this CPU runs, by its feature flags
(``TARGET``; ``COMPILED_TARGETS``; ``SNN_JAX_NATIVE_TARGET=<target>``
forces one, refused where the CPU lacks its instructions). Targets differ
in the last bits (vector width, fused multiply-adds), never by more than
float32 rounding; within a target the bits do not depend on the thread
count. Where the build failed or no compiler exists, the package still
installs and imports: ``AVAILABLE`` is False, ``UNAVAILABLE_REASON`` says
why, and ``snn_jax.ops`` (``impl="auto"``) falls back to the XLA kernels
with one warning.

Four FFI targets over the ``BlockCSR`` arrays as they are (no re-sorting,
no copies of the weights):

  ``bsmm_fwd_native(x, values, row_idx, col_ptr, col_order, n_out)``
      ``y = x @ W``, a gather over the column view;
  ``bsmm_dx_native(dy, values, row_ptr, col_idx, n_in)``
      ``dx = dy @ W.T``, a gather over the row view (the transpose metadata);
  ``sddmm_native(x, dy, row_idx, col_idx, block_size)``
      ``dW`` at the stored blocks only;
  ``bsmm_bwd_native(x, dy, values, row_ptr, col_idx, row_idx)``
      ``(dx, dW)`` at block size 1 in one pass over the row view, each row
      of ``dy`` a stored weight names read once for both (the same bits
      as the two calls above; what ``snn_jax.ops`` runs where both are
      wanted).

the bias gradient beside them:

  ``bias_grad_native(dy)``
      ``db[n_out]``: ``dy`` summed over the batch, read in the layout the
      other two backward kernels take it (so XLA does not copy a
      feature-major ``dy`` back to batch-major for its own reduction);

and one for inference through a stack of block-size-1 layers:

  ``relu_layers_native(y, <row view>, <column view>, start, length, bias, ymax)``
      ``y <- min(max(y @ W_l + bias, 0), ymax)`` for ``length`` stacked
      layers from ``start`` (the Sparse DNN Graph Challenge's layer), rows
      that die dropped inside, each layer a scatter over the nonzeros of
      ``y`` where it is sparse and the forward's gather where it is not.

Shapes: ``x: [B, n_in]``, ``dy: [B, n_out]``, ``values: [nnzb, bs, bs]``,
index arrays int32. At block sizes that are not multiples of 32 the kernels
compute on feature-major operands (``n`` rows of ``B`` batch entries); with
``feature_major_operands=True`` (what ``snn_jax.ops`` passes where
:func:`feature_major` holds) XLA hands the dense operands over, and takes
the result back, in that layout (``ffi_call``'s operand layouts), so inside
a network the transposes fold into the neighbouring fusions; otherwise the
kernel transposes them itself, twice per call. float32 or bfloat16
(accumulation in float32). Threads: by default XLA's own intra-op pool,
which XLA hands to every call (:func:`set_thread_pool` switches to a pool
of the module's own), up to the machine's hardware threads
(``SNN_JAX_NATIVE_THREADS`` overrides; :func:`set_num_threads`); each output
element is computed by one task in one fixed order, so every pool and
thread count gives the same bits. Under
``vmap`` the calls run once per batch element (``vmap_method="sequential"``).

On a mesh (``jit`` over arrays split along the batch axis, as
``snn_jax.training.parallel`` places them) each call is partitioned, not
gathered: every device runs the kernel on its own rows of ``x``/``dy``
with the weights replicated, and the two kernels that sum over the batch
(``sddmm_native``, ``bias_grad_native``) add the devices' partial results
with one all-reduce in float32 (``jax.experimental.custom_partitioning``).
Per device the bits are those of a one-device call on its rows; the sum
over devices is in XLA's all-reduce order.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec

# The compiled targets, best first (setup.py builds one module per target)
# and the CPU features each needs, as Linux's /proc/cpuinfo names them:
# x86-64 microarchitecture levels v4 / v3 / v2 (the psABI's lists), NEON on
# aarch64. ``native`` (a ``-march=native`` build) and ``generic`` (no
# -march) need nothing said.
TARGET_FEATURES: dict[str, frozenset[str]] = {
    "native": frozenset(),
    "x86_64_v4": frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq",
                            "avx512vl", "avx2", "fma", "bmi1", "bmi2", "f16c",
                            "movbe", "abm", "xsave"}),
    "x86_64_v3": frozenset({"avx", "avx2", "fma", "bmi1", "bmi2", "f16c",
                            "movbe", "abm", "xsave"}),
    "x86_64_v2": frozenset({"sse4_1", "sse4_2", "ssse3", "popcnt", "cx16"}),
    "armv8": frozenset({"asimd"}),
    "generic": frozenset(),
}
_PACKAGE = "snn_jax.kernels"


def cpu_features() -> frozenset[str] | None:
  """The CPU's feature flags (``flags`` on x86, ``Features`` on ARM, from
  /proc/cpuinfo), or None where they cannot be read."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
          return frozenset(value.split())
  except OSError:
    pass
  return None


def compiled_targets() -> tuple[str, ...]:
  """The targets built into this install, best first."""
  found = []
  for t in TARGET_FEATURES:
    try:
      if importlib.util.find_spec(f"{_PACKAGE}._native_cpu_{t}"):
        found.append(t)
    except ImportError:  # a finder that refuses the name: not installed
      pass
  return tuple(found)


def choose_target(compiled: tuple[str, ...], features: frozenset[str] | None,
                  forced: str | None = None) -> tuple[str | None, str]:
  """(the target to load, or None; why not, when None). The best compiled
  target whose features the CPU has; where the features cannot be read,
  the last (most portable) compiled one. ``forced`` (``SNN_JAX_NATIVE_TARGET``)
  must be compiled and, where the features are known, runnable here: a
  kernel built for instructions the CPU lacks would stop the process."""
  if not compiled:
    return None, "no compiled native target is installed"
  def runs(t):
    return features is None or TARGET_FEATURES[t] <= features
  if forced:
    if forced not in compiled:
      return None, (f"SNN_JAX_NATIVE_TARGET={forced!r} is not compiled here "
                    f"(compiled: {', '.join(compiled)})")
    if not runs(forced):
      missing = sorted(TARGET_FEATURES[forced] - features)
      return None, (f"SNN_JAX_NATIVE_TARGET={forced!r} needs CPU features "
                    f"this CPU lacks ({', '.join(missing)})")
    return forced, ""
  if features is None:
    return compiled[-1], ""
  for t in compiled:
    if runs(t):
      return t, ""
  return None, (f"none of the compiled native targets ({', '.join(compiled)}) "
                "runs on this CPU")


_ext = None
AVAILABLE = False
TARGET: str | None = None
COMPILED_TARGETS = compiled_targets()
try:
  TARGET, _why = choose_target(COMPILED_TARGETS, cpu_features(),
                               os.environ.get("SNN_JAX_NATIVE_TARGET") or None)
  if TARGET is None:
    raise ModuleNotFoundError(_why)
  _ext = importlib.import_module(f"{_PACKAGE}._native_cpu_{TARGET}")
  AVAILABLE = True
  UNAVAILABLE_REASON = ""
except ModuleNotFoundError as e:  # no compiler, the build failed, or refused
  TARGET = None
  UNAVAILABLE_REASON = (
      f"the native CPU kernels were not built ({e}); reinstall with a "
      "C++17 compiler present (pip install -e .) to build them"
      if not COMPILED_TARGETS else
      f"the native CPU kernels are not loaded: {e}")
except ImportError as e:  # built, but does not load here
  TARGET = None
  UNAVAILABLE_REASON = (
      f"the native CPU kernels were built but do not load ({e}); rebuild "
      "them on this machine (pip install -e .)")

_REGISTERED = False


def _register() -> None:
  global _REGISTERED
  if _REGISTERED:
    return
  if not AVAILABLE:
    raise RuntimeError(UNAVAILABLE_REASON)
  for name, capsule in _ext.handlers().items():
    jax.ffi.register_ffi_target(name, capsule, platform="cpu")
  _REGISTERED = True


def vector_lanes() -> int:
  """float32 lanes per vector in the loaded build (16 with AVX-512, 8 with
  AVX2, 4 on the baseline and NEON)."""
  _register()
  return _ext.vector_lanes()


def num_threads() -> int:
  """Threads the native kernels use now."""
  _register()
  return _ext.num_threads()


def max_threads() -> int:
  """The most threads a call uses (``SNN_JAX_NATIVE_THREADS``, else the
  hardware's; on XLA's pool also at most its size)."""
  _register()
  return _ext.max_threads()


def set_num_threads(n: int) -> int:
  """Use at most ``n`` threads (clipped to the pool's size); returns the
  number now in use. Results do not depend on it."""
  _register()
  return _ext.set_num_threads(int(n))


def thread_pool() -> str:
  """Whose threads run the kernels' tasks: ``"xla"`` (XLA's intra-op pool,
  the default) or ``"own"`` (the module's own pool)."""
  _register()
  return _ext.thread_pool()


def set_thread_pool(name: str) -> str:
  """Run the kernels' tasks on XLA's intra-op pool (``"xla"``, the default;
  the threads that also run XLA's fusions) or on the module's own pool
  (``"own"``, ``SNN_JAX_NATIVE_POOL=own`` at start-up). Results do not depend
  on it. Returns the pool now in use."""
  _register()
  if name not in ("xla", "own"):
    raise ValueError(f"thread pool must be 'xla' or 'own', got {name!r}")
  return _ext.set_thread_pool(name)


# The row-major kernels (block sizes that are multiples of this) take
# batch-major dense operands; every other block size computes feature-major.
ROW_MAJOR_BLOCK = 32


def feature_major(block_size: int) -> bool:
  """Whether the kernels at this block size want their dense operands
  feature-major (``[B, n]`` arrays laid out ``{0,1}``: ``n`` rows of ``B``
  batch entries). Where they do, the ops layer asks XLA for that layout
  through ``ffi_call``'s operand layouts, so the transposes are folded into
  the neighbouring fusions (a ReLU, a bias add) instead of run twice per
  call inside the kernel."""
  return block_size % ROW_MAJOR_BLOCK != 0


def _batch_axis(sharding):
  """The mesh axis (or axes) that split an operand's first dimension, or
  None: replicated, unsplit, or a sharding without a mesh spec."""
  spec = getattr(sharding, "spec", None)
  if not isinstance(sharding, NamedSharding) or not spec:
    return None
  return spec[0]


@functools.lru_cache(maxsize=None)
def _partitioned(kernel, static: tuple, batch_operands: int,
                 sums_batch: bool | tuple[bool, ...], rule: str):
  """``kernel(*arrays, **dict(static))`` as a call that XLA partitions over
  the batch: the first ``batch_operands`` arrays (dense ``[B, n]``) are
  split along ``B`` as the first one is, the rest (weights, indices)
  replicated; the result is split the same way, or, with ``sums_batch``,
  replicated after a float32 all-reduce of the devices' partial sums.
  A kernel with several results gives ``sums_batch`` per result, a tuple.
  ``rule``: the Shardy sharding rule (one factor per dimension). On one
  device, and under ``vmap`` (``custom_partitioning`` has no batching rule,
  so ``custom_vmap`` maps the plain call), it is the plain call."""
  several = isinstance(sums_batch, tuple)
  sums = sums_batch if several else (sums_batch,)

  def plain(*arrays):
    return kernel(*arrays, **dict(static))

  def shardings(mesh, axis, n_args):
    split = NamedSharding(mesh, PartitionSpec(axis))
    whole = NamedSharding(mesh, PartitionSpec())
    args = tuple(split if i < batch_operands else whole for i in range(n_args))
    outs = tuple(whole if s else split for s in sums)
    return args, (outs if several else outs[0])

  def infer(mesh, arg_shapes, result_shape):
    del result_shape
    axis = _batch_axis(arg_shapes[0].sharding)
    return shardings(mesh, axis, len(arg_shapes))[1]

  def partition(mesh, arg_shapes, result_shape):
    del result_shape
    axis = _batch_axis(arg_shapes[0].sharding)
    arg_shardings, out_sharding = shardings(mesh, axis, len(arg_shapes))

    def lower(*arrays):
      outs = plain(*arrays)
      outs = outs if several else (outs,)
      if axis is not None:
        outs = tuple(
            jax.lax.psum(o.astype(jnp.float32), axis).astype(o.dtype) if s else o
            for o, s in zip(outs, sums))
      return outs if several else outs[0]

    return mesh, lower, out_sharding, arg_shardings

  on_mesh = custom_partitioning(plain)
  on_mesh.def_partition(infer_sharding_from_operands=infer,
                        partition=partition, sharding_rule=rule)
  mapped = jax.custom_batching.custom_vmap(on_mesh)

  @mapped.def_vmap
  def _vmap_rule(axis_size, in_batched, *arrays):
    del axis_size
    in_axes = tuple(0 if b else None for b in in_batched)
    return (jax.vmap(plain, in_axes=in_axes)(*arrays),
            tuple(True for _ in sums) if several else True)

  return mapped


def _call(name: str, shape, dtype, *args, dense_args=(), dense_out=False,
          feature_major_operands=False):
  """``dense_args``: indices of the dense [B, n] operands and ``dense_out``
  whether the result is one; with ``feature_major_operands`` XLA hands
  those over (and takes the result) laid out {0,1}."""
  _register()
  layouts = {}
  if feature_major_operands:
    layouts = dict(
        input_layouts=[(1, 0) if i in dense_args else None
                       for i in range(len(args))],
        output_layouts=(1, 0) if dense_out else None)
  return jax.ffi.ffi_call(name, jax.ShapeDtypeStruct(shape, dtype),
                          vmap_method="sequential", **layouts)(
                              *args, feature_major=bool(feature_major_operands))


def bsmm_fwd_native(x, values, row_idx, col_ptr, col_order, *, n_out: int,
                    feature_major_operands: bool = False):
  """``y[B, n_out] = x @ W``. ``feature_major_operands``: ``x`` and ``y``
  are handed over feature-major (only where :func:`feature_major` holds)."""
  call = _partitioned(_fwd_call, (("n_out", n_out), ("feature_major_operands",
                                   bool(feature_major_operands))),
                      1, False, "b i, k p q, k, c, k -> b o")
  return call(x, values, row_idx, col_ptr, col_order)


def _fwd_call(x, values, row_idx, col_ptr, col_order, *, n_out,
              feature_major_operands):
  return _call("snn_jax_bsmm_fwd", (x.shape[0], n_out), x.dtype, x, values,
               row_idx, col_ptr, col_order, dense_args=(0,), dense_out=True,
               feature_major_operands=feature_major_operands)


def bsmm_dx_native(dy, values, row_ptr, col_idx, *, n_in: int,
                   feature_major_operands: bool = False):
  """``dx[B, n_in] = dy @ W.T`` (``feature_major_operands``: as the forward)."""
  call = _partitioned(_dx_call, (("n_in", n_in), ("feature_major_operands",
                                  bool(feature_major_operands))),
                      1, False, "b o, k p q, r, k -> b i")
  return call(dy, values, row_ptr, col_idx)


def _dx_call(dy, values, row_ptr, col_idx, *, n_in, feature_major_operands):
  return _call("snn_jax_bsmm_dx", (dy.shape[0], n_in), dy.dtype, dy, values,
               row_ptr, col_idx, dense_args=(0,), dense_out=True,
               feature_major_operands=feature_major_operands)


def sddmm_native(x, dy, row_idx, col_idx, *, block_size: int, out_dtype=None,
                 feature_major_operands: bool = False):
  """``dvalues[nnzb, bs, bs]``: ``x.T @ dy`` at the stored blocks only
  (``feature_major_operands``: ``x`` and ``dy`` handed over feature-major)."""
  out_dtype = jnp.dtype(out_dtype or x.dtype)
  call = _partitioned(_dw_call, (("block_size", block_size),
                                 ("feature_major_operands",
                                  bool(feature_major_operands))),
                      2, True, "b i, b o, k, k -> k p q")
  return call(x, dy, row_idx, col_idx).astype(out_dtype)


def _dw_call(x, dy, row_idx, col_idx, *, block_size, feature_major_operands):
  return _call("snn_jax_bsmm_dw", (row_idx.shape[0], block_size, block_size),
               x.dtype, x, dy, row_idx, col_idx, dense_args=(0, 1),
               feature_major_operands=feature_major_operands)


def bsmm_bwd_native(x, dy, values, row_ptr, col_idx, row_idx, *,
                    fuse: bool = True,
                    feature_major_operands: bool = False):
  """``(dx, dvalues)`` of ``y = x @ W`` at block size 1, from one call:
  ``dx[B, n_in] = dy @ W.T`` and ``dvalues[nnz, 1, 1]`` = ``x.T @ dy`` at the
  stored entries, with the bits of :func:`bsmm_dx_native` and
  :func:`sddmm_native`.

  Fused (``fuse=True``, the default), one pass over the row view reads
  each row of ``dy`` that a stored weight names once for both products
  (apart, dX's gather and dW's dot products read it once each): 0.67-0.97x
  the time of the two kernels at every shape measured
  (``BUILD_NOTES.md``). ``fuse=False`` runs the two kernels on one
  feature-major copy of the operands. ``x``, ``dy``, ``values`` share a
  dtype, float32 or bfloat16; ``feature_major_operands``: ``x``, ``dy``
  and ``dx`` handed over feature-major (as ``snn_jax.ops`` does)."""
  if values.ndim != 3 or values.shape[1:] != (1, 1):
    raise ValueError("bsmm_bwd_native is for block size 1 (values "
                     f"[nnz, 1, 1]); got values of shape {values.shape}")
  if not isinstance(fuse, (bool, np.bool_)):
    raise ValueError(f"fuse must be True or False, got {fuse!r}")
  call = _partitioned(_bwd_call, (("fuse", bool(fuse)), ("feature_major_operands",
                                  bool(feature_major_operands))),
                      2, (False, True),
                      "b i, b o, k p q, r, k, k -> b i, k p q")
  return call(x, dy, values, row_ptr, col_idx, row_idx)


def _bwd_call(x, dy, values, row_ptr, col_idx, row_idx, *, fuse,
              feature_major_operands):
  _register()
  layouts = {}
  if feature_major_operands:
    layouts = dict(input_layouts=[(1, 0), (1, 0), None, None, None, None],
                   output_layouts=[(1, 0), None])
  return jax.ffi.ffi_call(
      "snn_jax_bsmm_bwd",
      (jax.ShapeDtypeStruct(x.shape, x.dtype),
       jax.ShapeDtypeStruct(values.shape, values.dtype)),
      vmap_method="sequential", **layouts)(
          x, dy, values, row_ptr, col_idx, row_idx,
          feature_major=bool(feature_major_operands), fuse=fuse)


def bias_grad_native(dy, *, feature_major_operands: bool = False):
  """``db[n] = dy.sum(axis=0)`` for ``dy: [B, n]``, float32 or bfloat16
  (summed in float32 in batch order, returned in ``dy.dtype``).
  ``feature_major_operands``: ``dy`` handed over feature-major, as to
  :func:`bsmm_dx_native` and :func:`sddmm_native` in the same backward."""
  call = _partitioned(_bias_grad_call, (("feature_major_operands",
                                         bool(feature_major_operands)),),
                      1, True, "b n -> n")
  return call(dy)


def _bias_grad_call(dy, *, feature_major_operands):
  return _call("snn_jax_bias_grad", (dy.shape[1],), dy.dtype, dy,
               dense_args=(0,), feature_major_operands=feature_major_operands)


def relu_layers_native(y, row_values, col_idx, row_ptr, col_values, col_rows,
                       col_ptr, start, *, length: int, bias: float, ymax: float,
                       sparse_below: float = 0.35):
  """``length`` ReLU layers of a stack of block-size-1 layers, in one call.

  For ``l`` in ``start .. start + length - 1``:
  ``y = min(max(y @ W_l + bias, 0), ymax)`` (Kepner et al. 2019, the Sparse
  DNN Graph Challenge's layer). ``y``: float32 ``[B, n]``. Each ``W_l`` is
  given twice, as stacks over layers: its row view (``row_values`` float32
  ``[L, nnz]`` in row order, ``col_idx`` int32 ``[L, nnz]``, ``row_ptr``
  int32 ``[L, n + 1]``: a BlockCSR's ``values``, ``col_idx``, ``row_ptr``
  at block size 1) and its column view (``col_values``, ``col_rows``: the
  values and row indices in column order, i.e. taken through ``col_order``;
  ``col_ptr``). ``start``: int32 scalar, may be traced. ``bias`` must be
  <= 0: rows that become all zero stay zero, and are dropped inside as
  they die (returned as zeros).

  A layer whose live input has density (nonzeros / (live rows x n)) below
  ``sparse_below`` scatters the rows of ``W_l`` picked by the nonzeros of
  ``y`` (work proportional to them); any other uses the forward's gather.
  The weights must be finite: the scatter form never multiplies a zero
  activation (the challenge's sparse formulation) while the gather form,
  like ``bsmm``, forms every product, so a NaN or infinite weight would
  reach different outputs in the two. With finite weights both forms give
  the same bits, for every ``sparse_below`` and thread count, as ``bsmm``
  (native) followed by the same bias and clip.
  """
  _register()
  n_layers = row_values.shape[0]
  if not 0 <= int(length) <= n_layers:
    raise ValueError(f"length must be in [0, {n_layers}], got {length}")
  if bias > 0:
    raise ValueError(f"bias must be <= 0 (a zero row must stay zero), got {bias}")
  y = jnp.asarray(y, jnp.float32)
  return jax.ffi.ffi_call(
      "snn_jax_relu_layers", jax.ShapeDtypeStruct(y.shape, jnp.float32),
      vmap_method="sequential")(
          y, row_values.reshape(n_layers, -1).astype(jnp.float32), col_idx, row_ptr,
          col_values.reshape(n_layers, -1).astype(jnp.float32), col_rows, col_ptr,
          jnp.asarray(start, jnp.int32).reshape(1),
          bias=np.float32(bias), ymax=np.float32(ymax), length=np.int64(length),
          sparse_below=np.float32(sparse_below))


# ---------------------------------------------------------------------------
# Weight-level sparse 2-D convolution (kernels/native/conv_cpu.cc) on
# plane-major images: float32 [channels, rows, columns, batch] ("CHWB").


def conv_fwd_native(x, values, row_idx, col_ptr, col_order, *,
                    kernel_size: tuple[int, int]):
  """VALID stride-1 correlation of ``x[S, H, W, B]`` (CHWB, float32) with
  the weight ``(S * kh * kw, D)`` given by its column view:
  ``[D, H - kh + 1, W - kw + 1, B]`` float32."""
  _register()
  kh, kw = kernel_size
  s, h, w, b = x.shape
  shape = (col_ptr.shape[0] - 1, h - kh + 1, w - kw + 1, b)
  return jax.ffi.ffi_call("snn_jax_conv_fwd",
                          jax.ShapeDtypeStruct(shape, jnp.float32),
                          vmap_method="sequential")(
      x, values.reshape(-1).astype(jnp.float32), row_idx, col_ptr, col_order,
      **_geometry(s, h, w, b, kh, kw))


def conv_dx_native(dy, values, row_ptr, col_idx, *,
                   kernel_size: tuple[int, int], input_hw: tuple[int, int],
                   pads_before: tuple[int, int]):
  """The gradient of the unpadded input ``x[S, H, W, B]`` (``input_hw`` =
  ``(H, W)``) of a stride-1 correlation whose padded input had
  ``pads_before = (top, left)`` zero rows and columns before ``x``, from the
  output gradient ``dy[D, Ho, Wo, B]`` over the row view: float32
  ``[S, H, W, B]``."""
  _register()
  kh, kw = kernel_size
  b = dy.shape[3]
  shape = ((row_ptr.shape[0] - 1) // (kh * kw), *input_hw, b)
  return jax.ffi.ffi_call("snn_jax_conv_dx",
                          jax.ShapeDtypeStruct(shape, jnp.float32),
                          vmap_method="sequential")(
      dy, values.reshape(-1).astype(jnp.float32), row_ptr, col_idx,
      kh=np.int64(kh), kw=np.int64(kw), pad_top=np.int64(pads_before[0]),
      pad_left=np.int64(pads_before[1]))


def conv_dw_native(x, dy, row_idx, col_ptr, col_order, *,
                   kernel_size: tuple[int, int]):
  """``dvalues[nnz]`` float32 at the stored entries of a VALID correlation
  of ``x[S, H, W, B]`` with output gradient ``dy[D, Ho, Wo, B]``: for entry
  (s, i, j; d), the sum over rows, columns and batch of ``dy[d]`` times
  ``x[s]`` shifted by ``(i, j)``."""
  _register()
  kh, kw = kernel_size
  s, h, w, b = x.shape
  return jax.ffi.ffi_call("snn_jax_conv_dw",
                          jax.ShapeDtypeStruct((row_idx.shape[0],), jnp.float32),
                          vmap_method="sequential")(
      x, dy, row_idx, col_ptr, col_order, **_geometry(s, h, w, b, kh, kw))


def _geometry(channels, height, width, batch, kh, kw) -> dict:
  return {k: np.int64(v) for k, v in dict(
      channels=channels, height=height, width=width, batch=batch, kh=kh,
      kw=kw).items()}
