"""``snn_jax.ops.bsmm``: forward and VJP against the dense reference, under
jit/grad/vmap, leading batch dims, dtypes, errors, and no retracing."""

import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from snn_jax import ops
from snn_jax import topology as T
from snn_jax.kernels import native_cpu, pallas_gpu
from snn_jax.ops import bsmm, resolve_impl, target_device
from snn_jax.sparse import BlockCSR
from tests.conftest import assert_close


def _w(rng, n_in, n_out, bs, density, dtype=jnp.float32, seed=0):
  t = T.make("erdos_renyi", n_in, n_out, density=density, block_size=bs, seed=seed)
  vals = rng.standard_normal((t.nnzb, bs, bs)).astype(np.float32)
  return t.to_bcsr(values=jnp.asarray(vals, dtype))


def _dense_vjp(x, w, dy):
  """VJP of x @ densify(values) -- the dense reference gradient."""
  from snn_jax.kernels.reference import densify

  def f(x, v):
    wd = densify(v, w.row_idx, w.col_idx, n_in=w.shape[0], n_out=w.shape[1])
    return jnp.dot(x, wd, precision=jax.lax.Precision.HIGHEST,
                   preferred_element_type=jnp.float32).astype(x.dtype)
  y, vjp = jax.vjp(f, x, w.values)
  return (y, *vjp(dy))


# Pallas GPU needs bs >= 16 and is slow in interpret mode: a smaller grid.
NATIVE = [("native_cpu", bs, lead) for bs in (1, 8, 16)
          for lead in ((), (3,), (2, 5))] if native_cpu.AVAILABLE else []
CASES = [(impl, bs, lead) for impl in ("xla", "dense") for bs in (1, 16)
         for lead in ((), (3,), (2, 5))] + NATIVE + [
             ("pallas_gpu", 16, ()), ("pallas_gpu", 16, (3,))]
needs_native = pytest.mark.skipif(not native_cpu.AVAILABLE,
                                  reason=native_cpu.UNAVAILABLE_REASON)


@pytest.mark.parametrize("impl, bs, lead", CASES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_vjp_matches_dense(rng, impl, bs, lead, dtype):
  w = _w(rng, 64, 48, bs, 0.3, dtype)
  x = jnp.asarray(rng.standard_normal((*lead, 64)), dtype)
  dy = jnp.asarray(rng.standard_normal((*lead, 48)), dtype)  # random cotangent
  y, vjp = jax.vjp(lambda x, v: bsmm(x, w.replace(values=v), impl=impl), x,
                   w.values)
  dx, dv = vjp(dy)
  x2, dy2 = x.reshape(-1, 64), dy.reshape(-1, 48)
  ry, rdx, rdv = _dense_vjp(x2, w, dy2)
  assert_close(y.reshape(-1, 48), ry, dtype, "fwd")
  assert_close(dx.reshape(-1, 64), rdx, dtype, "dx")
  assert_close(dv, rdv, dtype, "dw")  # dense grad restricted to the blocks
  assert y.shape == (*lead, 48) and dx.shape == x.shape


BIAS_CASES = [(impl, bs) for impl in ("xla", "dense", "auto") for bs in (1, 16)] + (
    [("native_cpu", bs) for bs in (1, 16, 32)] if native_cpu.AVAILABLE else []
) + [("pallas_gpu", 16)]


@pytest.mark.parametrize("impl, bs", BIAS_CASES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("density", [0.3, 1.0])  # 1.0: auto's dense path
@pytest.mark.slow
def test_bias_vjp_matches_dense(rng, impl, bs, dtype, density):
  """``bsmm(x, w, bias=b)``: x @ W + b, and its VJP (db = dy summed over
  every leading dimension) against the dense reference."""
  w = _w(rng, 64, 96, bs, density, dtype)
  x = jnp.asarray(rng.standard_normal((2, 5, 64)), dtype)
  b = jnp.asarray(rng.standard_normal(96), dtype)
  dy = jnp.asarray(rng.standard_normal((2, 5, 96)), dtype)
  y, vjp = jax.vjp(lambda x, v, b: bsmm(x, w.replace(values=v), bias=b,
                                        impl=impl), x, w.values, b)
  dx, dv, db = vjp(dy)
  ry, rdx, rdv = _dense_vjp(x.reshape(-1, 64), w, dy.reshape(-1, 96))
  assert_close(y.reshape(-1, 96), (ry.astype(jnp.float32) + b[None].astype(
      jnp.float32)).astype(dtype), dtype, "fwd")
  assert_close(dx.reshape(-1, 64), rdx, dtype, "dx")
  assert_close(dv, rdv, dtype, "dw")
  want_db = np.asarray(dy.astype(jnp.float32), np.float64).reshape(-1, 96).sum(0)
  assert_close(db, jnp.asarray(want_db, jnp.float32).astype(dtype), dtype, "db")
  assert db.dtype == dtype and y.shape == (2, 5, 96)


@needs_native
def test_check_grads_native_with_bias(rng):
  w = _w(rng, 40, 24, 1, 0.4)
  x = jnp.asarray(rng.standard_normal((5, 40)), jnp.float32)
  b = jnp.asarray(rng.standard_normal(24), jnp.float32)
  f = lambda x, v, b: jnp.tanh(bsmm(x, w.replace(values=v), bias=b,
                                    impl="native_cpu"))
  check_grads(f, (x, w.values, b), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_check_grads_f32(rng):
  w = _w(rng, 32, 24, 8, 0.4)
  x = jnp.asarray(rng.standard_normal((5, 32)), jnp.float32)
  f = lambda x, v: bsmm(x, w.replace(values=v), impl="xla")
  check_grads(f, (x, w.values), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


@needs_native
@pytest.mark.parametrize("bs", [1, 8, 32])
def test_check_grads_native(rng, bs):
  w = _w(rng, 64, 64, bs, 0.4)
  x = jnp.asarray(rng.standard_normal((5, 64)), jnp.float32)
  f = lambda x, v: bsmm(x, w.replace(values=v), impl="native_cpu")
  check_grads(f, (x, w.values), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("impl", ["xla", pytest.param("native_cpu", marks=needs_native)])
@pytest.mark.parametrize("wrt, formed", [
    # (arguments differentiated, the backward kernels the gradient runs)
    ((0, 1, 2), {"xla": {"dx", "dw"}, "native_cpu": {"bwd"}}),
    ((0,), {"xla": {"dx"}, "native_cpu": {"dx"}}),
    ((1,), {"xla": {"dw"}, "native_cpu": {"dw"}}),
    ((2,), {"xla": set(), "native_cpu": set()}),
])
def test_backward_forms_only_the_cotangents_asked_for(rng, impl, wrt, formed):
  """The custom VJP's symbolic zeros say which inputs are differentiated:
  dX is formed only for a differentiated x (not for a first layer's data),
  dW only for differentiated weights -- and both at block size 1 on the
  native kernels in one fused call. Every gradient asked for matches the
  dense reference, and an output whose cotangent is a symbolic zero
  (stop_gradient) leaves the inputs' gradients zero."""
  w = _w(rng, 40, 24, 1, 0.3)
  x = jnp.asarray(rng.standard_normal((6, 40)), jnp.float32)
  b = jnp.asarray(rng.standard_normal(24), jnp.float32)
  dy = jnp.asarray(rng.standard_normal((6, 24)), jnp.float32)

  def loss(x, v, b):
    return jnp.vdot(bsmm(x, w.replace(values=v), bias=b, impl=impl), dy)

  grad = jax.jit(jax.grad(loss, argnums=wrt))
  hlo = grad.lower(x, w.values, b).compile().as_text()
  if impl == "native_cpu":
    ran = set(re.findall(r'custom_call_target="snn_jax_bsmm_(dx|dw|bwd)"', hlo))
    assert ran == formed[impl]
  else:  # the XLA kernels at this shape: only dX scatter-adds
    assert ("scatter(" in hlo) == ("dx" in formed[impl])
  _, want_dx, want_dv = _dense_vjp(x, w, dy)
  want = {0: (want_dx, "dx"), 1: (want_dv, "dw"), 2: (dy.sum(0), "db")}
  for argnum, got in zip(wrt, grad(x, w.values, b)):
    assert_close(got, want[argnum][0], jnp.float32, want[argnum][1])

  def detached(x, v, b):
    y = bsmm(x, w.replace(values=v), bias=b, impl=impl)
    return jnp.sum(jax.lax.stop_gradient(y)) + jnp.sum(x) + jnp.sum(v) + jnp.sum(b)

  for argnum, got in zip(wrt, jax.grad(detached, argnums=wrt)(x, w.values, b)):
    np.testing.assert_array_equal(got, np.ones_like(got))


def _relu_mlp_loss(ws, vals, x, impl):
  h = x
  for w, v in zip(ws, vals):
    h = jax.nn.relu(bsmm(h, w.replace(values=v), impl=impl) + 0.1)
  return (h ** 2).sum()


@needs_native
def test_native_hidden_activations_are_never_transposed(rng):
  """Inside a network the block-size-1 kernels get feature-major operands
  from the fusions beside them: in the compiled gradient of a three-layer
  ReLU MLP every kernel call takes them so and no copy or transpose
  touches a hidden activation (before, each kernel call transposed its
  dense operands twice inside)."""
  ws = [_w(rng, 48, 40, 1, 0.2, seed=0), _w(rng, 40, 40, 1, 0.2, seed=1),
        _w(rng, 40, 40, 1, 0.2, seed=2)]
  vals = [w.values for w in ws]
  x = jnp.asarray(rng.standard_normal((16, 48)), jnp.float32)
  grad = jax.jit(jax.grad(lambda v, x: _relu_mlp_loss(ws, v, x, "native_cpu")))
  hlo = grad.lower(vals, x).compile().as_text()
  # the instructions themselves, inside fusions too (not op names in metadata)
  moved = re.findall(r"= f32\[16,40\]\{[0-9,]*\} (?:copy|transpose)\(.*", hlo)
  assert not moved, "\n".join(moved)
  calls = re.findall(r'custom_call_target="snn_jax_bsmm_(\w+)"(.*)', hlo)
  # 3 forward; layers 2 and 3 one fused dX + dW call each; the first layer,
  # whose input is the data, only its dW (no dX is formed for it)
  assert sorted(target for target, _ in calls) == ["bwd", "bwd", "dw", "fwd",
                                                   "fwd", "fwd"], calls
  assert all("feature_major = true" in rest for _, rest in calls), calls
  want = jax.grad(lambda v, x: _relu_mlp_loss(ws, v, x, "dense"))(vals, x)
  for g, r in zip(grad(vals, x), want):
    assert_close(g, r, jnp.float32, "dw")


@needs_native
def test_native_bias_gradient_reads_dy_as_the_kernels_do(rng):
  """With trainable biases through ``bsmm(bias=)`` the compiled gradient of
  a three-layer ReLU MLP sums each dy in the native bias-gradient kernel,
  feature-major as dX and dW read it: no copy or transpose of a hidden
  activation or its gradient (XLA's own reduction copied each dy back to
  batch-major first)."""
  ws = [_w(rng, 48, 40, 1, 0.2, seed=0), _w(rng, 40, 40, 1, 0.2, seed=1),
        _w(rng, 40, 40, 1, 0.2, seed=2)]
  params = ([w.values for w in ws],
            [jnp.asarray(rng.standard_normal(40), jnp.float32) for _ in ws])
  x = jnp.asarray(rng.standard_normal((16, 48)), jnp.float32)

  def loss(p, x, impl):
    h = x
    for w, v, b in zip(ws, *p):
      h = jax.nn.relu(bsmm(h, w.replace(values=v), bias=b, impl=impl))
    return (h ** 2).sum()

  grad = jax.jit(jax.grad(functools.partial(loss, impl="native_cpu")))
  hlo = grad.lower(params, x).compile().as_text()
  moved = re.findall(r"= f32\[16,40\]\{[0-9,]*\} (?:copy|transpose)\(.*", hlo)
  assert not moved, "\n".join(moved)
  calls = re.findall(r'custom_call_target="snn_jax_bias_grad".*', hlo)
  assert len(calls) == 3 and all("feature_major = true" in c for c in calls)
  want = jax.grad(functools.partial(loss, impl="dense"))(params, x)
  for g, r in zip(jax.tree.leaves(grad(params, x)), jax.tree.leaves(want)):
    assert_close(g, r, jnp.float32, "dw" if g.ndim == 3 else "db")


@needs_native
def test_native_under_vmap_of_weights_and_donation(rng):
  w = _w(rng, 32, 32, 8, 0.5)  # square: the donated x can hold the result
  vals = jnp.asarray(rng.standard_normal((3, *w.values.shape)), jnp.float32)
  x = jnp.asarray(rng.standard_normal((4, 32)), jnp.float32)
  batched = jax.vmap(lambda v: bsmm(x, w.replace(values=v), impl="native_cpu"))(vals)
  for i in range(3):
    np.testing.assert_allclose(batched[i], bsmm(x, w.replace(values=vals[i]),
                                                impl="dense"), rtol=1e-5, atol=1e-5)
  donated = jax.jit(lambda x: bsmm(x, w, impl="native_cpu"), donate_argnums=0)
  expected = bsmm(x, w, impl="dense")
  np.testing.assert_allclose(donated(jnp.array(x)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_jit_grad_vmap_agree(rng):
  w = _w(rng, 32, 32, 4, 0.5)
  xs = jnp.asarray(rng.standard_normal((6, 7, 32)), jnp.float32)
  loss = lambda v, x: jnp.sum(jnp.tanh(bsmm(x, w.replace(values=v))) ** 2)
  eager = [jax.grad(loss)(w.values, x) for x in xs]
  batched = jax.vmap(jax.grad(loss), in_axes=(None, 0))(w.values, xs)
  jitted = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(w.values, xs)
  for i in range(6):
    np.testing.assert_allclose(batched[i], eager[i], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jitted[i], eager[i], rtol=1e-5, atol=1e-5)
  ys = jax.vmap(lambda x: bsmm(x, w))(xs)
  np.testing.assert_allclose(ys, bsmm(xs, w), rtol=1e-6, atol=1e-6)


def test_backward_impl_mix(rng):
  w = _w(rng, 64, 32, 16, 0.5)
  x = jnp.asarray(rng.standard_normal((16, 64)), jnp.float32)
  f = lambda impl, bimpl: jax.grad(
      lambda v: jnp.sum(bsmm(x, w.replace(values=v), impl=impl,
                             backward_impl=bimpl) ** 2))(w.values)
  np.testing.assert_allclose(f("pallas", "xla"), f("dense", "dense"),
                             rtol=1e-4, atol=1e-4)


def test_changing_indices_at_fixed_nnzb_does_not_retrace(rng):
  w1 = _w(rng, 64, 64, 8, 0.25, seed=1)
  t2 = T.make("fixed_fan_in", 64, 64, fan_in=16, block_size=8, seed=2)
  w2 = t2.to_bcsr(values=jnp.asarray(
      rng.standard_normal((t2.nnzb, 8, 8)), jnp.float32))
  if w2.nnzb != w1.nnzb:  # make them equal: rebuild w1 with the same nnzb
    t1 = T.make("fixed_fan_in", 64, 64, fan_in=16, block_size=8, seed=1)
    w1 = t1.to_bcsr(values=w2.values)
  x = jnp.asarray(rng.standard_normal((4, 64)), jnp.float32)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(w, x):
    return jax.grad(lambda v: jnp.sum(bsmm(x, w.replace(values=v)) ** 2))(w.values)

  step(w1, x)
  step(w2, x)
  chex.clear_trace_counter()


def test_empty_batch_and_empty_matrix(rng):
  w = _w(rng, 16, 8, 8, 0.5)
  assert bsmm(jnp.zeros((0, 16)), w).shape == (0, 8)
  empty = BlockCSR.from_mask(np.zeros((2, 1), bool), 8)
  x = jnp.asarray(rng.standard_normal((3, 16)), jnp.float32)
  np.testing.assert_array_equal(bsmm(x, empty), np.zeros((3, 8)))


def test_errors(rng):
  w = _w(rng, 16, 8, 8, 0.5)
  with pytest.raises(ValueError, match=r"\[\.\.\., 16\]"):
    bsmm(jnp.ones((2, 15)), w)
  with pytest.raises(TypeError, match="cast"):
    bsmm(jnp.ones((2, 16), jnp.bfloat16), w)
  with pytest.raises(TypeError, match="float32 or bfloat16"):
    bsmm(jnp.ones((2, 16), jnp.int32), w)
  with pytest.raises(ValueError, match="impl must be"):
    bsmm(jnp.ones((2, 16)), w, impl="cuda")
  with pytest.raises(ValueError, match=r"takes block sizes \(16, 32"):
    bsmm(jnp.ones((2, 16)), w, impl="pallas_gpu")
  with pytest.raises(TypeError, match="BlockCSR"):
    bsmm(jnp.ones((2, 16)), np.ones((16, 8)))
  with pytest.raises(ValueError, match="'csr_cpu' is gone.*native_cpu"):
    bsmm(jnp.ones((2, 16)), w, impl="csr_cpu")
  with pytest.raises(ValueError, match=r"bias must have shape \(8,\)"):
    bsmm(jnp.ones((2, 16)), w, bias=jnp.ones(16))
  with pytest.raises(TypeError, match="bias is bfloat16 but x is float32"):
    bsmm(jnp.ones((2, 16)), w, bias=jnp.ones(8, jnp.bfloat16))


@pytest.mark.parametrize("bs", [1, 4])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_fully_stored_matrix_runs_dense_and_matches(rng, bs, dtype):
  w = BlockCSR.from_mask(np.ones((24 // bs, 16 // bs), bool), bs,
                         values=jnp.asarray(rng.standard_normal(
                             ((24 // bs) * (16 // bs), bs, bs)), dtype))
  x = jnp.asarray(rng.standard_normal((7, 24)), dtype)
  dy = jnp.asarray(rng.standard_normal((7, 16)), dtype)
  y, vjp = jax.vjp(lambda x, v: bsmm(x, w.replace(values=v)), x, w.values)
  dx, dv = vjp(dy)
  ry, rdx, rdv = _dense_vjp(x, w, dy)
  assert_close(y, ry, dtype, "fwd")
  assert_close(dx, rdx, dtype, "dx")
  assert_close(dv, rdv, dtype, "dw")
  jaxpr = str(jax.make_jaxpr(lambda x: bsmm(x, w))(x))
  assert "custom_vjp" not in jaxpr and "dot_general" in jaxpr  # one dense dot


def test_auto_resolution():
  cpu = "native_cpu" if native_cpu.AVAILABLE else "xla"
  assert resolve_impl("auto", 32, "cpu") == cpu
  assert resolve_impl("auto", 1, "cpu") == cpu
  assert resolve_impl("auto", 1, "gpu") == "xla"
  assert resolve_impl("auto", 32, "gpu") == "pallas_gpu"
  assert resolve_impl("auto", 8, "gpu") == "xla"
  assert resolve_impl("auto", 48, "gpu") == "xla"  # not a power of two
  assert resolve_impl("auto", 256, "gpu") == "xla"  # overflows shared memory
  assert resolve_impl("auto", 128, "tpu") == "pallas_tpu"
  assert resolve_impl("auto", 64, "tpu") == "xla"
  assert resolve_impl("auto", 2048, "tpu") == "xla"  # overflows VMEM
  assert resolve_impl("pallas", 128, "tpu") == "pallas_tpu"
  assert resolve_impl("pallas", 32, "cpu") == "pallas_gpu"
  # Mosaic GPU is never auto's choice while Triton is offered ...
  assert resolve_impl("auto", 64, "gpu", compute_capability=9.0) == "pallas_gpu"


def test_auto_resolution_without_triton(monkeypatch):
  """Where this JAX offers no Triton backend, auto takes the Mosaic GPU
  forward on Hopper and newer at its block sizes, XLA elsewhere."""
  monkeypatch.setattr(pallas_gpu, "AVAILABLE", False)
  assert resolve_impl("auto", 64, "gpu", compute_capability=9.0) == "mosaic_gpu"
  assert resolve_impl("auto", 128, "gpu", compute_capability=10.0) == "mosaic_gpu"
  assert resolve_impl("auto", 64, "gpu", compute_capability=8.0) == "xla"
  assert resolve_impl("auto", 64, "gpu") == "xla"  # capability unknown
  assert resolve_impl("auto", 32, "gpu", compute_capability=9.0) == "xla"
  assert resolve_impl("pallas", 64, "gpu") == "mosaic_gpu"
  assert ops._backward_of_mosaic(64) == "xla"


def test_target_device_follows_default_device():
  """bsmm's target is jax.default_device when set (device or platform
  name), else the first device -- what a deviceless compile relies on."""
  assert target_device() == jax.devices()[0]
  other = jax.devices()[-1]
  with jax.default_device(other):
    assert target_device() == other
  with jax.default_device("cpu"):
    assert target_device() == jax.devices("cpu")[0]


def test_mosaic_gpu_is_forward_only():
  w = BlockCSR.from_mask(np.ones((1, 1), bool), 64)
  with pytest.raises(ValueError, match="forward only"):
    bsmm(jnp.ones((2, 64)), w, impl="xla", backward_impl="mosaic_gpu")
  w32 = BlockCSR.from_mask(np.ones((1, 1), bool), 32)
  with pytest.raises(ValueError, match=r"block sizes \(64, 128\)"):
    bsmm(jnp.ones((2, 32)), w32, impl="mosaic_gpu")


@pytest.mark.parametrize("block_size,sparse_below,dense_at", [
    (1, 0.25, 0.3), (8, 0.3, 0.35), (32, 0.7, 0.75), (128, 0.6, 0.7),
    (4, 0.29, 0.32)])
def test_auto_goes_dense_on_cpu_from_the_measured_density(
    block_size, sparse_below, dense_at):
  """Where the committed benchmark measured dense jnp.dot faster than the
  native kernel for fwd+dX+dW, auto multiplies densely; other backends
  and explicit impls are unaffected."""
  cpu = "native_cpu" if native_cpu.AVAILABLE else "xla"
  assert resolve_impl("auto", block_size, "cpu", sparse_below) == cpu
  assert resolve_impl("auto", block_size, "cpu", dense_at) == "dense"
  assert resolve_impl("auto", block_size, "gpu", dense_at) != "dense"
  assert resolve_impl("xla", block_size, "cpu", dense_at) == "xla"


@pytest.mark.slow
def test_auto_dense_is_exact_through_bsmm(rng):
  """A bs-1 layer at density 0.5 under auto: the dense kernel, same values
  and gradients as the reference."""
  from snn_jax import topology
  t = topology.make("erdos_renyi", 96, 64, density=0.5, seed=3)
  w = t.to_bcsr(rng.normal(size=(t.nnzb, 1, 1)).astype(np.float32))
  x = jnp.asarray(rng.normal(size=(16, 96)).astype(np.float32))
  wd = w.to_dense()
  jaxpr = str(jax.make_jaxpr(lambda x: bsmm(x, w))(x))
  assert "ffi_call" not in jaxpr  # not the native kernel
  np.testing.assert_allclose(bsmm(x, w), x @ wd, rtol=1e-5, atol=1e-5)
  g = jax.grad(lambda v: jnp.sum(bsmm(x, w.replace(values=v)) ** 2))(w.values)
  gd = jax.grad(lambda m: jnp.sum((x @ m) ** 2))(wd)
  np.testing.assert_allclose(w.replace(values=g).to_dense(),
                             jnp.where(wd != 0, gd, 0), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_without_native_kernels_auto_falls_back_with_one_warning(tmp_path):
  """As on a machine without a C++ compiler: the extension does not import;
  the package imports, auto runs the XLA kernels and says so once."""
  import subprocess
  import sys
  blocker = tmp_path / "sitecustomize.py"
  blocker.write_text(
      "import sys\n"
      "class _Block:\n"
      "  def find_spec(self, name, path=None, target=None):\n"
      "    if name.startswith('snn_jax.kernels._native_cpu_'):\n"
      "      raise ModuleNotFoundError('blocked: no compiler here')\n"
      "sys.meta_path.insert(0, _Block())\n")
  code = (
      "import warnings, numpy as np, jax.numpy as jnp\n"
      "from snn_jax.kernels import native_cpu\n"
      "from snn_jax import topology as T\n"
      "from snn_jax.ops import bsmm\n"
      "assert not native_cpu.AVAILABLE, 'extension imported'\n"
      "t = T.make('erdos_renyi', 32, 16, density=0.05, seed=0)\n"
      "w = t.to_bcsr(values=jnp.ones((t.nnzb, 1, 1)))\n"
      "x = jnp.ones((3, 32))\n"
      "with warnings.catch_warnings(record=True) as caught:\n"
      "  warnings.simplefilter('always')\n"
      "  y = bsmm(x, w); bsmm(x, w)\n"
      "np.testing.assert_allclose(y, bsmm(x, w, impl='dense'))\n"
      "msgs = [str(c.message) for c in caught if 'native CPU' in str(c.message)]\n"
      "assert len(msgs) == 1, msgs\n"
      "print(msgs[0])\n"
      "try:\n"
      "  bsmm(x, w, impl='native_cpu')\n"
      "except ValueError as e:\n"
      "  print('refused:', e)\n")
  import os
  env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}" +
         os.environ.get("PYTHONPATH", "")}
  r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                     text=True, env=env, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "were not built" in r.stdout and "XLA kernels" in r.stdout
  assert "refused:" in r.stdout and "only where it was built" in r.stdout
