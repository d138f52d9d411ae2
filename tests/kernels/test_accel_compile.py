"""Every accelerator kernel path compiled for real hardware without a device.

``bsmm`` and its VJP (with bias) are traced under ``jax.default_device`` of a
deviceless target (``snn_jax.kernels.deviceless``) and compiled by the real
toolchains: Mosaic TPU through libtpu for TPU v4, v5e and v6e; XLA:GPU with
Triton -> PTX -> ptxas for the H100 and A100 descriptions; Pallas' Mosaic
GPU lowering for the H100. Problems have an odd batch (37, padded by the
kernels) and an empty block row and column. Each compile asserts that
every kernel is a custom call of its toolchain (interpret mode has none),
and on GPU reads ptxas' report of the shipped tiles: no register spills.
One negative case per toolchain must fail. Needs ``pip install -e
'.[accel]'``; without it these tests skip with the reason.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snn_jax.kernels import deviceless, mosaic_gpu, pallas_gpu, tuning
from snn_jax.ops import bsmm
from snn_jax.sparse import BlockCSR

_GPU_REASON = deviceless.unavailable_reason("gpu")
_TPU_REASON = deviceless.unavailable_reason("tpu")
needs_gpu = pytest.mark.skipif(_GPU_REASON is not None, reason=str(_GPU_REASON))
needs_tpu = pytest.mark.skipif(_TPU_REASON is not None, reason=str(_TPU_REASON))
# Each compile runs a real toolchain (ptxas, libtpu): seconds to a minute.
pytestmark = pytest.mark.slow

TRITON = "__gpu$xla.gpu.triton"
MOSAIC_GPU = "mosaic_gpu_v2"
MOSAIC_TPU = "tpu_custom_call"
BATCH = 37
DTYPES = [jnp.float32, jnp.bfloat16]


@pytest.fixture(autouse=True)
def _no_compilation_cache():
  """A compile read back from the persistent cache would skip the toolchain
  (and write no PTX to read)."""
  before = jax.config.jax_enable_compilation_cache
  jax.config.update("jax_enable_compilation_cache", False)
  yield
  jax.config.update("jax_enable_compilation_cache", before)


def _sds(a):
  return jax.ShapeDtypeStruct(a.shape, a.dtype)


def _layer(rng, bs, dtype, n_rb=5, n_cb=4, density=0.5):
  """A BlockCSR with block row 1 and the last block column empty (or, at
  density 1, every block stored)."""
  mask = rng.random((n_rb, n_cb)) < density
  if density < 1:
    mask[1, :] = False
    mask[:, -1] = False
  mask[0, 0] = True
  values = rng.standard_normal((int(mask.sum()), bs, bs)).astype(np.float32)
  return BlockCSR.from_mask(mask, bs, values=jnp.asarray(values, dtype))


def _compile_step(device, w, impl="auto", dump_to=None, **kw):
  """value_and_grad of a loss through ``bsmm(x, w, bias=b)`` w.r.t. x, the
  values and the bias, compiled for ``device`` on abstract arguments."""
  def loss(x, values, bias, w):
    y = bsmm(x, w.replace(values=values), bias=bias, impl=impl, **kw)
    return jnp.sum(y.astype(jnp.float32) ** 2)

  step = jax.value_and_grad(loss, argnums=(0, 1, 2))
  dtype = w.values.dtype
  args = (jax.ShapeDtypeStruct((BATCH, w.shape[0]), dtype), _sds(w.values),
          jax.ShapeDtypeStruct((w.shape[1],), dtype), jax.tree.map(_sds, w))
  return deviceless.compile_for(device, step, *args, dump_to=dump_to)


def _kernels(compiled):
  return sorted(deviceless.kernel_calls(compiled))


@needs_gpu
@pytest.mark.parametrize("target", sorted(deviceless.GPU_TARGETS))
@pytest.mark.parametrize("bs", pallas_gpu.BLOCK_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_kernels_compile_without_spills(rng, tmp_path, target, bs,
                                               dtype):
  """impl='auto' on the GPU target: forward, dX and dW are the Triton
  kernels, and ptxas allocates every one without spilling."""
  compiled = _compile_step(deviceless.gpu_device(target), _layer(rng, bs, dtype),
                           dump_to=str(tmp_path))
  assert _kernels(compiled) == [(TRITON, "bsmm_dx"), (TRITON, "bsmm_fwd"),
                                (TRITON, "bsmm_sddmm")]
  report = deviceless.ptxas_report(str(tmp_path),
                                   lambda name: name.startswith("bsmm"))
  assert sorted(r.name for r in report) == ["bsmm_dx", "bsmm_fwd", "bsmm_sddmm"]
  assert {r.arch for r in report} == {"sm_90a" if target == "h100" else "sm_80"}
  spills = [r for r in report if r.spill_store_bytes or r.spill_load_bytes]
  assert not spills, f"ptxas spilled registers: {spills}"
  assert all(0 < r.registers <= 255 for r in report)


@needs_gpu
def test_gpu_tiles_come_from_the_target(rng, monkeypatch):
  """The tiles compiled are the target's (its device_kind's table entry),
  not the host's: an H100-only entry shows up in the H100 compile alone."""
  monkeypatch.setitem(tuning.GPU_TILES, "H100",
                      {(64, "float32"): tuning.GpuTiles(num_warps=2)})
  w = _layer(rng, 64, jnp.float32)
  h100 = _compile_step(deviceless.gpu_device("h100"), w).as_text()
  a100 = _compile_step(deviceless.gpu_device("a100"), w).as_text()
  assert h100.count("num_warps = 2 : i32") == 3  # fwd, dX, dW
  assert "num_warps = 2 : i32" not in a100
  assert a100.count("num_warps = 4 : i32") == 3


@needs_gpu
def test_triton_tile_overflowing_shared_memory_fails(rng, monkeypatch):
  """Negative case: a batch tile of 1,024 rows at block 128 (float32) needs
  more shared memory than an H100 block has; the toolchain must refuse."""
  monkeypatch.setitem(tuning.GPU_TILES, "H100",
                      {(128, "float32"): tuning.GpuTiles(batch_tile=1024)})
  with pytest.raises(Exception, match="Shared memory size limit exceeded"):
    _compile_step(deviceless.gpu_device("h100"), _layer(rng, 128, jnp.float32))


@needs_gpu
@pytest.mark.parametrize("target", sorted(deviceless.GPU_TARGETS))
@pytest.mark.parametrize("bs, dense_blocks", [(1, False), (8, False),
                                              (32, True)])
def test_gpu_auto_without_pallas(rng, target, bs, dense_blocks):
  """impl='auto' on GPU where no Pallas kernel applies: block sizes below 16
  go to the XLA kernels, a fully stored matrix to one dense dot; both
  compile, with no Pallas kernel in them."""
  w = _layer(rng, bs, jnp.float32, n_rb=4, n_cb=3,
             density=1.0 if dense_blocks else 0.5)
  assert (w.nnzb == 12) == dense_blocks
  assert _kernels(_compile_step(deviceless.gpu_device(target), w)) == []


@needs_gpu
@pytest.mark.skipif(not mosaic_gpu.AVAILABLE, reason="no Mosaic GPU backend")
@pytest.mark.parametrize("bs", mosaic_gpu.BLOCK_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mosaic_gpu_forward_compiles_for_h100(rng, bs, dtype):
  """impl='mosaic_gpu': the Mosaic GPU forward (lowered for sm_90a) with
  the Triton backward kernels."""
  compiled = _compile_step(deviceless.gpu_device("h100"), _layer(rng, bs, dtype),
                           impl="mosaic_gpu")
  assert _kernels(compiled) == [(TRITON, "bsmm_dx"), (TRITON, "bsmm_sddmm"),
                                (MOSAIC_GPU, "bsmm_fwd_mosaic")]


@needs_gpu
@pytest.mark.skipif(not mosaic_gpu.AVAILABLE, reason="no Mosaic GPU backend")
def test_auto_takes_mosaic_gpu_where_triton_is_gone(rng, monkeypatch):
  """With the Triton backend absent (as JAX's deprecation will make it),
  auto compiles the Mosaic forward and XLA's backward on the H100, and
  XLA's kernels only on the A100 (no wgmma)."""
  monkeypatch.setattr(pallas_gpu, "AVAILABLE", False)
  w = _layer(rng, 64, jnp.bfloat16)
  assert _kernels(_compile_step(deviceless.gpu_device("h100"), w)) == [
      (MOSAIC_GPU, "bsmm_fwd_mosaic")]
  assert _kernels(_compile_step(deviceless.gpu_device("a100"), w)) == []


@needs_gpu
@pytest.mark.skipif(not mosaic_gpu.AVAILABLE, reason="no Mosaic GPU backend")
def test_mosaic_gpu_on_ampere_fails(rng):
  """Negative case: wgmma does not exist before Hopper; Mosaic's pipeline
  must refuse the kernel for the A100 (sm_80)."""
  with pytest.raises(Exception, match="not supported on sm_80|Pass pipeline"):
    _compile_step(deviceless.gpu_device("a100"), _layer(rng, 64, jnp.bfloat16),
                  impl="mosaic_gpu")


TPU_GENERATIONS = ["v4", "v5e", "v6e"]


@needs_tpu
@pytest.mark.parametrize("target", TPU_GENERATIONS)
@pytest.mark.parametrize("bs", [128, 256, 512, 1024])
@pytest.mark.parametrize("dtype", DTYPES)
def test_mosaic_tpu_kernels_compile(rng, target, bs, dtype):
  """impl='auto' on the TPU target: forward, dX and dW are Mosaic kernels,
  compiled to TPU machine code."""
  n_rb, n_cb = (5, 4) if bs < 1024 else (3, 3)
  compiled = _compile_step(deviceless.tpu_device(target),
                           _layer(rng, bs, dtype, n_rb=n_rb, n_cb=n_cb))
  assert _kernels(compiled) == [(MOSAIC_TPU, "bsmm_dx_tpu"),
                                (MOSAIC_TPU, "bsmm_fwd_tpu"),
                                (MOSAIC_TPU, "bsmm_sddmm_tpu")]


@needs_tpu
def test_tpu_tiles_come_from_the_target(rng, monkeypatch):
  """A v6e-only batch tile shapes the v6e compile alone: the 37-row batch is
  padded to that tile in every kernel operand."""
  monkeypatch.setitem(tuning.TPU_TILES, "TPU v6 lite",
                      {(128, "float32"): 256})
  w = _layer(rng, 128, jnp.float32)
  v6e = _compile_step(deviceless.tpu_device("v6e"), w).as_text()
  v5e = _compile_step(deviceless.tpu_device("v5e"), w).as_text()
  n_out = w.shape[1]
  assert f"f32[256,{n_out}]" in v6e and f"f32[256,{n_out}]" not in v5e
  assert f"f32[128,{n_out}]" in v5e


@needs_tpu
def test_mosaic_tpu_tile_overflowing_vmem_fails(rng, monkeypatch):
  """Negative case: a batch tile of 8,192 rows at block 1,024 (float32)
  does not fit VMEM; Mosaic must refuse it. On v4 only: v5e refuses it
  too, but XLA:TPU spends a minute there before it gives up (67 s of the
  suite's time, benchmarks/cpu/test_durations_20261207.txt), and the
  refusal is the compiler's, not a path of ours that differs by target."""
  monkeypatch.setitem(tuning.TPU_TILES, "TPU", {(1024, "float32"): 8192})
  w = _layer(rng, 1024, jnp.float32, n_rb=2, n_cb=2)
  # The forward kernel alone: it overflows first.
  with pytest.raises(Exception, match="(?i)vmem"):
    deviceless.compile_for(
        deviceless.tpu_device("v4"), lambda x, w: bsmm(x, w),
        jax.ShapeDtypeStruct((BATCH, w.shape[0]), jnp.float32),
        jax.tree.map(_sds, w))


@needs_tpu
@pytest.mark.parametrize("bs", [8, 64, 2048])
def test_tpu_auto_without_pallas(rng, bs):
  """impl='auto' on TPU at block sizes the Mosaic kernels do not take
  (below 128, not a multiple of it, above 1,024) compiles XLA's kernels."""
  n = 2 if bs == 2048 else 4
  w = _layer(rng, bs, jnp.float32, n_rb=n, n_cb=n)
  assert _kernels(_compile_step(deviceless.tpu_device("v5e"), w)) == []


@pytest.mark.parametrize("platform, name", [("gpu", "v100"), ("tpu", "v3")])
def test_unknown_targets_are_refused(platform, name):
  get = deviceless.gpu_device if platform == "gpu" else deviceless.tpu_device
  with pytest.raises(ValueError, match="unknown .* target"):
    get(name)
