"""The one rewiring engine (``sparse_training.set/rigl/prune(...).wrap(tx)``
+ ``SparseOptimizer``): device rules equal to the host oracle's
(``host_oracle``), whole updates making the oracle's choices where they are
deterministic, the schedules, ``update_every=0`` through ``rewire``, and any
model -- LeNet-5, Alford's LeNet-5, a model written here -- trained with
every method, each compiled once (no retrace) and updated on exactly the
scheduled steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from snn_jax import analysis, sparse_training, topology
from snn_jax.nn import AlfordLeNet5, LeNet5, SparseDense, SparseMLP
from snn_jax.nn._taps import layer_gradient_factors
from snn_jax.sparse import block_metadata
from snn_jax.sparse_training import (SparseOptimizer, SparseTrainingConfig,
                                     _blocks, _rigl, _set)
from tests.sparse_training import host_oracle as _rewire


pytestmark = pytest.mark.standard_promotion


def _layer_arrays(rng, n_rb, n_cb, nnzb, bs):
  flat = np.sort(rng.choice(n_rb * n_cb, nnzb, replace=False))
  rows, cols = np.divmod(flat, n_cb)
  values = rng.normal(size=(nnzb, bs, bs)).astype(np.float32)
  return rows.astype(np.int32), cols.astype(np.int32), values


# --- the device rules against the host oracle --------------------------------

@pytest.mark.parametrize("bs", [1, 4])
@pytest.mark.parametrize("zeta", [0.1, 0.3, 0.5])
def test_drop_rules_equal_host(bs, zeta):
  rng = np.random.default_rng(int(zeta * 10) + bs)
  _, _, values = _layer_arrays(rng, 20, 30, 150, bs)
  values[::7] = values[3]  # ties, broken by storage position
  np.testing.assert_array_equal(
      np.asarray(_set.set_drop(jnp.asarray(values), zeta)),
      _rewire.set_drop(values, zeta))
  k = int(round(zeta * 150))
  np.testing.assert_array_equal(
      np.asarray(_blocks.magnitude_drop(jnp.asarray(values), k)),
      _rewire.magnitude_drop(values, k))


@pytest.mark.parametrize("bs,chunk_floats", [(1, 1 << 24), (1, 40), (2, 100),
                                             (4, 1)])
@pytest.mark.parametrize("k", [5, 40, 150])
@pytest.mark.parametrize("dead_outputs", [0, 10])
def test_gradient_growth_equals_host(bs, chunk_floats, k, dead_outputs):
  """Small chunks and k make the candidate buffer fill and compact many
  times; dead inputs and outputs make whole rows and columns of tied zero
  scores, decided by row-major position."""
  rng = np.random.default_rng(bs)
  n_rb, n_cb = 24, 18
  rows, cols, _ = _layer_arrays(rng, n_rb, n_cb, 90, bs)
  x = rng.normal(size=(16, n_rb * bs)).astype(np.float32)
  dy = rng.normal(size=(16, n_cb * bs)).astype(np.float32)
  x[:, :3 * bs] = 0.0  # dead inputs: tied zero scores, lower position first
  dy[:, rng.permutation(n_cb * bs)[:dead_outputs]] = 0.0
  meta = block_metadata(rows, cols, n_rb, n_cb)
  gr, gc = jax.jit(_rigl.grow_by_gradient, static_argnums=(5, 6),
                   static_argnames="chunk_floats")(
      x, dy, meta["row_idx"], meta["col_idx"], meta["row_ptr"], bs, k,
      chunk_floats=chunk_floats)
  want_r, want_c = _rewire.grow_by_gradient(rows, cols, x, dy, k, bs)
  got = sorted(zip(np.asarray(gr).tolist(), np.asarray(gc).tolist()))
  assert got == sorted(zip(want_r.tolist(), want_c.tolist()))


def test_random_growth_draws_distinct_empty_positions_uniformly():
  rng = np.random.default_rng(0)
  n_rb, n_cb, nnzb, k = 6, 5, 12, 8
  rows, cols, _ = _layer_arrays(rng, n_rb, n_cb, nnzb, 1)
  meta = {k: jnp.asarray(v) for k, v in
          block_metadata(rows, cols, n_rb, n_cb).items()}
  stored = set(zip(rows.tolist(), cols.tolist()))
  grow = jax.jit(jax.vmap(
      lambda key: _set.grow_random(
          jax.random.bits(key, (2, 200), jnp.uint32), meta["row_idx"],
          meta["col_idx"], (n_rb, n_cb), k, jnp.int32(k))))
  gr, gc, found = grow(jax.random.split(jax.random.key(1), 3000))
  assert (np.asarray(found) == k).all()
  counts = np.zeros((n_rb, n_cb))
  for r, c in zip(np.asarray(gr), np.asarray(gc)):
    picked = set(zip(r.tolist(), c.tolist()))
    assert len(picked) == k and not picked & stored
    for p in picked:
      counts[p] += 1
  empty = [(r, c) for r in range(n_rb) for c in range(n_cb)
           if (r, c) not in stored]
  expected = 3000 * k / len(empty)  # 1333 draws each
  freq = np.array([counts[p] for p in empty])
  assert np.abs(freq - expected).max() < 5 * np.sqrt(expected)


def test_merge_and_metadata_equal_host():
  rng = np.random.default_rng(3)
  n_rb, n_cb = 9, 11
  rows, cols, values = _layer_arrays(rng, n_rb, n_cb, 40, 1)
  drop = _rewire.magnitude_drop(values, 10)
  gr, gc = _rewire.grow_random(rows, cols, (n_rb, n_cb), 10, rng)
  want = _rewire.merge(rows, cols, drop, gr, gc, n_cb)
  perm = rng.permutation(10)  # the device pairs drops and growths in any order
  r, c, src = _blocks.merge(jnp.asarray(rows), jnp.asarray(cols),
                            jnp.asarray(drop), jnp.asarray(gr[perm], jnp.int32),
                            jnp.asarray(gc[perm], jnp.int32))
  np.testing.assert_array_equal(np.asarray(r), want.rows)
  np.testing.assert_array_equal(np.asarray(c), want.cols)
  np.testing.assert_array_equal(np.asarray(src), want.source)
  meta = _blocks.csr_metadata(r, c, (n_rb, n_cb))
  for name, expected in block_metadata(want.rows, want.cols, n_rb,
                                       n_cb).items():
    np.testing.assert_array_equal(np.asarray(meta[name]), expected, name)


# --- whole updates against the oracle -----------------------------------------

def _mlp(bs=1, seed=0):
  topos = topology.make_stack("erdos_renyi", [48, 32, 16], density=0.25,
                              block_size=bs, seed=seed)
  return SparseMLP(topos, rngs=nnx.Rngs(params=seed))


def _ce(model, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(
      model(x).astype(jnp.float32), y).mean()


def _batches(n, in_dim, seed=0, batch=32):
  rng = np.random.default_rng(seed)
  return [(jnp.asarray(rng.normal(size=(batch, in_dim)), jnp.float32),
           jnp.asarray(rng.integers(0, 10, batch), jnp.int32))
          for _ in range(n)]


def _train(model, optimizer, batches, loss=_ce, rigl=False, after_step=None):
  """Trains on ``batches`` with one jitted step; returns the losses and how
  many times the step was traced."""
  traces = []

  @nnx.jit
  def step(model, optimizer, x, y):
    traces.append(1)
    value, grads = nnx.value_and_grad(loss)(model, x, y)
    extra = {"grow_loss": lambda m: loss(m, x, y)} if rigl else {}
    optimizer.update(model, grads, **extra)
    return value

  losses = []
  for x, y in batches:
    losses.append(float(step(model, optimizer, x, y)))
    if after_step is not None:
      after_step()
  return losses, len(traces)


def _momentum(optimizer, layer):
  for path, v in nnx.to_flat_state(nnx.state(optimizer.opt_state)):
    if tuple(path[-3:]) == ("layers", layer, "values"):
      return np.asarray(v.get_value())
  raise AssertionError("no momentum found")


def _oracle_update(dynamic, model, x, y, momenta):
  """What the host oracle makes of one update of every layer of ``model``
  (the state after the step before it) at the schedule's first update:
  per layer (rows, cols, values, momentum, alive)."""
  steps, amount = dynamic.schedule()
  rules = dynamic.rules
  factors = layer_gradient_factors(lambda: _ce(model, x, y), model.layers)
  out = []
  for l, layer in enumerate(model.layers):
    t = layer.topology()
    values = np.asarray(layer.values.get_value())
    positions = t.n_row_blocks * t.n_col_blocks
    k = rules.blocks_per_update(float(amount[0]), t.nnzb, positions)
    drop = _rewire.magnitude_drop(values, k)
    if rules.keeps_alive_mask:
      out.append((t.rows, t.cols, np.where(drop[:, None, None], 0, values),
                  np.where(drop[:, None, None], 0, momenta[l]), ~drop))
      continue
    x_l, dy_l = (np.asarray(a) for a in factors[l])
    gr, gc = _rewire.grow_by_gradient(t.rows, t.cols, x_l, dy_l, k,
                                      t.block_size)
    rew = _rewire.merge(t.rows, t.cols, drop, gr, gc, t.n_col_blocks)
    out.append((rew.rows, rew.cols, _rewire.carry_over(values, rew.source),
                _rewire.carry_over(momenta[l], rew.source), None))
  return out


@pytest.mark.parametrize("method,bs", [("rigl", 1), ("rigl", 2), ("prune", 1),
                                       ("prune", 4)])
@pytest.mark.slow
def test_same_choices_as_the_oracle(method, bs):
  """Three optimizer steps, the third followed by an update: the topology,
  the values and the moments are the oracle's on the state the third step
  left (a twin trained without rewiring)."""
  if method == "rigl":
    dynamic = sparse_training.rigl(total_steps=4, update_every=3, zeta=0.4)
  else:
    # Updates at 3 and 4: at step 3 s = 0.9 (1 - (1/4)^3) = 0.89 of all
    # positions, so the layers (density 0.25) lose over half their blocks.
    dynamic = sparse_training.prune(density=0.1, begin_step=0, end_step=4,
                                    update_every=3)
  tx = optax.sgd(0.05, momentum=0.9)
  batches = _batches(3, 48)
  twin, device_model = _mlp(bs), _mlp(bs)
  twin_opt = nnx.Optimizer(twin, tx, wrt=nnx.Param)
  device_opt = SparseOptimizer(device_model, dynamic.wrap(tx))
  _train(twin, twin_opt, batches)
  _train(device_model, device_opt, batches, rigl=method == "rigl")
  x, y = batches[-1]
  want = _oracle_update(dynamic, twin, x, y,
                        [_momentum(twin_opt, l) for l in range(2)])
  assert int(device_opt.rewirings.get_value()) == 1
  for l, (d, (rows, cols, values, mom, alive)) in enumerate(
      zip(device_model.layers, want)):
    t = d.topology()
    np.testing.assert_array_equal(t.rows, rows)
    np.testing.assert_array_equal(t.cols, cols)
    np.testing.assert_allclose(np.asarray(d.values.get_value()), values,
                               atol=1e-6)
    np.testing.assert_allclose(_momentum(device_opt, l), mom, atol=1e-6)
    if alive is not None:  # pruned blocks stay stored at zero, marked dead
      np.testing.assert_array_equal(
          np.asarray(device_opt.alive[l].get_value()), alive)
      assert int(device_opt.moved.get_value()[l]) == (~alive).sum()
      kept = device_opt.kept_topologies(device_model)[l]
      assert (~alive).any()
      assert kept.nnzb == alive.sum() and kept.name == "pruned"
  if method == "prune":
    assert device_opt.pruned_weights() == sum(
        (~w[4]).sum() for w in want) * bs * bs


@pytest.mark.parametrize("bs", [1, 4])
@pytest.mark.slow
def test_set_drops_as_the_oracle_and_grows_into_empty_positions(bs):
  dynamic = sparse_training.set(total_steps=10, update_every=2, zeta=0.3)
  model = _mlp(bs, seed=1)
  # A zero learning rate leaves the values as initialised, so the drop can
  # be checked against SET's host rule on them; Adam still fills its moments.
  optimizer = SparseOptimizer(model, dynamic.wrap(optax.adam(0.0)))
  initial = [np.asarray(layer.values.get_value()) for layer in model.layers]
  before = []
  _, traces = _train(model, optimizer, _batches(2, 48, seed=1),
                     after_step=lambda: before.append(
                         [layer.topology() for layer in model.layers]))
  before = before[0]
  for l, layer in enumerate(model.layers):
    old, new = before[l], layer.topology()
    assert new.nnzb == old.nnzb
    old_set = set(zip(old.rows.tolist(), old.cols.tolist()))
    new_set = set(zip(new.rows.tolist(), new.cols.tolist()))
    moved = int(optimizer.moved.get_value()[l])
    assert moved > 0 and len(new_set - old_set) == moved
    dropped = _rewire.set_drop(initial[l], 0.3)
    assert old_set - new_set == set(zip(old.rows[dropped].tolist(),
                                        old.cols[dropped].tolist()))
    step2 = np.asarray(layer.values.get_value())
    grown = np.array([(r, c) not in old_set for r, c in
                      zip(new.rows.tolist(), new.cols.tolist())])
    assert np.all(step2[grown] != 0)  # regrown from N(0, 0.1^2)
    assert abs(np.std(step2[grown]) - 0.1) < 0.05
    for name in ("mu", "nu"):
      for path, v in nnx.to_flat_state(nnx.state(optimizer.opt_state)):
        if name in path and tuple(path[-3:]) == ("layers", l, "values"):
          assert not np.asarray(v.get_value())[grown].any()
  np.testing.assert_array_equal(
      np.asarray(block_metadata(new.rows, new.cols, new.n_row_blocks,
                                new.n_col_blocks)["col_order"]),
      np.asarray(model.layers[-1].col_order.get_value()))


# --- any model ------------------------------------------------------------

class _UserModel(nnx.Module):
  """Written here, as a notebook would: a dense layer, a sparse layer used
  twice (weight sharing) and a sparse head."""

  def __init__(self, rngs):
    self.embed = nnx.Linear(20, 32, rngs=rngs)
    self.shared = SparseDense(topology.make("erdos_renyi", 32, 32, density=0.2,
                                            seed=4), rngs=rngs)
    self.head = SparseDense(topology.make("erdos_renyi", 32, 10, density=0.5,
                                          seed=5), rngs=rngs)

  def __call__(self, x):
    h = jax.nn.relu(self.embed(x))
    h = jax.nn.relu(self.shared(h))
    h = jax.nn.relu(self.shared(h))
    return self.head(h)


def _images(n, seed):
  rng = np.random.default_rng(seed)
  return [(jnp.asarray(rng.normal(size=(8, 28, 28, 1)), jnp.float32),
           jnp.asarray(rng.integers(0, 10, 8), jnp.int32)) for _ in range(n)]


@pytest.mark.parametrize("name,method", [
    ("user", "set"), ("user", "rigl"), ("lenet5", "set"), ("lenet5", "rigl"),
    ("alford_lenet5", "rigl"), ("alford_lenet5", "prune")])
@pytest.mark.slow
def test_any_model(name, method):
  if name == "user":
    model, batches = _UserModel(nnx.Rngs(0)), _batches(6, 20, seed=3,
                                                       batch=16)
  elif name == "lenet5":
    conv = [topology.make("erdos_renyi", 1, 6, density=1.0),
            topology.make("erdos_renyi", 6, 16, density=0.5, seed=1)]
    fc = topology.make_stack("erdos_renyi", [400, 60, 10], density=0.2,
                             seed=2)
    model, batches = LeNet5(conv + fc, rngs=nnx.Rngs(0)), _images(6, 4)
  else:
    model = AlfordLeNet5([topology.make("erdos_renyi", a, b, density=0.5,
                                        seed=a)
                          for a, b in AlfordLeNet5.layer_shapes([16, 32],
                                                                10)],
                         rngs=nnx.Rngs(0))
    batches = _images(6, 5)
  if method == "prune":
    dynamic = sparse_training.prune(density=0.2, begin_step=2, end_step=6,
                                    update_every=2)
  else:
    dynamic = getattr(sparse_training, method)(total_steps=8, update_every=3,
                                               zeta=0.3)
  optimizer = SparseOptimizer(model, dynamic.wrap(optax.sgd(0.05,
                                                            momentum=0.9)))
  layers = optimizer._layers(model)
  before = [l.topology() for l in layers]
  losses, traces = _train(model, optimizer, batches, rigl=method == "rigl")
  assert traces == 1 and np.isfinite(losses).all()
  assert int(optimizer.rewirings.get_value()) == len(dynamic.schedule()[0]) > 1
  changed = 0
  for old, layer in zip(before, layers):
    new = layer.topology()
    assert new.nnzb == old.nnzb
    meta = block_metadata(new.rows, new.cols, new.n_row_blocks,
                          new.n_col_blocks)
    for field, want in meta.items():
      np.testing.assert_array_equal(np.asarray(getattr(layer,
                                                       field).get_value()),
                                    want)
    changed += new != old
  if method == "prune":
    assert sum(int((~a.get_value()).sum()) for a in optimizer.alive) > 0
  else:
    assert changed >= len(layers) - 1  # a dense layer has nowhere to grow


# --- errors ------------------------------------------------------------------

def test_errors_say_what_to_do():
  model = _mlp()
  with pytest.raises(TypeError, match="wrap the optax"):
    SparseOptimizer(model, optax.sgd(0.1))
  with pytest.raises(TypeError, match="GradientTransformation"):
    sparse_training.set(total_steps=10).wrap("sgd")
  with pytest.raises(ValueError, match="total_steps"):
    sparse_training.set(total_steps=0)
  with pytest.raises(ValueError, match="update_every"):
    sparse_training.rigl(total_steps=10, update_every=0)
  with pytest.raises(ValueError, match="zeta"):
    sparse_training.set(total_steps=10, zeta=1.5)
  with pytest.raises(ValueError, match="prune_begin_step"):
    sparse_training.prune(density=0.1, begin_step=5, end_step=5)
  with pytest.raises(ValueError, match="no SparseDense"):
    SparseOptimizer(nnx.Linear(3, 4, rngs=nnx.Rngs(0)),
                    sparse_training.set(total_steps=5).wrap(optax.sgd(0.1)))
  optimizer = SparseOptimizer(
      model, sparse_training.rigl(total_steps=5).wrap(optax.sgd(0.1)))
  x, y = _batches(1, 48)[0]
  grads = nnx.grad(_ce)(model, x, y)
  with pytest.raises(ValueError, match="grow_loss"):
    optimizer.update(model, grads)
  with pytest.raises(ValueError, match="not used by the growth loss"):
    bad = SparseOptimizer(model, sparse_training.rigl(
        total_steps=4, update_every=1).wrap(optax.sgd(0.1)))
    bad.update(model, grads, grow_loss=lambda m: m.layers[0](x).sum())


# --- one update of a whole model -----------------------------------------------

def _one_update(model, method, zeta, *, seed=0, tx=None, batch=None):
  """One step at learning rate 0 (values as they were) followed by one
  update of every layer at ``zeta``; returns the optimizer."""
  dynamic = getattr(sparse_training, method)(
      total_steps=2, update_every=1, zeta=zeta, zeta_schedule="constant",
      end_fraction=1.0, seed=seed)
  optimizer = SparseOptimizer(model, dynamic.wrap(tx or optax.sgd(0.0)))
  batch = batch or _batches(1, model.layers[0].n_in, seed=seed)[0]
  _train(model, optimizer, [batch], rigl=method == "rigl")
  assert int(optimizer.rewirings.get_value()) == 1
  return optimizer


def _blocks_of(topo):
  return set(zip(topo.rows.tolist(), topo.cols.tolist()))


@pytest.mark.parametrize("method,bs", [("set", 1), ("set", 4), ("rigl", 1),
                                       ("rigl", 4)])
@pytest.mark.slow
def test_an_update_keeps_nnz_and_carries_values_and_moments(method, bs):
  model = _mlp(bs, seed=3)
  before = [layer.topology() for layer in model.layers]
  values = [np.asarray(layer.values.get_value()) for layer in model.layers]
  # Adam at lr 0: the values stay, the moments fill.
  twin = _mlp(bs, seed=3)
  twin_opt = nnx.Optimizer(twin, optax.adam(0.0), wrt=nnx.Param)
  _train(twin, twin_opt, _batches(1, 48, seed=0))
  optimizer = _one_update(model, method, 0.3, tx=optax.adam(0.0))
  for l, layer in enumerate(model.layers):
    old, new = before[l], layer.topology()
    assert new.nnzb == old.nnzb
    grown, lost = _blocks_of(new) - _blocks_of(old), _blocks_of(old) - _blocks_of(new)
    assert len(grown) == len(lost) == int(optimizer.moved.get_value()[l]) > 0
    old_index = {b: i for i, b in enumerate(zip(old.rows.tolist(),
                                                old.cols.tolist()))}
    now = np.asarray(layer.values.get_value())
    mom = _momentum(optimizer, l)
    twin_mom = _momentum(twin_opt, l)
    for i, b in enumerate(zip(new.rows.tolist(), new.cols.tolist())):
      if b in old_index:
        np.testing.assert_array_equal(now[i], values[l][old_index[b]])
        np.testing.assert_allclose(mom[i], twin_mom[old_index[b]], atol=1e-7)
      else:
        assert not mom[i].any()  # grown: fresh state
        if method == "rigl":
          assert not now[i].any()  # RigL grows at zero
  x = _batches(1, 48)[0][0]
  assert np.isfinite(np.asarray(model(x))).all()  # valid for the kernels


@pytest.mark.slow
def test_set_is_deterministic_for_a_seed():
  a, b, c = _mlp(seed=1), _mlp(seed=1), _mlp(seed=1)
  _one_update(a, "set", 0.3, seed=5)
  _one_update(b, "set", 0.3, seed=5)
  _one_update(c, "set", 0.3, seed=6)
  assert a.topologies() == b.topologies() != c.topologies()


@pytest.mark.slow
def test_nnstd_after_an_update_grows_with_zeta():
  start = _mlp(seed=2).topologies()
  dists = []
  for zeta in (0.05, 0.2, 0.5):
    model = _mlp(seed=2)
    _one_update(model, "set", zeta)
    dists.append(analysis.nnstd(start, model.topologies()))
  assert 0 < dists[0] < dists[1] < dists[2]


@pytest.mark.slow
def test_rigl_grows_where_the_autodiff_gradient_is_largest():
  """The scores here are the dense weight gradient from ``jax.grad`` of a
  dense copy of the layer, not the engine's taps."""
  model = _mlp(seed=0)
  x, y = _batches(1, 48, seed=7)[0]
  dense = jnp.asarray(model.layers[0].weight().to_dense())
  bias = model.layers[0].bias.get_value()

  def loss_of_dense_w(w):
    h = jax.nn.relu(x @ w + bias[None, :])
    return optax.softmax_cross_entropy_with_integer_labels(
        model.layers[1](h), y).mean()
  scores = np.abs(np.asarray(jax.grad(loss_of_dense_w)(dense)))
  before = model.layers[0].topology()
  _one_update(model, "rigl", 0.3, batch=(x, y))
  grown = _blocks_of(model.layers[0].topology()) - _blocks_of(before)
  r, c = _rewire.grow_by_score(before.rows, before.cols, scores, len(grown))
  assert grown and grown == set(zip(r.tolist(), c.tolist()))


# --- schedules -------------------------------------------------------------------

def test_schedules():
  epochs = sparse_training.set(total_steps=100, update_every=0,
                               steps_per_epoch=10)
  steps, zeta = epochs.schedule()
  assert steps.tolist() == list(range(10, 100, 10))  # not after the last
  assert np.all(zeta == 0.3)
  assert epochs.after_epoch
  rigl = sparse_training.rigl(total_steps=100, update_every=10, zeta=0.4)
  steps, zeta = rigl.schedule()
  assert steps.tolist() == [10, 20, 30, 40, 50, 60, 70]  # to 75 %
  rules = rigl.rules
  assert rules.amount_at(rigl.config, 0, 100) == pytest.approx(0.4)
  assert rules.amount_at(rigl.config, 37.5, 100) == pytest.approx(0.2)
  prune = sparse_training.prune(density=0.1, begin_step=3, end_step=10,
                                update_every=3)
  steps, sparsity = prune.schedule()
  assert steps.tolist() == [3, 6, 9, 10]  # the end step always
  assert sparsity[0] == 0 and sparsity[-1] == pytest.approx(0.9)
  assert not SparseTrainingConfig(method="set", zeta=0.0).dynamic
  assert not SparseTrainingConfig().dynamic
  assert sparse_training.registered() == ("prune", "rigl", "set")
  assert set(sparse_training.METHODS) == {"static", *sparse_training.registered()}


@pytest.mark.parametrize("method", ["set", "rigl"])
@pytest.mark.slow
def test_update_every_0_rewires_only_through_rewire(method):
  dynamic = getattr(sparse_training, method)(
      total_steps=6, update_every=0, steps_per_epoch=2, zeta=0.3)
  model = _mlp(seed=4)
  optimizer = SparseOptimizer(model, dynamic.wrap(optax.sgd(0.05)))
  batches = _batches(6, 48, seed=4)
  rigl = method == "rigl"

  @nnx.jit
  def rewire(model, optimizer, x, y):
    if rigl:
      optimizer.rewire(model, grow_loss=lambda m: _ce(m, x, y))
    else:
      optimizer.rewire(model)

  start = model.topologies()
  counts = []
  for i, (x, y) in enumerate(batches):
    _train(model, optimizer, [(x, y)])  # update() never rewires here
    counts.append(int(optimizer.rewirings.get_value()))
    rewire(model, optimizer, x, y)  # due only after steps 2 and 4
    counts.append(int(optimizer.rewirings.get_value()))
  assert counts == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2]
  assert model.topologies() != start
  with pytest.raises(ValueError, match="rewire"):
    x, y = batches[0]
    optimizer.update(model, nnx.grad(_ce)(model, x, y),
                     grow_loss=lambda m: _ce(m, x, y))
  in_step = SparseOptimizer(_mlp(), sparse_training.set(
      total_steps=4, update_every=2).wrap(optax.sgd(0.1)))
  with pytest.raises(ValueError, match="update_every=0"):
    in_step.rewire(model)
  with pytest.raises(ValueError, match="steps_per_epoch"):
    sparse_training.set(total_steps=10, update_every=0)


def test_the_schedule_is_not_state():
  """A checkpoint holds the run's state only: an optimizer for a longer run
  (more epochs, another schedule) has state of the same structure."""
  shapes = []
  for total in (6, 60):
    optimizer = SparseOptimizer(_mlp(), sparse_training.set(
        total_steps=total, update_every=0, steps_per_epoch=2).wrap(
            optax.sgd(0.1, momentum=0.9)))
    shapes.append(jax.tree.map(lambda a: a.shape,
                               nnx.to_pure_dict(nnx.state(optimizer))))
  assert shapes[0] == shapes[1]
