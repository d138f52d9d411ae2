"""snn_jax.conv.sparse_conv2d: every implementation against a float64
oracle (forward, dX, dW), both layouts, the native kernels' guarantees
(same bits for any thread count, NaN propagation, empty channels), the
choice of implementation and the errors at the boundary."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snn_jax import conv
from snn_jax.conv import resolve_conv_impl, same_pads, sparse_conv2d
from snn_jax.kernels import native_cpu, tuning
from snn_jax.sparse import BlockCSR

needs_native = pytest.mark.skipif(not native_cpu.AVAILABLE,
                                  reason=native_cpu.UNAVAILABLE_REASON)
IMPLS = [pytest.param("native_cpu", marks=needs_native), "dense"]


def oracle(x, weight, kernel_size, padding):
  """float64 (y, dx, dW) of the NHWC correlation for the cotangent ``g``
  returned too: y = sum_ij xp[:, i:, j:] @ W_ij (W_ij: the rows of offset
  (i, j)); its adjoints."""
  kh, kw = kernel_size
  pads = same_pads(kernel_size) if padding == "SAME" else ((0, 0), (0, 0))
  x = x.astype(np.float64)
  xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  b, hp, wp, c = xp.shape
  ho, wo = hp - kh + 1, wp - kw + 1
  w = weight.astype(np.float64).reshape(c, kh, kw, -1)
  y = sum(xp[:, i:i + ho, j:j + wo, :] @ w[:, i, j, :]
          for i in range(kh) for j in range(kw))
  g = np.random.default_rng(1).standard_normal(y.shape)
  dxp = np.zeros_like(xp)
  dw = np.zeros_like(w)
  for i in range(kh):
    for j in range(kw):
      dxp[:, i:i + ho, j:j + wo, :] += g @ w[:, i, j, :].T
      dw[:, i, j, :] = np.einsum("bhwc,bhwo->co", xp[:, i:i + ho, j:j + wo], g)
  dx = dxp[:, pads[0][0]:pads[0][0] + x.shape[1],
           pads[1][0]:pads[1][0] + x.shape[2], :]
  return y, g, dx, dw.reshape(c * kh * kw, -1)


def random_weight(rng, n_in, n_out, density):
  mask = rng.random((n_in, n_out)) < density
  return BlockCSR.from_dense(
      (rng.standard_normal((n_in, n_out)) * mask).astype(np.float32), 1)


def to_layout(a, layout):
  return a if layout == "NHWC" else np.transpose(a, (3, 1, 2, 0))


def run(x, w, kernel_size, padding, impl, layout, g):
  """(y, dx, dvalues) of ``sum(sparse_conv2d(x, w) * g)``, NHWC numpy."""
  xl = jnp.asarray(to_layout(x, layout))
  gl = jnp.asarray(to_layout(g, layout).astype(np.float32))

  def f(xl, values):
    return sparse_conv2d(xl, w.replace(values=values), kernel_size=kernel_size,
                         padding=padding, impl=impl, layout=layout)
  y, vjp = jax.vjp(f, xl, w.values)
  dx, dv = vjp(gl)
  return (to_layout(np.asarray(y), layout), to_layout(np.asarray(dx), layout),
          np.asarray(dv))


CASES = [  # batch, height, width, in channels, out channels, kernel, padding, density
    (5, 14, 14, 20, 50, (5, 5), "SAME", 0.1),     # Alford's conv2 at 10 %
    (3, 7, 6, 2, 3, (3, 2), "SAME", 0.5),         # odd shapes, uneven kernel
    (2, 9, 8, 3, 4, (5, 5), "VALID", 0.7),
    (7, 4, 3, 2, 2, (4, 4), "SAME", 0.9),         # even kernel: pads 1 and 2
    (17, 3, 3, 2, 3, (5, 5), "SAME", 1.0),        # kernel larger than the image
    (1, 5, 5, 1, 1, (1, 1), "VALID", 1.0),
    (33, 6, 5, 3, 7, (3, 3), "SAME", 0.3),        # batch not a multiple of lanes
]


@pytest.mark.parametrize("layout", ["NHWC", "CHWB"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:5])) + f"-{c[6]}")
def test_matches_the_float64_oracle(rng, case, impl, layout):
  b, h, w_, c, o, k, padding, density = case
  w = random_weight(rng, c * k[0] * k[1], o, density)
  x = rng.standard_normal((b, h, w_, c)).astype(np.float32)
  want_y, g, want_dx, want_dw = oracle(x, np.asarray(w.to_dense()), k, padding)
  y, dx, dv = run(x, w, k, padding, impl, layout, g)
  scale = np.sqrt(c * k[0] * k[1])
  np.testing.assert_allclose(y, want_y, atol=2e-5 * scale, rtol=1e-4)
  np.testing.assert_allclose(dx, want_dx, atol=2e-5 * scale, rtol=1e-4)
  rows = np.asarray(w.row_idx)
  cols = np.asarray(w.col_idx)
  np.testing.assert_allclose(dv.reshape(-1), want_dw[rows, cols],
                             atol=2e-5 * np.sqrt(b * h * w_), rtol=1e-4)


@needs_native
def test_native_cpu_empty_channels_give_zeros(rng):
  """Output channel 1 has no stored weight (its outputs are 0, the bias
  aside); input channel 0 has none (its gradient is 0)."""
  dense = rng.standard_normal((3 * 9, 4)).astype(np.float32)
  dense[:, 1] = 0
  dense[:9, :] = 0
  w = BlockCSR.from_dense(dense, 1)
  x = rng.standard_normal((4, 6, 6, 3)).astype(np.float32)
  g = rng.standard_normal((4, 6, 6, 4))
  y, dx, _ = run(x, w, (3, 3), "SAME", "native_cpu", "NHWC", g)
  assert np.all(y[..., 1] == 0) and np.all(dx[..., 0] == 0)
  assert np.all(y[..., [0, 2, 3]] != 0)


@needs_native
@pytest.mark.parametrize("layout", ["NHWC", "CHWB"])
def test_native_cpu_same_bits_for_any_thread_count(rng, layout):
  w = random_weight(rng, 20 * 25, 30, 0.2)
  x = rng.standard_normal((9, 10, 10, 20)).astype(np.float32)
  g = rng.standard_normal((9, 10, 10, 30))
  before = native_cpu.num_threads()
  try:
    results = []
    for n in (1, native_cpu.max_threads()):
      native_cpu.set_num_threads(n)
      results.append(run(x, w, (5, 5), "SAME", "native_cpu", layout, g))
  finally:
    native_cpu.set_num_threads(before)
  for a, b in zip(*results):
    np.testing.assert_array_equal(a, b)


@needs_native
def test_native_cpu_propagates_nan(rng):
  """A NaN input pixel reaches every output its window covers, as in the
  dense convolution; a NaN weight every output of its channel."""
  w = random_weight(rng, 2 * 9, 3, 1.0)
  x = rng.standard_normal((2, 5, 5, 2)).astype(np.float32)
  x[0, 2, 2, 1] = np.nan
  g = rng.standard_normal((2, 5, 5, 3))
  y, _, _ = run(x, w, (3, 3), "SAME", "native_cpu", "NHWC", g)
  want, _, _ = run(x, w, (3, 3), "SAME", "dense", "NHWC", g)
  np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
  assert np.isnan(y[0, 1:4, 1:4, :]).all() and not np.isnan(y[1]).any()
  values = np.asarray(w.values).copy()
  values[0] = np.nan  # row 0: input channel 0 at offset (0, 0) -> column 0
  x = rng.standard_normal((2, 5, 5, 2)).astype(np.float32)
  y, _, _ = run(x, w.replace(values=jnp.asarray(values)), (3, 3), "VALID",
                "native_cpu", "NHWC", rng.standard_normal((2, 3, 3, 3)))
  assert np.isnan(y[..., int(np.asarray(w.col_idx)[0])]).all()


@pytest.mark.parametrize("layout", ["NHWC", "CHWB"])
@pytest.mark.parametrize("impl", IMPLS)
def test_bias_is_added_per_output_channel(rng, impl, layout):
  w = random_weight(rng, 2 * 9, 3, 0.6)
  x = jnp.asarray(rng.standard_normal((4, 5, 5, 2) if layout == "NHWC"
                                      else (2, 5, 5, 4)), jnp.float32)
  bias = jnp.asarray(rng.standard_normal(3), jnp.float32)
  plain = sparse_conv2d(x, w, kernel_size=(3, 3), impl=impl, layout=layout)
  biased = sparse_conv2d(x, w, kernel_size=(3, 3), impl=impl, layout=layout,
                         bias=bias)
  axis = 3 if layout == "NHWC" else 0
  shape = [1, 1, 1, 1]
  shape[axis] = 3
  np.testing.assert_allclose(np.asarray(biased - plain),
                             np.broadcast_to(np.asarray(bias).reshape(shape),
                                             plain.shape), rtol=1e-5, atol=1e-5)


def test_resolve_conv_impl():
  below = tuning.CPU_CONV_DENSE_THRESHOLD / 2
  want = "native_cpu" if native_cpu.AVAILABLE else "dense"
  assert resolve_conv_impl("auto", below, jnp.float32, "cpu") == want
  assert resolve_conv_impl("auto", tuning.CPU_CONV_DENSE_THRESHOLD,
                           jnp.float32, "cpu") == "dense"
  assert resolve_conv_impl("auto", below, jnp.bfloat16, "cpu") == "dense"
  assert resolve_conv_impl("auto", below, jnp.float32, "gpu") == "dense"
  assert resolve_conv_impl("dense", below, jnp.float32, "cpu") == "dense"
  with pytest.raises(ValueError, match="the backend is 'gpu'"):
    resolve_conv_impl("native_cpu", below, jnp.float32, "gpu")
  with pytest.raises(ValueError, match="the dtype is bfloat16|built"):
    resolve_conv_impl("native_cpu", below, jnp.bfloat16, "cpu")
  with pytest.raises(ValueError, match="unknown convolution impl 'xla'"):
    resolve_conv_impl("xla", below, jnp.float32, "cpu")


def test_bfloat16_runs_dense_under_auto(rng):
  w = random_weight(rng, 2 * 9, 3, 0.3)
  wb = w.replace(values=w.values.astype(jnp.bfloat16))
  x = rng.standard_normal((2, 5, 5, 2)).astype(np.float32)
  y = sparse_conv2d(jnp.asarray(x, jnp.bfloat16), wb, kernel_size=(3, 3))
  want = sparse_conv2d(jnp.asarray(x), w, kernel_size=(3, 3), impl="dense")
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(want),
                             rtol=0.05, atol=0.05)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(kernel_size=(3, 3), padding="FULL"), ValueError, "padding must be"),
    (dict(kernel_size=(3, 3), layout="NCHW"), ValueError, "layout must be"),
    (dict(kernel_size=(3, 3), rows=50), ValueError, "C \\* 3 \\* 3 = 50"),
    (dict(kernel_size=(3, 3), impl="pallas"), ValueError,
     "unknown convolution impl"),
    (dict(kernel_size=(0, 3)), ValueError, "two positive ints"),
    (dict(kernel_size=(3, 3), bias=jnp.zeros(4)), ValueError, "bias must be"),
])
def test_bad_arguments_raise(rng, kwargs, error, match):
  w = random_weight(rng, kwargs.pop("rows", 2 * 9), 3, 0.5)
  x = jnp.asarray(rng.standard_normal((2, 5, 5, 2)), jnp.float32)
  with pytest.raises(error, match=match):
    sparse_conv2d(x, w, **kwargs)


def test_bad_weights_raise(rng):
  x = jnp.asarray(rng.standard_normal((2, 5, 5, 2)), jnp.float32)
  blocked = BlockCSR.from_dense(np.ones((18, 4), np.float32), 2)
  with pytest.raises(ValueError, match="block_size 1"):
    sparse_conv2d(x, blocked, kernel_size=(3, 3))
  with pytest.raises(TypeError, match="BlockCSR"):
    sparse_conv2d(x, np.ones((18, 3), np.float32), kernel_size=(3, 3))
  w = random_weight(rng, 2 * 9, 3, 0.5)
  with pytest.raises(TypeError, match="must both be float32 or both bfloat16"):
    sparse_conv2d(x.astype(jnp.bfloat16), w, kernel_size=(3, 3))
  tiny = jnp.asarray(rng.standard_normal((2, 2, 2, 2)), jnp.float32)
  with pytest.raises(ValueError, match="does not fit"):
    sparse_conv2d(tiny, w, kernel_size=(3, 3), padding="VALID")


def test_module_exports():
  assert conv.CONV_IMPLS == ("auto", "native_cpu", "dense")
  assert same_pads((5, 4)) == ((2, 2), (1, 2))
