"""SET as its authors ran it: the SReLU module, Keras' initialisation, the
optimizer restarted at every epoch, the dense output layer, dropout only in
training, regrowth at zero, and the named variants end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from snn_jax import nn, sparse_training, topology
from snn_jax.nn import ModelConfig, SparseMLP, SReLU
from snn_jax.topology import TopologyConfig
from snn_jax.training import (OptimizerConfig, RunConfig, SET_VARIANTS,
                              TrainConfig, restart_every, set_variants,
                              train_and_evaluate)


pytestmark = pytest.mark.standard_promotion


# -- SReLU ---------------------------------------------------------------------

def _srelu(t_left, a_left, t_right, a_right):
  m = SReLU(len(t_left), rngs=nnx.Rngs(0))
  for name, v in (("t_left", t_left), ("a_left", a_left),
                  ("t_right", t_right), ("a_right", a_right)):
    getattr(m, name).set_value(jnp.asarray(v, jnp.float32))
  return m


def test_srelu_pieces_on_hand_made_values():
  # unit 0: t_l = -1, slope 0.5 left; t_r = -1 + |3| = 2, slope 2 right.
  # unit 1: a negative t_right counts by its magnitude: t_r = 0 + 1 = 1.
  m = _srelu([-1.0, 0.0], [0.5, 0.1], [3.0, -1.0], [2.0, 0.0])
  x = jnp.asarray([[-3.0, -2.0], [0.5, 0.5], [4.0, 3.0]], jnp.float32)
  want = np.array([[-1 + 0.5 * (-2), 0.1 * (-2)],     # left pieces
                   [0.5, 0.5],                        # identity between
                   [2 + 2 * (4 - 2), 1.0]],           # right pieces
                  np.float32)
  np.testing.assert_allclose(np.asarray(m(x)), want, rtol=1e-6)


@pytest.mark.slow
def test_srelu_initialisation_and_learning(key):
  m = SReLU(4000, rngs=nnx.Rngs(params=key))
  assert np.all(np.asarray(m.t_left.get_value()) == 0)
  assert np.all(np.asarray(m.a_right.get_value()) == 1)
  a_left, t_right = (np.asarray(v.get_value()) for v in (m.a_left, m.t_right))
  assert 0 <= a_left.min() and a_left.max() < 1 and 0.45 < a_left.mean() < 0.55
  assert 0 <= t_right.min() and t_right.max() < 5 and 2.3 < t_right.mean() < 2.7
  x = jax.random.normal(jax.random.fold_in(key, 1), (3, 4000), jnp.float32) * 4
  # With a_right = 1 the right threshold has no gradient (both sides of it
  # have slope 1); with another slope it has.
  m.a_right.set_value(jnp.full((4000,), 2.0, jnp.float32))
  grads = nnx.grad(lambda mod: jnp.sum(mod(x) ** 2))(m)
  for name in ("t_left", "a_left", "t_right", "a_right"):
    assert np.abs(np.asarray(getattr(grads, name).get_value())).sum() > 0, name


@pytest.mark.slow
def test_srelu_in_sparse_mlp_one_per_hidden_layer(rng):
  topos = topology.make_stack("erdos_renyi", [12, 10, 8, 3], density=0.5,
                              seed=1)
  model = SparseMLP(topos, activation="srelu", rngs=nnx.Rngs(0))
  assert [a.features for a in model.learned_activations] == [10, 8]
  x = jnp.asarray(rng.standard_normal((5, 12)), jnp.float32)
  assert model(x).shape == (5, 3)
  params = nnx.state(model, nnx.Param)
  assert {p[-1] for p, _ in nnx.to_flat_state(params)} >= {
      "t_left", "a_left", "t_right", "a_right"}
  with pytest.raises(ValueError, match="only SparseMLP builds it"):
    nn.get_activation("srelu")
  with pytest.raises(ValueError, match="for model 'mlp'"):
    ModelConfig(name="lenet5", activation="srelu")


# -- dropout only while training -------------------------------------------------

def test_dropout_acts_in_training_and_not_in_evaluation(rng):
  topos = topology.make_stack("erdos_renyi", [20, 64, 4], density=0.6, seed=2)
  model = SparseMLP(topos, dropout=0.3, rngs=nnx.Rngs(params=0, dropout=1))
  x = jnp.asarray(rng.standard_normal((8, 20)), jnp.float32)
  model.train()
  a, b = model(x), model(x)
  assert not np.allclose(np.asarray(a), np.asarray(b))  # fresh masks
  model.eval()
  c, d = model(x), model(x)
  np.testing.assert_array_equal(np.asarray(c), np.asarray(d))
  no_dropout = SparseMLP(topos, rngs=nnx.Rngs(params=0))
  np.testing.assert_allclose(np.asarray(c), np.asarray(no_dropout(x)),
                             rtol=1e-6)


# -- Keras' glorot_uniform under the mask, and N(0, std²) ----------------------

def test_dense_glorot_uniform_uses_the_dense_shape(key):
  t = topology.make("erdos_renyi", 784, 1000, density=0.02, seed=0)
  w = np.asarray(nn.get_initializer("dense_glorot_uniform")(key, t))
  limit = np.sqrt(6 / (784 + 1000))
  assert w.shape == (t.nnzb, 1, 1)
  assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
  assert abs(w.std() - limit / np.sqrt(3)) < 0.02 * limit


def test_fixed_normal_initialiser(key):
  t = topology.make("erdos_renyi", 300, 300, density=0.2, seed=0)
  w = np.asarray(nn.get_initializer("normal:0.1")(key, t))
  assert abs(w.std() - 0.1) < 0.003
  assert np.abs(w).max() > 0.3  # not truncated at two standard deviations
  with pytest.raises(ValueError, match="after 'normal:' must be a positive"):
    nn.get_initializer("normal:-1")


# -- the output layer dense ------------------------------------------------------

def test_dense_output_layer_whatever_the_topology():
  cfg = ModelConfig(hidden=(30, 20), topology=TopologyConfig(
      "erdos_renyi", density=0.1), dense_output=True)
  stack = cfg.make_topologies(50, 10, seed=0)
  assert [(t.n_in, t.n_out) for t in stack] == [(50, 30), (30, 20), (20, 10)]
  assert stack[-1].nnzb == 200 and stack[0].nnzb < 50 * 30 * 0.2
  with pytest.raises(ValueError, match="dense_output is for model 'mlp'"):
    ModelConfig(name="lenet5", dense_output=True)


# -- momentum restarted at every epoch -------------------------------------------

def test_restart_every_reinitialises_the_state_at_each_boundary():
  tx = restart_every(optax.sgd(0.1, momentum=0.9), 3)
  params = {"w": jnp.asarray([1.0, -2.0], jnp.float32)}
  grads = {"w": jnp.asarray([0.5, 1.0], jnp.float32)}
  state = tx.init(params)
  traces = []
  for _ in range(7):
    _, state = tx.update(grads, state, params)
    traces.append(np.asarray(state.inner[0].trace["w"]))
  g = np.array([0.5, 1.0])
  # trace_t = g + 0.9 trace_{t-1}, from zero at steps 1, 4 and 7.
  for t, mult in enumerate([1, 1.9, 2.71, 1, 1.9, 2.71, 1]):
    np.testing.assert_allclose(traces[t], mult * g, rtol=1e-6)
  with pytest.raises(ValueError, match="pass params"):
    tx.update(grads, state)


def test_optimizer_config_restart_and_heavy_ball():
  cfg = OptimizerConfig(lr=0.1, schedule="constant", momentum=0.5,
                        nesterov=False, restart_every_epoch=True)
  tx, _ = cfg.make(epochs=2, steps_per_epoch=2)
  params = {"w": jnp.ones(1, jnp.float32)}
  grads = {"w": jnp.ones(1, jnp.float32)}
  state, updates = tx.init(params), []
  for _ in range(3):
    u, state = tx.update(grads, state, params)
    updates.append(float(u["w"][0]))
  # heavy ball: -0.1 * (1, 1.5), then the restart: -0.1 again.
  np.testing.assert_allclose(updates, [-0.1, -0.15, -0.1], rtol=1e-6)
  nesterov, _ = OptimizerConfig(lr=0.1, schedule="constant",
                                momentum=0.5).make(epochs=1, steps_per_epoch=1)
  s = nesterov.init(params)
  u, _ = nesterov.update(grads, s, params)
  np.testing.assert_allclose(float(u["w"][0]), -0.15, rtol=1e-6)
  with pytest.raises(ValueError, match="use schedule 'constant'"):
    OptimizerConfig(schedule="cosine", restart_every_epoch=True)


@pytest.mark.slow
def test_momentum_is_zero_after_each_epoch_boundary_in_a_set_run(tmp_path):
  """In a keras_mask run the SET arm's optimizer restarts with each epoch:
  after epoch e's last step the momentum has accumulated that epoch only
  (one step of epoch e+1 leaves exactly one gradient in it)."""
  from snn_jax.training import build_model, build_optimizer, make_optimizer
  from snn_jax import data as data_lib
  cfg = set_variants.KERAS_MASK.apply(TrainConfig(
      model=ModelConfig(hidden=(16,), topology=TopologyConfig(density=0.3)),
      run=RunConfig(epochs=2, batch_size=100, progress=False)), evolving=True)
  ds = cfg.load_dataset().flattened()
  topos = cfg.model.make_topologies(ds.input_dim, ds.num_classes, seed=0)
  model = build_model(cfg, topos)
  steps = data_lib.num_batches(len(ds.x_train), 100)
  tx, _ = make_optimizer(cfg, steps)
  opt = build_optimizer(cfg, model, tx, steps)
  assert isinstance(opt, sparse_training.SparseOptimizer)
  x, y = jnp.asarray(ds.x_train[:100]), jnp.asarray(ds.y_train[:100])

  def loss(m):
    return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

  def trace_norm():
    leaves = [v for p, v in nnx.to_flat_state(nnx.state(opt.opt_state))
              if "trace" in p]
    return float(sum(jnp.sum(jnp.abs(v.get_value())) for v in leaves))

  for _ in range(steps):
    opt.update(model, nnx.grad(loss)(model))
  accumulated = trace_norm()
  opt.rewire(model)
  g = nnx.grad(loss)(model)
  opt.update(model, g)
  one_gradient = float(sum(jnp.sum(jnp.abs(v)) for v in jax.tree.leaves(
      nnx.state(g, nnx.Param))))
  assert accumulated > 2 * one_gradient
  np.testing.assert_allclose(trace_norm(), one_gradient, rtol=1e-5)


# -- SET's regrowth at exactly zero ------------------------------------------------

@pytest.mark.slow
def test_keras_mask_regrows_at_exactly_zero(rng):
  t = topology.make("erdos_renyi", 40, 30, density=0.2, seed=3)
  model = SparseMLP([t], rngs=nnx.Rngs(0))
  before = set(zip(t.rows.tolist(), t.cols.tolist()))
  cfg = set_variants.KERAS_MASK.apply(TrainConfig(), evolving=True)
  dyn = sparse_training.DynamicSparsity(cfg.sparse, total_steps=4,
                                        steps_per_epoch=2)
  opt = sparse_training.SparseOptimizer(model, dyn.wrap(optax.sgd(0.1)))
  x = jnp.asarray(rng.standard_normal((8, 40)), jnp.float32)
  grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
  opt.update(model, grads)
  opt.update(model, grads)
  opt.rewire(model)
  layer = model.layers[0]
  after = layer.topology()
  values = np.asarray(layer.values.get_value()).reshape(-1)
  grown = [(r, c) not in before for r, c in zip(after.rows.tolist(),
                                                 after.cols.tolist())]
  assert sum(grown) == round(0.3 * t.nnzb) or abs(
      sum(grown) - 0.3 * t.nnzb) <= 1
  assert np.all(values[np.array(grown)] == 0.0)
  assert np.all(values[~np.array(grown)] != 0.0)


# -- the variants as configs and as runs -------------------------------------------

@pytest.mark.parametrize("name", sorted(SET_VARIANTS))
def test_every_variant_makes_valid_configs_for_each_arm(name):
  v = set_variants.get(name)
  for evolving in (False, True):
    cfg = v.apply(TrainConfig(), evolving=evolving)
    assert (cfg.sparse.method == "set") == evolving
    for key, value in v.overrides(evolving=evolving).items():
      part = cfg
      for field in key.split("."):
        part = getattr(part, field)
      assert part == value, key
  assert any(name in line for line in v.describe())
  with pytest.raises(ValueError, match="unknown SET variant"):
    set_variants.get("kera_mask")


@pytest.mark.parametrize("name", ["keras_mask", "truly_sparse"])
@pytest.mark.slow
def test_variant_trains_end_to_end(tmp_path, name):
  cfg = set_variants.get(name).apply(TrainConfig(
      model=ModelConfig(hidden=(48, 48), topology=TopologyConfig(
          "erdos_renyi", params={"epsilon": 4})),
      run=RunConfig(epochs=3, progress=False)), evolving=True)
  s = train_and_evaluate(cfg, str(tmp_path / name))
  rows = [json.loads(l) for l in open(tmp_path / name / "metrics.jsonl")]
  assert [r["rewired_blocks"] > 0 for r in rows] == [True, True, False]
  assert rows[-1]["train_loss"] < rows[0]["train_loss"]
  assert np.isfinite(s["final_test_acc"])
  saved = json.load(open(tmp_path / name / "config.json"))
  assert saved["model"]["dense_output"] == (name == "keras_mask")
  assert saved["optimizer"]["restart_every_epoch"] == (name == "keras_mask")
