"""Dynamic sparse training (SET, RigL, gradual pruning) in the training loop,
and the prune-and-retrain pipeline: invariants. The engine itself is
tested in ``tests/sparse_training``."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snn_jax import analysis, topology
from snn_jax.nn import SparseMLP, load_dense_weights, save_dense_weights
from snn_jax.sparse_training import SparseTrainingConfig, prune_stack
from snn_jax.studies import PruneConfig, prune_and_retrain
from snn_jax.training import TrainConfig, restore_model, train_and_evaluate
from snn_jax.nn import ModelConfig
from snn_jax.topology import TopologyConfig
from snn_jax.training import OptimizerConfig, RunConfig
from tests.conftest import REPO_ROOT



pytestmark = pytest.mark.standard_promotion


def _model(widths, bs, density, seed):
  topos = topology.make_stack("erdos_renyi", widths, density=density,
                              block_size=bs, seed=seed)
  return SparseMLP(topos, rngs=nnx.Rngs(params=seed))


def _block_set(layer):
  t = layer.topology()
  return set(zip(t.rows.tolist(), t.cols.tolist()))


# -- the config -----------------------------------------------------------------

@pytest.mark.parametrize("bad", [dict(method="sgd"), dict(zeta=1.0),
                                 dict(zeta=-0.1), dict(update_every=-1),
                                 dict(regrow_init="ones"),
                                 dict(end_fraction=0.0)])
def test_config_validation(bad):
  with pytest.raises(ValueError):
    SparseTrainingConfig(**{"method": "set", **bad})


# -- training ---------------------------------------------------------------------

SMALL = dict(hidden=(64, 64), density=0.2, epochs=3, batch_size=64,
             progress=False, lr=0.05)


@pytest.mark.parametrize("method,every", [("set", 0), ("rigl", 5)])
@pytest.mark.slow
def test_dynamic_training_evolves_learns_and_resumes(tmp_path, method, every):
  cfg = TrainConfig.from_flat(dict(**SMALL, sparse_training=method, update_every=every,
                    snapshot_topologies=True))
  wd = str(tmp_path / "run")
  train_and_evaluate(cfg, wd, stop_after_epoch=2)
  s = train_and_evaluate(cfg, wd)  # resumed for the last epoch
  ref = train_and_evaluate(cfg, str(tmp_path / "ref"))
  assert s["final_test_acc"] == pytest.approx(ref["final_test_acc"], abs=1e-6)
  # Chance is 0.1; six seeds reach 0.77-0.85 (SET) on this toy set.
  assert s["final_test_acc"] > 0.7
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


@pytest.mark.slow
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
@pytest.mark.slow
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


@pytest.mark.slow
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
  # A config is data: a missing folder is an error where it is read, before
  # the workdir is touched.
  missing = TrainConfig(model=ModelConfig(topology=TopologyConfig(
      directory=str(tmp_path / "missing"))))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    train_and_evaluate(missing, str(tmp_path / "run3"))
  assert not (tmp_path / "run3").exists()


# -- binaries -----------------------------------------------------------------------

def _run(script, *args, cwd):
  return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "experiments", script),
                         *args], capture_output=True, text=True, cwd=cwd,
                        timeout=600)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
@pytest.mark.slow
def test_rewiring_never_retraces_the_training_step(tmp_path, monkeypatch,
                                                   method, batch):
  from snn_jax.training import loop
  traces = []
  original = loop._gather

  def counting(batch):  # runs in Python only while jit traces a step
    traces.append(len(batch[-1]))
    return original(batch)

  monkeypatch.setattr(loop, "_gather", counting)
  cfg = TrainConfig.from_flat(dict(**{**SMALL, "batch_size": batch}, sparse_training=method,
                    update_every=5))
  s = train_and_evaluate(cfg, str(tmp_path / "run"))
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    assert sum(json.loads(l)["rewired_blocks"] for l in f) > 0
  assert traces.count(batch) == 1, traces  # one trace of the train step
  assert s["final_test_acc"] > 0.5


@pytest.mark.slow
def test_epoch_end_rewiring_comes_after_the_epochs_evaluation(tmp_path,
                                                              monkeypatch):
  from snn_jax.training import loop
  events = []
  real_eval, real_rewire = loop.evaluate, loop._fit_rewire_after_epoch

  def logged_eval(*a, **k):
    events.append("eval")
    return real_eval(*a, **k)

  def logged_rewire(model, optimizer, *batch):
    before = int(optimizer.rewirings.get_value())
    moved = real_rewire(model, optimizer, *batch)
    if int(optimizer.rewirings.get_value()) > before:
      events.append("rewire")
    return moved
  monkeypatch.setattr(loop, "evaluate", logged_eval)
  monkeypatch.setattr(loop, "_fit_rewire_after_epoch", logged_rewire)
  cfg = TrainConfig(model=ModelConfig(hidden=(32,), topology=TopologyConfig(density=0.3)),
                    sparse=SparseTrainingConfig(method="set"),
                    run=RunConfig(epochs=3, batch_size=128, progress=False))
  train_and_evaluate(cfg, str(tmp_path / "run"))
  # SET rewires after every epoch but the last, each time after evaluating
  assert events == ["eval", "rewire", "eval", "rewire", "eval"]
