"""Dynamic sparse training (SET, RigL) and the pruning pipeline: invariants."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from snn_jax import analysis, topology
from snn_jax.nn import SparseMLP, load_dense_weights, save_dense_weights
from snn_jax.sparse_training import (Rewirer, SparseTrainingConfig,
                                     gradient_block_scores,
                                     grow_by_score, grow_random, magnitude_drop,
                                     merge, prune_stack,
                                     remap_optimizer_state, rewire_layers,
                                     set_drop)
from snn_jax.studies import PruneConfig, prune_and_retrain
from snn_jax.training import TrainConfig, restore_model, train_and_evaluate
from snn_jax.nn import ModelConfig
from snn_jax.topology import TopologyConfig
from snn_jax.training import OptimizerConfig, RunConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _standard_promotion():
  # optax mixes int32 step counts with Python floats (see test_train_smoke).
  with jax.numpy_dtype_promotion("standard"):
    yield


def _model(widths, bs, density, seed):
  topos = topology.make_stack("erdos_renyi", widths, density=density,
                              block_size=bs, seed=seed)
  return SparseMLP(topos, rngs=nnx.Rngs(params=seed))


def _block_set(layer):
  t = layer.topology()
  return set(zip(t.rows.tolist(), t.cols.tolist()))


# -- the drop and grow rules ---------------------------------------------------

def test_set_drop_removes_exactly_the_smallest_positive_and_largest_negative(rng):
  w = rng.normal(size=1000).astype(np.float32)
  drop = set_drop(w.reshape(-1, 1, 1), 0.3)
  pos, neg = w[w >= 0], w[w < 0]
  k_pos, k_neg = round(0.3 * pos.size), round(0.3 * neg.size)
  expected = set(np.sort(pos)[:k_pos]) | set(np.sort(neg)[::-1][:k_neg])
  assert set(w[drop]) == expected
  assert drop.sum() == k_pos + k_neg
  # Every kept positive is larger than every dropped positive, and so on.
  assert w[~drop & (w >= 0)].min() > w[drop & (w >= 0)].max()
  assert w[~drop & (w < 0)].max() < w[drop & (w < 0)].min()


def test_block_drop_removes_the_smallest_norm_blocks(rng):
  v = rng.normal(size=(50, 4, 4)).astype(np.float32)
  v *= rng.uniform(0.1, 3, size=(50, 1, 1)).astype(np.float32)
  drop = set_drop(v, 0.2)  # block size > 1: by Frobenius norm
  norms = np.sqrt((v.astype(np.float64) ** 2).sum(axis=(1, 2)))
  assert drop.sum() == 10
  assert norms[drop].max() < norms[~drop].min()
  np.testing.assert_array_equal(drop, magnitude_drop(v, 10))


@pytest.mark.parametrize("grid", [(20, 30), (5000, 5000)])  # mask / rejection
def test_grow_random_picks_distinct_empty_positions(rng, grid):
  n = grid[0] * grid[1]
  occ = rng.choice(n, size=n // 10, replace=False)
  rows, cols = np.divmod(np.sort(occ), grid[1])
  gr, gc = grow_random(rows, cols, grid, 50, rng)
  new = set(zip(gr.tolist(), gc.tolist()))
  assert len(new) == 50
  assert not new & set(zip(rows.tolist(), cols.tolist()))
  assert (gr < grid[0]).all() and (gc < grid[1]).all()


def test_grow_by_score_takes_the_best_empty_positions(rng):
  scores = rng.uniform(size=(8, 9))
  rows, cols = np.nonzero(scores > 0.7)
  gr, gc = grow_by_score(rows, cols, scores, 5)
  empty = np.where(scores > 0.7, -1, scores)
  best = np.argsort(-empty.ravel())[:5]
  assert set(zip(gr.tolist(), gc.tolist())) == set(
      zip(*[a.tolist() for a in np.divmod(best, 9)]))


def test_grow_errors_when_full(rng):
  rows, cols = np.divmod(np.arange(12), 4)
  with pytest.raises(ValueError, match="only 0 positions are empty"):
    grow_random(rows, cols, (3, 4), 1, rng)


def test_merge_refuses_to_change_nnzb():
  with pytest.raises(ValueError, match="nnzb would change"):
    merge(np.array([0, 1]), np.array([0, 0]), np.array([True, False]),
          np.zeros(0, np.int64), np.zeros(0, np.int64), 4)


@pytest.mark.parametrize("bad", [dict(method="sgd"), dict(zeta=1.0),
                                 dict(zeta=-0.1), dict(update_every=-1),
                                 dict(regrow_init="ones"),
                                 dict(end_fraction=0.0)])
def test_config_validation(bad):
  with pytest.raises(ValueError):
    SparseTrainingConfig(**{"method": "set", **bad})


# -- whole-model updates ---------------------------------------------------------

@pytest.mark.parametrize("method,bs", [("set", 1), ("set", 4), ("rigl", 1),
                                       ("rigl", 4)])
def test_update_keeps_nnz_moves_blocks_to_empty_places(rng, method, bs):
  model = _model([32, 64, 16], bs, 0.25, seed=3)
  before = [_block_set(l) for l in model.layers]
  values_before = [np.asarray(l.values.get_value()) for l in model.layers]
  nnz = [l.nnz for l in model.layers]
  x = jnp.asarray(rng.normal(size=(16, 32)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 16, size=16))
  stats = rewire_layers(model, None, SparseTrainingConfig(method=method, zeta=0.3),
                        step=7, x=x, y=y)
  for l, layer in enumerate(model.layers):
    after = _block_set(layer)
    assert layer.nnz == nnz[l]
    grown, lost = after - before[l], before[l] - after
    assert len(grown) == len(lost) == stats[l]["dropped"] > 0
    # Kept blocks keep their values, at their new storage positions.
    old_index = {b: i for i, b in enumerate(sorted(before[l]))}
    vals = np.asarray(layer.values.get_value())
    for i, b in enumerate(sorted(after)):
      if b in old_index:
        np.testing.assert_array_equal(vals[i], values_before[l][old_index[b]])
      elif method == "rigl":
        assert not vals[i].any()  # RigL grows at zero
  out = model(x)  # the rewired structure is valid for the kernels
  assert np.isfinite(np.asarray(out)).all()


def test_update_is_deterministic_for_a_seed(rng):
  a, b = _model([32, 48, 10], 1, 0.2, 1), _model([32, 48, 10], 1, 0.2, 1)
  cfg = SparseTrainingConfig(method="set", zeta=0.3, seed=5)
  rewire_layers(a, None, cfg, step=3)
  rewire_layers(b, None, cfg, step=3)
  assert a.topologies() == b.topologies()
  c = _model([32, 48, 10], 1, 0.2, 1)
  rewire_layers(c, None, cfg.replace(seed=6), step=3)
  assert c.topologies() != a.topologies()


def test_nnstd_after_an_update_grows_with_zeta():
  start = _model([64, 64, 64, 10], 1, 0.1, 2).topologies()
  dists = []
  for zeta in (0.05, 0.2, 0.5):
    m = _model([64, 64, 64, 10], 1, 0.1, 2)
    rewire_layers(m, None, SparseTrainingConfig(method="set", zeta=zeta), step=1)
    dists.append(analysis.nnstd(start, m.topologies()))
  assert 0 < dists[0] < dists[1] < dists[2]


@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_optimizer_state_follows_its_weights(rng, opt):
  model = _model([16, 32, 8], 2, 0.3, 4)
  tx = optax.sgd(0.1, momentum=0.9) if opt == "momentum" else optax.adam(1e-2)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  x = jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 8, size=8))

  def loss(m):
    return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

  optimizer.update(model, nnx.grad(loss)(model))  # non-zero state everywhere
  before = _block_set(model.layers[0])
  pure = nnx.to_pure_dict(nnx.state(optimizer))
  leaves = [v for p, v in jax.tree_util.tree_flatten_with_path(pure)[0]
            if "values" in jax.tree_util.keystr(p) and "0" in jax.tree_util.keystr(p)
            and getattr(v, "ndim", 0) == 3]
  old = [np.asarray(v) for v in leaves if v.shape[0] == model.layers[0].nnz // 4]
  rewire_layers(model, optimizer, SparseTrainingConfig(method="set", zeta=0.4),
                step=2)
  after = sorted(_block_set(model.layers[0]))
  old_index = {b: i for i, b in enumerate(sorted(before))}
  pure = nnx.to_pure_dict(nnx.state(optimizer))
  new = [np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(pure)[0]
         if "values" in jax.tree_util.keystr(p) and getattr(v, "ndim", 0) == 3
         and v.shape[0] == model.layers[0].nnz // 4][:len(old)]
  assert old and len(new) == len(old) == (1 if opt == "momentum" else 2)
  for o, n in zip(old, new):
    for i, b in enumerate(after):
      if b in old_index:
        np.testing.assert_array_equal(n[i], o[old_index[b]])
      else:
        assert not n[i].any()  # grown: fresh state


def test_remap_counts_the_moved_state_arrays():
  model = _model([16, 16, 8], 1, 0.5, 0)
  optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
  src = np.arange(model.layers[1].nnz)[::-1].copy()
  assert remap_optimizer_state(optimizer, 1, src) == 2  # mu and nu


def test_rewirer_schedule():
  r = Rewirer(SparseTrainingConfig(method="set"), total_steps=100)
  assert r.due(10, end_of_epoch=True, last_epoch=False)
  assert not r.due(10, end_of_epoch=False, last_epoch=False)
  assert not r.due(100, end_of_epoch=True, last_epoch=True)
  g = Rewirer(SparseTrainingConfig(method="rigl", update_every=10, zeta=0.4),
              total_steps=100)
  assert g.due(20, end_of_epoch=False, last_epoch=False)
  assert not g.due(80, end_of_epoch=False, last_epoch=False)  # past 75 %
  assert g.zeta_at(0) == pytest.approx(0.4)
  assert g.zeta_at(37.5) == pytest.approx(0.2)
  assert not Rewirer(SparseTrainingConfig(), total_steps=10).due(
      5, end_of_epoch=True, last_epoch=False)


def test_rigl_needs_a_batch():
  model = _model([16, 16, 8], 1, 0.5, 0)
  with pytest.raises(ValueError, match="batch"):
    rewire_layers(model, None, SparseTrainingConfig(method="rigl"), step=1)


# -- training ---------------------------------------------------------------------

SMALL = dict(hidden=(64, 64), density=0.2, epochs=3, batch_size=64,
             progress=False, lr=0.05)


@pytest.mark.parametrize("method,every", [("set", 0), ("rigl", 5)])
def test_dynamic_training_evolves_learns_and_resumes(tmp_path, method, every):
  cfg = TrainConfig.from_flat(dict(**SMALL, sparse_training=method, update_every=every,
                    snapshot_topologies=True))
  wd = str(tmp_path / "run")
  train_and_evaluate(cfg, wd, stop_after_epoch=2)
  s = train_and_evaluate(cfg, wd)  # resumed for the last epoch
  ref = train_and_evaluate(cfg, str(tmp_path / "ref"))
  assert s["final_test_acc"] == pytest.approx(ref["final_test_acc"], abs=1e-6)
  assert s["final_test_acc"] > 0.8
  snaps = analysis.load_snapshots(wd)
  assert list(snaps) == [0, 1, 2, 3]
  for e in (1, 2, 3):
    assert [t.nnz for t in snaps[e]] == [t.nnz for t in snaps[0]]
  assert analysis.nnstd(snaps[0], snaps[3]) > 0.05
  with open(os.path.join(wd, "metrics.jsonl")) as f:
    rewired = [json.loads(l)["rewired_blocks"] for l in f]
  assert all(r > 0 for r in (rewired[:-1] if method == "set" else rewired))
  # The evolved topology is what the checkpoint restores.
  assert restore_model(wd).topologies() == snaps[3]


def test_static_training_never_rewires(tmp_path):
  wd = str(tmp_path / "run")
  train_and_evaluate(TrainConfig.from_flat(dict(**SMALL, snapshot_topologies=True)), wd)
  snaps = analysis.load_snapshots(wd)
  assert snaps[0] == snaps[3]


def test_dense_weights_roundtrip(tmp_path, rng):
  a = _model([16, 24, 8], 4, 0.5, 0)
  path = str(tmp_path / "w.npz")
  save_dense_weights(a, path)
  x = jnp.asarray(rng.normal(size=(5, 16)), jnp.float32)
  c = SparseMLP(a.topologies(), rngs=nnx.Rngs(params=9))
  load_dense_weights(c, path)
  np.testing.assert_array_equal(np.asarray(c(x)), np.asarray(a(x)))
  with pytest.raises(ValueError, match="shape"):
    load_dense_weights(_model([24, 24, 8], 4, 0.5, 0), path)


# -- pruning ------------------------------------------------------------------------

def test_prune_stack_scopes(rng):
  w = {"layer_0_weight": rng.normal(size=(16, 32)),
       "layer_1_weight": 5 * rng.normal(size=(32, 8))}
  layer = prune_stack(w, 0.25, scope="layer")
  assert [t.nnz for t in layer] == [128, 64]
  glob = prune_stack(w, 0.25, scope="global")
  assert sum(t.nnz for t in glob) == 192
  assert glob[1].nnz > 64  # the large-magnitude layer keeps more


@pytest.mark.parametrize("bad", [dict(density=0.0), dict(density=1.0),
                                 dict(density=0.5, iterations=0),
                                 dict(density=0.5, scope="row")])
def test_prune_config_validation(bad):
  with pytest.raises(ValueError):
    PruneConfig(**bad)


@pytest.mark.parametrize("rewind,bs", [(False, 1), (True, 1), (False, 2)])
def test_prune_pipeline_nested_masks_exact_retrained_mask(tmp_path, rewind, bs):
  cfg = TrainConfig(model=ModelConfig(hidden=(48,), topology=TopologyConfig(block_size=bs, density=0.1)),
                    optimizer=OptimizerConfig(lr=0.05),
                    run=RunConfig(epochs=2, batch_size=64, progress=False, seed=2))
  prune = PruneConfig(density=0.2, iterations=2, rewind=rewind)
  wd = str(tmp_path / "prune")
  s = prune_and_retrain(cfg, prune, wd)
  stages = s["stages"]
  assert [r["stage"] for r in stages] == ["dense", "round_1", "round_2"]
  assert stages[0]["density"] == 1.0
  assert stages[2]["density"] == pytest.approx(0.2, abs=0.01)
  assert stages[2]["final_test_acc"] > 0.7  # the pruned topology trains
  r1 = topology.load_stack(os.path.join(wd, "round_1", "topology"))
  r2 = topology.load_stack(os.path.join(wd, "pruned_topology"))
  for a, b in zip(r1, r2):  # iterative masks are nested
    assert set(zip(b.rows.tolist(), b.cols.tolist())) <= set(
        zip(a.rows.tolist(), a.cols.tolist()))
  retrained = restore_model(os.path.join(wd, "round_2", "train"))
  assert retrained.topologies() == r2  # exactly the kept set
  for layer in retrained.layers:  # nothing off the mask
    w = layer.dense_weight()
    t = layer.topology()
    assert np.count_nonzero(w) <= t.nnz
  # Round 2 kept the largest-magnitude weights of round 1's trained network.
  w1 = restore_model(os.path.join(wd, "round_1", "train")).dense_weights()
  w0 = w1["layer_0_weight"].astype(np.float64)
  scores = np.sqrt((w0.reshape(64 // bs, bs, 48 // bs, bs) ** 2).sum(axis=(1, 3)))
  kept = r2[0].block_mask()
  assert r2[0].block_size == bs
  assert scores[kept].min() >= scores[~kept].max()
  if rewind:  # round 2 started from the dense initial weights on its mask
    start = np.load(os.path.join(wd, "init_weights.npz"))["layer_0_weight"]
    with open(os.path.join(wd, "round_2", "train", "config.json")) as f:
      assert json.load(f)["model"]["init_weights"].endswith("init_weights.npz")
    assert np.abs(start).sum() > 0
  # Restarting the finished pipeline retrains nothing.
  again = prune_and_retrain(cfg, prune, wd)
  assert [r["final_test_acc"] for r in again["stages"]] == [
      r["final_test_acc"] for r in stages]
  assert s["pruned_topology"] == os.path.join(wd, "pruned_topology")
  assert s["runs_finished"] == 3 and s["failed"] == []
  assert os.path.exists(os.path.join(wd, "stages.csv"))
  # A report-only pass reports the finished stages; on a fresh workdir it
  # trains and writes nothing but its report.
  from snn_jax.studies import _runs
  with _runs.reporting_only():
    assert prune_and_retrain(cfg, prune, wd)["stages"] == again["stages"]
    fresh = prune_and_retrain(cfg, prune, str(tmp_path / "fresh"))
  assert [(r["stage"], r["error"]) for r in fresh["stages"]] == [
      ("dense", _runs.NOT_FINISHED)]
  assert fresh["pruned_topology"] is None and fresh["failed"] == []
  assert not os.path.exists(tmp_path / "fresh" / "init_weights.npz")


def test_pruned_topology_usable_by_train(tmp_path):
  w = {"layer_0_weight": np.random.default_rng(0).normal(size=(64, 32)),
       "layer_1_weight": np.random.default_rng(1).normal(size=(32, 10))}
  tdir = str(tmp_path / "topo")
  topology.save_stack(prune_stack(w, 0.3), tdir)
  cfg = TrainConfig(model=ModelConfig(hidden=(32,), topology=TopologyConfig(directory=tdir)),
                    run=RunConfig(epochs=1, batch_size=64, progress=False))
  s = train_and_evaluate(cfg, str(tmp_path / "run"))
  assert s["nnz_params"] == round(0.3 * 64 * 32) + round(0.3 * 32 * 10)
  bad = cfg.override({"model.hidden": (48,)})
  with pytest.raises(ValueError, match="holds layers of shapes"):
    train_and_evaluate(bad, str(tmp_path / "run2"))
  with pytest.raises(FileNotFoundError):
    TrainConfig(model=ModelConfig(topology=TopologyConfig(directory=str(tmp_path / "missing"))))


# -- binaries -----------------------------------------------------------------------

def _run(script, *args, cwd):
  return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script),
                         *args], capture_output=True, text=True, cwd=cwd,
                        timeout=600)


def test_train_binary_set_flags(tmp_path):
  r = _run("train.py", f"--workdir={tmp_path}/run", "--hidden=32",
           "--epochs=2", "--sparse_training=set", "--zeta=0.2",
           "--update_every=10", "--noprogress", cwd=tmp_path)
  assert r.returncode == 0, r.stderr[-2000:]
  with open(tmp_path / "run" / "config.json") as f:
    cfg = json.load(f)
  assert (cfg["sparse"]["method"], cfg["sparse"]["zeta"],
          cfg["sparse"]["update_every"]) == ("set", 0.2, 10)
  bad = _run("train.py", f"--workdir={tmp_path}/bad", "--zeta=1.5", cwd=tmp_path)
  assert bad.returncode != 0 and "zeta" in bad.stderr


def test_evolution_binary_one_command(tmp_path):
  r = _run("evolution.py", f"--workdir={tmp_path}/evo", "--hidden=32,32",
           "--epochs=2", "--seeds=0,1", "--sparse_training=set", "--noprogress",
           cwd=tmp_path)
  assert r.returncode == 0, r.stderr[-2000:]
  out = tmp_path / "evo" / "analysis"
  for name in ("nnstd_heatmaps.png", "accuracy_vs_nnstd.png",
               "degree_evolution.png", "nnstd_runs.csv", "runs.csv",
               "degrees.csv", "evolution_summary.json",
               "nnstd_epochs_seed_0.csv"):
    assert (out / name).exists(), name
  summary = json.loads((out / "evolution_summary.json").read_text())
  assert 0 < summary["mean_nnstd_between_runs"] <= 1
  # SET rewires after every epoch but the last: the final snapshot repeats
  # the one before, and the heat maps say so instead of showing it twice.
  assert summary["final_snapshot_unchanged"] == ["seed_0", "seed_1"]
  # the runs are a study on the common skeleton: rows, summary, provenance
  study = json.loads((tmp_path / "evo" / "summary.json").read_text())
  assert study["runs"] == study["runs_finished"] == 2
  assert study["evolution"]["mean_nnstd_between_runs"] == summary[
      "mean_nnstd_between_runs"]
  assert (tmp_path / "evo" / "evolution_runs.csv").exists()
  assert json.loads((tmp_path / "evo" / "provenance.json").read_text())[
      "config"]["seeds"] == [0, 1]
  # Re-analysing existing runs trains nothing.
  r2 = _run("evolution.py", f"--workdir={tmp_path}/evo2",
            f"--runs={tmp_path}/evo/seed_0,{tmp_path}/evo/seed_1", cwd=tmp_path)
  assert r2.returncode == 0, r2.stderr[-2000:]
  assert not (tmp_path / "evo2" / "seed_0").exists()


def test_prune_binary(tmp_path):
  r = _run("prune.py", f"--workdir={tmp_path}/p", "--hidden=32", "--epochs=1",
           "--prune_density=0.3", "--noprogress", cwd=tmp_path)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "pruned topology" in r.stdout
  stack = topology.load_stack(str(tmp_path / "p" / "pruned_topology"))
  assert [t.n_in for t in stack] == [64, 32]
  bad = _run("prune.py", f"--workdir={tmp_path}/q", "--prune_density=1.5",
             cwd=tmp_path)
  assert bad.returncode != 0 and "density" in bad.stderr


def test_restore_model_survives_a_deleted_init_file(tmp_path):
  m = _model([64, 32, 10], 1, 0.3, 0)
  init = str(tmp_path / "init.npz")
  save_dense_weights(m, init)
  tdir = str(tmp_path / "topo")
  topology.save_stack(m.topologies(), tdir)
  cfg = TrainConfig(model=ModelConfig(hidden=(32,), init_weights=init, topology=TopologyConfig(directory=tdir)),
                    run=RunConfig(epochs=1, batch_size=64, progress=False))
  train_and_evaluate(cfg, str(tmp_path / "run"))
  os.remove(init)
  restored = restore_model(str(tmp_path / "run"))
  assert restored.topologies() == m.topologies()


# Batch sizes used by no other test, so no earlier compilation is reused.
@pytest.mark.parametrize("method,batch", [("set", 48), ("rigl", 40)])
def test_rewiring_never_retraces_the_training_step(tmp_path, monkeypatch,
                                                   method, batch):
  from snn_jax.training import loop
  traces = []
  original = loop._loss_and_acc

  def counting(model, x, y):  # runs in Python only while jit traces
    traces.append(x.shape[0])
    return original(model, x, y)

  monkeypatch.setattr(loop, "_loss_and_acc", counting)
  cfg = TrainConfig.from_flat(dict(**{**SMALL, "batch_size": batch}, sparse_training=method,
                    update_every=5))
  s = train_and_evaluate(cfg, str(tmp_path / "run"))
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    assert sum(json.loads(l)["rewired_blocks"] for l in f) > 0
  assert traces.count(batch) == 1, traces  # one trace of the train step
  assert s["final_test_acc"] > 0.5


def test_epoch_end_rewiring_comes_after_the_epochs_evaluation(tmp_path,
                                                              monkeypatch):
  from snn_jax.training import loop
  events = []
  real_eval, real_update = loop.evaluate, Rewirer.update

  def logged_eval(*a, **k):
    events.append("eval")
    return real_eval(*a, **k)

  def logged_update(self, *a, **k):
    events.append("rewire")
    return real_update(self, *a, **k)
  monkeypatch.setattr(loop, "evaluate", logged_eval)
  monkeypatch.setattr(Rewirer, "update", logged_update)
  cfg = TrainConfig(model=ModelConfig(hidden=(32,), topology=TopologyConfig(density=0.3)),
                    sparse=SparseTrainingConfig(method="set"),
                    run=RunConfig(epochs=3, batch_size=128, progress=False))
  train_and_evaluate(cfg, str(tmp_path / "run"))
  # SET rewires after every epoch but the last, each time after evaluating
  assert events == ["eval", "rewire", "eval", "rewire", "eval"]


@pytest.mark.parametrize("bs,chunk,dead_inputs,dead_outputs", [
    (1, 64, 0, 0), (1, 1 << 24, 0, 0), (4, 200, 0, 0), (4, 16, 0, 0),
    # Inputs that are zero on the batch give whole rows of zero scores: the
    # k-th best is a tie shared by many positions, decided by position.
    (1, 64, 40, 0), (4, 16, 40, 0), (1, 200, 63, 0),
    # Outputs without gradient (units that feed nothing, as in a sparse
    # layer before a sparse head) give zero columns: whole chunks tie at
    # zero, and only the first of them by position may be kept.
    (1, 64, 0, 90), (1, 1 << 24, 30, 80), (4, 16, 0, 88)])
def test_grow_by_gradient_chooses_as_the_dense_scores_do(rng, bs, chunk,
                                                         dead_inputs,
                                                         dead_outputs):
  from snn_jax.sparse_training import grow_by_gradient
  t = topology.make("erdos_renyi", 64, 96, density=0.2, block_size=bs, seed=3)
  x = rng.normal(size=(12, 64)).astype(np.float32)
  x[:, rng.permutation(64)[:dead_inputs]] = 0.0
  dy = rng.normal(size=(12, 96)).astype(np.float32)
  dy[:, rng.permutation(96)[:dead_outputs]] = 0.0
  g = (x.T @ dy).astype(np.float64).reshape(64 // bs, bs, 96 // bs, bs)
  scores = np.sqrt((g ** 2).sum(axis=(1, 3)))
  k = 37 // bs + 3
  want = grow_by_score(t.rows, t.cols, scores, k)
  got = grow_by_gradient(t.rows, t.cols, x, dy, k, bs, chunk_floats=chunk)
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_array_equal(got[1], want[1])
  occupied = set(zip(t.rows.tolist(), t.cols.tolist()))
  assert not occupied & set(zip(got[0].tolist(), got[1].tolist()))
  with pytest.raises(ValueError, match="only"):
    grow_by_gradient(t.rows, t.cols, x, dy, 10 ** 6, bs)


def test_rigl_growth_follows_the_dense_gradient_of_the_batch(rng):
  from snn_jax.sparse_training import layer_inputs_and_output_grads
  model = _model([20, 24, 10], 1, 0.3, seed=0)
  x = jnp.asarray(rng.normal(size=(16, 20)).astype(np.float32))
  y = jnp.asarray(rng.integers(0, 10, 16))
  # input^T dY from the taps is the weight gradient autodiff gives
  (a0, dy0), _ = layer_inputs_and_output_grads(model, x, y)
  dense = jnp.asarray(model.layers[0].weight().to_dense())
  bias = model.layers[0].bias.get_value()

  def loss_of_dense_w(w):
    h = jax.nn.relu(x @ w + bias[None, :])
    logits = model.layers[1](h)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  want = np.asarray(jax.grad(loss_of_dense_w)(dense))
  np.testing.assert_allclose(a0.T @ dy0, want, rtol=1e-4, atol=1e-6)
  # a RigL update grows exactly the best-scoring empty positions
  scores = gradient_block_scores(model, x, y)
  before = [layer.topology() for layer in model.layers]
  rewire_layers(model, None, SparseTrainingConfig(method="rigl", zeta=0.3),
                step=1, x=x, y=y)
  for l, layer in enumerate(model.layers):
    t0 = before[l]
    grown = _block_set(layer) - set(zip(t0.rows.tolist(), t0.cols.tolist()))
    if not grown:
      continue
    r, c = grow_by_score(t0.rows, t0.cols, scores[l], len(grown))
    assert grown == set(zip(r.tolist(), c.tolist()))
