"""kernels.native_cpu.relu_layers_native: a stack of block-size-1 ReLU layers
(the Sparse DNN Graph Challenge's layer) in one native call, against the
native bsmm forward followed by the same bias and clip, and a float64 NumPy
oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from snn_jax import graph_challenge as gc
from snn_jax.kernels import native_cpu
from snn_jax.ops import bsmm
from snn_jax.sparse import BlockCSR

pytestmark = pytest.mark.skipif(not native_cpu.AVAILABLE,
                                reason=native_cpu.UNAVAILABLE_REASON)

YMAX = 4.0


def _layers(rng, n, n_layers, density):
  """Random weighted layers with some empty rows and columns (a neuron with
  no inputs or no outputs), as scipy CSR float32."""
  mats = []
  for _ in range(n_layers):
    mask = rng.uniform(size=(n, n)) < density
    mask[rng.choice(n, n // 8, replace=False)] = False     # empty rows
    mask[:, rng.choice(n, n // 8, replace=False)] = False  # empty columns
    w = np.where(mask, rng.uniform(-0.5, 1.0, size=(n, n)), 0.0)
    mats.append(sp.csr_matrix(w.astype(np.float32)))
  return mats


def _inputs(rng, batch, n):
  """Rows of varied density, a few all zero; values in (0, 2]."""
  density = rng.uniform(0.02, 0.9, size=(batch, 1))
  y = np.where(rng.uniform(size=(batch, n)) < density,
               rng.uniform(0.05, 2.0, size=(batch, n)), 0.0).astype(np.float32)
  y[rng.choice(batch, max(1, batch // 5), replace=False)] = 0.0
  return y


def _call(net, y, start, length, bias, sparse_below):
  ix = net.index
  col_values, col_rows = net.column_view
  f = jax.jit(lambda y, start: native_cpu.relu_layers_native(
      y, net.values, ix["col_idx"], ix["row_ptr"], col_values, col_rows,
      ix["col_ptr"], start, length=length, bias=bias, ymax=YMAX,
      sparse_below=sparse_below))
  return np.asarray(f(jnp.asarray(y), jnp.int32(start)))


def _by_bsmm(mats, y, start, length, bias):
  """The same layers through bsmm (native) and jnp.clip, one at a time."""
  y = jnp.asarray(y)
  for m in mats[start:start + length]:
    w = BlockCSR.from_dense(jnp.asarray(m.toarray()), 1)
    y = jnp.clip(bsmm(y, w, impl="native_cpu") + jnp.float32(bias), 0.0, YMAX)
  return np.asarray(y)


def _oracle(mats, y, start, length, bias):
  y = y.astype(np.float64)
  for m in mats[start:start + length]:
    y = np.clip(y @ m.toarray().astype(np.float64) + bias, 0.0, YMAX)
  return y


@pytest.mark.parametrize("batch", [1, 13, 40])
@pytest.mark.slow
def test_same_bits_as_bsmm_for_every_form_and_thread_count(rng, batch):
  n, n_layers, bias = 96, 5, -0.2
  mats = _layers(rng, n, n_layers, 0.06)
  net = gc.stack_network(mats, 1)
  y0 = _inputs(rng, batch, n)
  expected = _by_bsmm(mats, y0, 0, n_layers, bias)
  np.testing.assert_allclose(expected, _oracle(mats, y0, 0, n_layers, bias),
                             rtol=1e-5, atol=1e-5)
  before = native_cpu.num_threads()
  try:
    for threads in sorted({1, native_cpu.max_threads()}):
      native_cpu.set_num_threads(threads)
      for sparse_below in (0.0, 0.3, 2.0):  # gather, mixed, scatter
        got = _call(net, y0, 0, n_layers, bias, sparse_below)
        np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32),
                                      err_msg=f"{threads} threads, "
                                      f"sparse_below={sparse_below}")
  finally:
    native_cpu.set_num_threads(before)


@pytest.mark.slow
def test_a_range_of_layers_from_a_traced_start(rng):
  n, bias = 64, -0.1
  mats = _layers(rng, n, 6, 0.1)
  net = gc.stack_network(mats, 1)
  y0 = _inputs(rng, 20, n)
  for start, length in [(0, 6), (2, 3), (5, 1), (4, 0)]:
    got = _call(net, y0, start, length, bias, 0.3)
    np.testing.assert_array_equal(got, _by_bsmm(mats, y0, start, length, bias))
  np.testing.assert_array_equal(_call(net, y0, 3, 0, bias, 0.3), y0)


@pytest.mark.slow
def test_rows_that_die_come_back_as_zeros(rng):
  """A strong negative bias kills rows at different layers; the survivors
  keep their values and the dead rows are exact zeros."""
  n, n_layers, bias = 64, 8, -1.5
  mats = _layers(rng, n, n_layers, 0.15)
  net = gc.stack_network(mats, 1)
  y0 = _inputs(rng, 48, n) * 2
  expected = _by_bsmm(mats, y0, 0, n_layers, bias)
  alive = expected.any(axis=1)
  assert 0 < alive.sum() < 48  # some die, some survive
  for sb in (0.0, 2.0):
    got = _call(net, y0, 0, n_layers, bias, sb)
    np.testing.assert_array_equal(got, expected)


def test_non_finite_weights(rng):
  """The scatter form never multiplies a zero activation (the challenge's
  sparse formulation), so a NaN weight reaches only the rows whose
  activation meets it; the gather form forms every product, as bsmm does.
  The two forms agree only for finite weights, so the network's column
  view (what infer_fused runs on) refuses non-finite ones."""
  n = 32
  w = np.zeros((n, n), np.float32)
  w[np.arange(n), (np.arange(n) + 1) % n] = 0.5
  w[3, 7] = np.nan
  net = gc.stack_network([sp.csr_matrix(w)], 1)
  y0 = np.zeros((2, n), np.float32)
  y0[:, 10] = rng.uniform(0.5, 1.0)
  y0[1, 3] = 1.0  # row 1 meets the NaN weight, row 0 does not
  ix = net.index
  order = np.asarray(ix["col_order"])
  col_values = jnp.asarray(np.asarray(net.values).reshape(order.shape)[0][order])
  col_rows = jnp.asarray(np.asarray(ix["row_idx"])[0][order])
  def call(sparse_below):
    return np.asarray(native_cpu.relu_layers_native(
        jnp.asarray(y0), net.values, ix["col_idx"], ix["row_ptr"], col_values,
        col_rows, ix["col_ptr"], 0, length=1, bias=0.0, ymax=YMAX,
        sparse_below=sparse_below))
  scatter = call(2.0)
  assert np.isfinite(scatter[0]).all() and scatter[0, 11] == 0.5 * y0[0, 10]
  assert np.isnan(scatter[1, 7]) and scatter[1, 11] == 0.5 * y0[1, 10]
  gather = call(0.0)
  assert np.isnan(gather[:, 7]).all()  # 0 x NaN formed, as bsmm forms it
  np.testing.assert_array_equal(np.delete(gather, 7, axis=1),
                                np.delete(scatter, 7, axis=1))
  with pytest.raises(ValueError, match="non-finite weights"):
    net.column_view  # pylint: disable=pointless-statement


def test_bad_arguments(rng):
  net = gc.stack_network(_layers(rng, 32, 2, 0.1), 1)
  y0 = _inputs(rng, 4, 32)
  with pytest.raises(ValueError, match="bias must be <= 0"):
    _call(net, y0, 0, 2, 0.5, 0.3)
  with pytest.raises(ValueError, match="length must be in"):
    _call(net, y0, 0, 3, -0.1, 0.3)
  with pytest.raises(Exception, match="outside the stack"):
    _call(net, y0, 1, 2, -0.1, 0.3)
