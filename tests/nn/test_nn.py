"""SparseDense / SparseMLP: numerics against dense, state layout, repr."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snn_jax import nn, topology as T
from snn_jax.nn import SparseDense, SparseMLP, TopologyVar


@pytest.mark.parametrize("bs", [1, 8])
def test_sparse_dense_matches_dense(rng, bs):
  t = T.make("erdos_renyi", 64, 48, density=0.3, block_size=bs, seed=1)
  layer = SparseDense(t, rngs=nnx.Rngs(0))
  layer.bias.set_value(jnp.asarray(rng.standard_normal(48), jnp.float32))
  x = jnp.asarray(rng.standard_normal((7, 64)), jnp.float32)
  w = np.asarray(layer.weight().to_dense())
  np.testing.assert_array_equal(w != 0, t.mask())
  np.testing.assert_allclose(layer(x), x @ w + layer.bias.get_value()[None], rtol=1e-5, atol=1e-5)
  assert layer.topology() == t


@pytest.mark.slow
def test_index_arrays_are_not_trained(rng):
  s = T.make_stack("xnet", [32, 64, 10], density=0.25)
  model = SparseMLP(s, rngs=nnx.Rngs(0))
  params = nnx.state(model, nnx.Param)
  leaves = jax.tree.leaves(params)
  assert all(jnp.issubdtype(l.dtype, jnp.floating) for l in leaves)
  idx = jax.tree.leaves(nnx.state(model, TopologyVar))
  assert idx and all(l.dtype == jnp.int32 for l in idx)
  x = jnp.asarray(rng.standard_normal((4, 32)), jnp.float32)
  grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
  assert jax.tree.structure(grads) == jax.tree.structure(params)


@pytest.mark.slow
def test_set_topology_fixed_nnzb_no_retrace(rng):
  a = T.make("fixed_fan_in", 32, 32, fan_in=4, seed=0)
  b = T.make("fixed_fan_in", 32, 32, fan_in=4, seed=1)
  layer = SparseDense(a, rngs=nnx.Rngs(0))
  x = jnp.asarray(rng.standard_normal((3, 32)), jnp.float32)

  @nnx.jit
  @chex.assert_max_traces(n=1)
  def f(layer, x):
    return layer(x)

  f(layer, x)
  new_vals = jnp.asarray(rng.standard_normal(layer.values.get_value().shape), jnp.float32)
  layer.set_topology(b, new_vals)
  y = f(layer, x)
  np.testing.assert_allclose(
      y, x @ np.asarray(layer.weight().to_dense()) + layer.bias.get_value()[None], rtol=1e-5,
      atol=1e-5)
  assert layer.topology() == b
  chex.clear_trace_counter()
  with pytest.raises(ValueError, match="nnzb must stay"):
    layer.set_topology(T.make("fixed_fan_in", 32, 32, fan_in=5), new_vals)


@pytest.mark.parametrize("norm", [None, "layer", "batch"])
@pytest.mark.slow
def test_mlp_forward_modes(rng, norm):
  s = T.make_stack("erdos_renyi", [20, 40, 30, 5], density=0.4, seed=2)
  model = SparseMLP(s, norm=norm, dropout=0.2, rngs=nnx.Rngs(0, dropout=1))
  x = jnp.asarray(rng.standard_normal((16, 20)), jnp.float32)
  y_train = model(x)
  model.eval()
  y1, y2 = model(x), model(x)
  np.testing.assert_array_equal(y1, y2)  # deterministic in eval mode
  assert y_train.shape == (16, 5) and not np.allclose(y_train, y1)


def test_repr_shows_topology_density_and_nnz():
  s = T.make_stack("radixnet", [64, 64, 64], radices=[[8, 8]])
  model = SparseMLP(s, rngs=nnx.Rngs(0))
  text = repr(model)
  assert "radixnet" in text and "density=0.125" in text
  assert "nnz=1,024 of 8,192 dense" in text and "12.50%" in text
  assert str(model) == text


def test_mlp_errors():
  a = T.make("dense", 8, 4)
  b = T.make("dense", 5, 2)
  with pytest.raises(ValueError, match="do not chain"):
    SparseMLP([a, b], rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="unknown init"):
    SparseMLP([a], init="zeros", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="unknown activation"):
    SparseMLP([a], activation="softplus2", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="norm"):
    SparseMLP([a], norm="group", rngs=nnx.Rngs(0))


@pytest.mark.slow
def test_sparse_conv_matches_masked_dense_conv(rng):
  t = T.make("erdos_renyi", 3, 8, density=0.5, seed=0)
  conv = nn.SparseConv2D(t, (3, 3), padding="SAME", rngs=nnx.Rngs(0))
  x = jnp.asarray(rng.standard_normal((2, 9, 9, 3)), jnp.float32)
  w = np.asarray(conv.dense.weight().to_dense())  # [3*3*3, 8], rows c*9 + p
  kernel = w.reshape(3, 3, 3, 8).transpose(1, 2, 0, 3)  # HWIO
  ref = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(conv(x), ref + conv.dense.bias.get_value()[None, None, None],
                             rtol=1e-4, atol=1e-4)
  # Channel pairs absent from the topology have all-zero filters.
  filt_on = np.abs(kernel).sum(axis=(0, 1)) > 0
  np.testing.assert_array_equal(filt_on, t.mask())


@pytest.mark.slow
def test_lenet5_forward_and_grad(rng):
  tops = [T.make("dense", 1, 6), T.make("erdos_renyi", 6, 16, density=0.5),
          T.make("erdos_renyi", 400, 120, density=0.1),
          T.make("erdos_renyi", 120, 84, density=0.2), T.make("dense", 84, 10)]
  model = nn.LeNet5(tops, rngs=nnx.Rngs(0))
  x = jnp.asarray(rng.standard_normal((4, 784)), jnp.float32)
  assert model(x).shape == (4, 10)
  g = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
  assert all(jnp.isfinite(l).all() for l in jax.tree.leaves(g))
  assert model.nnz < 6 * 25 + 16 * 6 * 25 + 400 * 120 + 120 * 84 + 840
  for bad in (tops[:2], tops[:2] + [T.make("dense", 300, 120)] + tops[3:],
              tops[:3] + [T.make("dense", 100, 84)] + tops[4:],
              [T.make("dense", 1, 8)] + tops[1:]):
    with pytest.raises(ValueError, match="LeNet-5 needs"):
      nn.LeNet5(bad, rngs=nnx.Rngs(0))
  # Other fully connected widths are allowed; dense_weights covers every layer.
  small = nn.LeNet5(tops[:2] + [T.make("dense", 400, 32), T.make("dense", 32, 10)],
                    rngs=nnx.Rngs(1))
  assert small(x).shape == (4, 10)
  w = small.dense_weights()
  assert [w[f"layer_{l}_weight"].shape for l in range(4)] == [
      (25, 6), (150, 16), (400, 32), (32, 10)]
  assert small.dense_equivalent == 25 * 6 + 150 * 16 + 400 * 32 + 320
