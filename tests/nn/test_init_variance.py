"""Activation variance through deep sparse stacks at initialisation.

With the sparsity-aware initialisers the second moment of the activations
stays of order one through 60 ReLU layers; with the naive dense scaling
(2 / n_in) it collapses geometrically (by about the density per layer).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snn_jax import nn, topology as T

DEPTH = 60
WIDTH = 256


def _second_moments(init, stack, x):
  model = nn.SparseMLP(stack, init=init, rngs=nnx.Rngs(3))
  return model.preactivation_second_moments(x)


@pytest.mark.slow
def test_preactivation_second_moments_match_a_manual_forward(inputs):
  stack = T.make_stack("erdos_renyi", [WIDTH, 64, 32, 10], density=0.2, seed=1)
  model = nn.SparseMLP(stack, activation="tanh", rngs=nnx.Rngs(0))
  h, expected = inputs, []
  for l, layer in enumerate(model.layers):
    h = layer(h)
    expected.append(float(jnp.mean(h ** 2)))
    if l < len(model.layers) - 1:
      h = jnp.tanh(h)
  got = model.preactivation_second_moments(inputs)
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(model(inputs)), np.asarray(h), rtol=1e-6)


@pytest.fixture(scope="module")
def deep_stack():
  return T.make_stack("erdos_renyi", [WIDTH] * (DEPTH + 1), density=0.05, seed=0)


@pytest.fixture(scope="module")
def inputs():
  return jnp.asarray(np.random.default_rng(0).standard_normal((512, WIDTH)),
                     jnp.float32)


@pytest.mark.parametrize("init", ["sparse_he", "neurofabric"])
@pytest.mark.slow
def test_sparse_aware_init_preserves_variance(deep_stack, inputs, init):
  m = _second_moments(init, deep_stack, inputs)
  assert len(m) == DEPTH
  assert np.all(m > 0.1) and np.all(m < 10.0), m[[0, 9, 29, 59]]


def test_naive_init_collapses(deep_stack, inputs):
  m = _second_moments("dense_he", deep_stack, inputs)
  # Each layer scales by about fan_in / n_in = 0.05.
  assert m[-1] < 1e-30 or m[-1] < 1e-12 * m[0]
  assert m[9] < 1e-6


def test_neurofabric_counts_only_live_inputs():
  # Layer 0 leaves half of the hidden units without inputs (dead); the
  # next layer's effective fan-in counts only the live half.
  mask0 = np.zeros((16, 32), bool)
  mask0[:, :16] = True
  t0 = T.Topology.from_mask(mask0)
  t1 = T.Topology.from_mask(np.ones((32, 8), bool))
  live = nn.live_units([t0, t1])
  assert live[1].sum() == 16
  np.testing.assert_array_equal(nn.effective_fan_in(t1, live[1]), 16)
  v_nf = np.asarray(nn.neurofabric(jax.random.key(0), t1, live_inputs=live[1]))
  v_he = np.asarray(nn.sparse_he(jax.random.key(0), t1))
  np.testing.assert_allclose(v_nf.std() / v_he.std(), np.sqrt(2), rtol=0.05)


def test_sparse_he_scales_per_neuron_fan_in():
  t = T.make("erdos_renyi", 400, 300, density=0.1, seed=1)
  v = np.asarray(nn.sparse_he(jax.random.key(1), t)).ravel()
  fi = t.fan_in()
  # std of the weights into each output is sqrt(2 / fan_in).
  per_out = [v[t.cols == j] for j in range(300)]
  ratio = np.array([p.std() / np.sqrt(2.0 / fi[j]) for j, p in enumerate(per_out)])
  assert abs(np.median(ratio) - 1.0) < 0.05


def _direct_draw(name, key, t, dtype):
  """Each initialiser's definition, drawn at the layer's own shape."""
  from snn_jax.nn import _init
  shape = (t.nnzb, t.block_size, t.block_size)
  if name == "dense_he":
    return (jax.random.normal(key, shape, jnp.float32)
            * np.sqrt(2.0 / t.n_in)).astype(dtype)
  if name == "truncated_normal:0.04":
    return (jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)
            * 0.04).astype(dtype)
  fan_in = {"sparse_he": t.fan_in(),
            "neurofabric": nn.effective_fan_in(t, None)}[name]
  std = _init._per_entry_std(t, np.sqrt(2.0 / np.maximum(fan_in, 1)))
  return (jax.random.normal(key, std.shape, jnp.float32) * std).astype(dtype)


@pytest.mark.parametrize("name", ["sparse_he", "neurofabric", "dense_he",
                                  "truncated_normal:0.04"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.slow
def test_initialisers_draw_the_values_of_their_definition(name, dtype, rng):
  """The draws are made at a padded size (one compilation per size class)
  and cut: value for value those of the layer's own shape."""
  init = nn.get_initializer(name)
  for n_in, n_out, density, bs in [(64, 32, 0.3, 1), (300, 100, 0.07, 1),
                                   (96, 64, 0.5, 2), (64, 64, 0.25, 4)]:
    t = T.make("erdos_renyi", n_in, n_out, density=density, block_size=bs,
               seed=int(rng.integers(1 << 30)))
    key = jax.random.key(int(rng.integers(1 << 30)))
    got = init(key, t, dtype)
    want = _direct_draw(name, key, t, dtype)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(np.asarray(got, np.float32),
                                  np.asarray(want, np.float32))
  # A traced key (inside jit) draws at the exact shape; XLA may fuse the
  # scaling into the draw there (an ulp apart in float32).
  traced = jax.jit(lambda k: init(k, t, dtype))(key)
  np.testing.assert_allclose(np.asarray(traced, np.float32),
                             np.asarray(want, np.float32), rtol=1e-2
                             if dtype == jnp.bfloat16 else 1e-6)
