"""The training options the paper-scale reproductions need: validation
parts, [-1, 1] pixels, truncated-normal init, bias start, ReLU logits,
piecewise learning rates, weight decay on weights only, gradual magnitude
pruning (Alford et al. 2019; Zhu & Gupta 2017) -- and the paper-scale
Alford runner at a tiny size."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snn_jax import data, topology
from snn_jax.kernels import native_cpu
from snn_jax.nn import SparseMLP, get_initializer
from snn_jax.sparse_training import SparseTrainingConfig
from snn_jax.training import (TrainConfig, make_optimizer, restore_model,
                              train_and_evaluate)
from snn_jax.data import DataConfig
from snn_jax.nn import ModelConfig
from snn_jax.training import OptimizerConfig, RunConfig
from tests.conftest import REPO_ROOT


pytestmark = pytest.mark.standard_promotion


def _arrays_dataset(rng, n_train=600, n_test=200, dim=20, classes=4):
  x = rng.normal(size=(n_train + n_test, dim)).astype(np.float32)
  y = rng.integers(0, classes, n_train + n_test).astype(np.int32)
  x[np.arange(len(y)), y] += 2.5
  return data.Dataset("arrays", x[:n_train], y[:n_train], x[n_train:],
                      y[n_train:], classes, source="test arrays")


# -- data ----------------------------------------------------------------------

@pytest.mark.parametrize("spec,val_slice,train_slice", [
    ("first:50", slice(0, 50), slice(50, None)),
    ("last:70", slice(530, None), slice(0, 530)),
])
def test_validation_part_is_held_out_of_training(rng, spec, val_slice,
                                                 train_slice):
  ds = _arrays_dataset(rng)
  held = ds.with_validation(spec)
  np.testing.assert_array_equal(held.x_val, ds.x_train[val_slice])
  np.testing.assert_array_equal(held.x_train, ds.x_train[train_slice])
  np.testing.assert_array_equal(held.x_test, ds.x_test)
  assert len(held.y_val) + len(held.y_train) == len(ds.y_train)
  assert held.validation_spec == spec
  assert held.fingerprint["id"] != ds.fingerprint["id"]
  assert held.fingerprint["split"]["validation_examples"] == len(held.y_val)
  assert held.flattened().x_val.shape == held.x_val.shape


@pytest.mark.parametrize("spec,match", [
    ("middle:5", "first:N"), ("first:", "first:N"), ("first:0", "first:N"),
    ("first:600", "leaves no training"), ("last:x", "first:N")])
def test_bad_validation_specs(rng, spec, match):
  with pytest.raises(ValueError, match=match):
    _arrays_dataset(rng).with_validation(spec)


def test_a_dataset_with_another_validation_part_is_refused(rng):
  ds = _arrays_dataset(rng).with_validation("first:50")
  with pytest.raises(ValueError, match="already holds"):
    ds.with_validation("first:60")
  cfg = TrainConfig(data=DataConfig(validation="last:50"),
                    model=ModelConfig(hidden=(8,)), run=RunConfig(progress=False))
  with pytest.raises(ValueError, match="holds validation part"):
    cfg.data.with_validation(ds)


def test_minus_one_to_one_uses_the_training_range(rng):
  tr = rng.random((100, 5)).astype(np.float32) * 3 + 1
  te = rng.random((20, 5)).astype(np.float32) * 3 + 1
  a, b = data.standardize(tr, te, "minus_one_to_one")
  assert a.min() == pytest.approx(-1) and a.max() == pytest.approx(1)
  lo, hi = tr.min(), tr.max()
  np.testing.assert_allclose(b, (te - lo) * 2 / (hi - lo) - 1, rtol=1e-5,
                             atol=1e-6)


# -- model and optimiser options -----------------------------------------------

def test_truncated_normal_init(rng):
  t = topology.make("erdos_renyi", 300, 200, density=0.5, seed=1)
  w = np.asarray(get_initializer("truncated_normal:0.04")(
      jax.random.key(3), t))
  assert w.shape == (t.nnzb, 1, 1)
  assert np.abs(w).max() <= 0.08 + 1e-7  # redrawn beyond two std
  # the std of N(0, s^2) truncated at +-2s is 0.8796 s
  assert w.std() == pytest.approx(0.04 * 0.8796, rel=0.03)


@pytest.mark.parametrize("name", ["truncated_normal:", "truncated_normal:-1",
                                  "truncated_normal:abc", "normal:", "normal:0",
                                  "uniform:0.1"])
def test_bad_init_names(name):
  with pytest.raises(ValueError, match="normal"):
    get_initializer(name)
  with pytest.raises(ValueError):
    TrainConfig(model=ModelConfig(init=name))


def test_bias_start_and_relu_logits(rng):
  stack = topology.make_stack("erdos_renyi", [12, 9, 5], density=0.5, seed=0)
  model = SparseMLP(stack, bias_init=0.1, output_activation="relu",
                    rngs=nnx.Rngs(params=0))
  plain = SparseMLP(stack, bias_init=0.1, rngs=nnx.Rngs(params=0))
  for layer in model.layers:
    np.testing.assert_allclose(np.asarray(layer.bias.get_value()), 0.1)
  x = jnp.asarray(rng.normal(size=(16, 12)).astype(np.float32))
  out, ref = np.asarray(model(x)), np.asarray(plain(x))
  np.testing.assert_allclose(out, np.maximum(ref, 0), rtol=1e-6)
  assert (ref < 0).any()  # the test would not notice a missing ReLU otherwise


def test_piecewise_schedule_takes_absolute_steps():
  cfg = TrainConfig(optimizer=OptimizerConfig(name="sgd", lr=0.2, schedule="piecewise", lr_boundaries=(10, 20), lr_values=(0.1, 0.05)))
  _, lr = make_optimizer(cfg, steps_per_epoch=7)
  got = [float(lr(s)) for s in (0, 9, 10, 19, 20, 1000)]
  np.testing.assert_allclose(got, [0.2, 0.2, 0.1, 0.1, 0.05, 0.05], rtol=1e-6)


@pytest.mark.parametrize("kw", [
    dict(schedule="piecewise"),
    dict(schedule="piecewise", lr_boundaries=(10, 5), lr_values=(0.1, 0.05)),
    dict(schedule="piecewise", lr_boundaries=(10,), lr_values=(0.1, 0.05)),
    dict(schedule="piecewise", lr_boundaries=(10,), lr_values=(-0.1,)),
    dict(schedule="cosine", lr_boundaries=(10,), lr_values=(0.1,)),
])
def test_piecewise_schedule_validation(kw):
  with pytest.raises(ValueError, match="lr_"):
    TrainConfig.from_flat(dict(**kw))


@pytest.mark.parametrize("decay_biases", [True, False])
def test_weight_decay_on_weights_only(decay_biases):
  cfg = TrainConfig(optimizer=OptimizerConfig(name="sgd", lr=1.0, schedule="constant", weight_decay=0.1, decay_biases=decay_biases))
  tx, _ = make_optimizer(cfg, 1)
  stack = topology.make_stack("erdos_renyi", [6, 4], density=0.5, seed=0)
  model = SparseMLP(stack, bias_init=0.5, rngs=nnx.Rngs(params=0))
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  before = model.layers[0].values.get_value()
  zero = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
  opt.update(model, zero)
  np.testing.assert_allclose(np.asarray(model.layers[0].values.get_value()),
                             0.9 * np.asarray(before), rtol=1e-6)
  want = 0.45 if decay_biases else 0.5
  np.testing.assert_allclose(np.asarray(model.layers[0].bias.get_value()), want,
                             rtol=1e-6)


# -- gradual magnitude pruning -------------------------------------------------

def test_cubic_sparsity_schedule_and_update_steps():
  config = SparseTrainingConfig(method="prune", prune_density=0.1,
                                prune_begin_step=100, prune_end_step=500,
                                update_every=100)
  rules = config.rules
  sparsity = lambda step: rules.amount_at(config, step, 1000)
  assert sparsity(50) == 0 and sparsity(100) == 0
  assert sparsity(300) == pytest.approx(0.9 * (1 - 0.5 ** 3))
  assert sparsity(500) == pytest.approx(0.9)
  assert sparsity(900) == pytest.approx(0.9)
  assert rules.update_steps(config, 1000, None).tolist() == [
      100, 200, 300, 400, 500]


@pytest.mark.parametrize("kw,match", [
    (dict(prune_density=None, prune_end_step=10, update_every=5), "prune_density"),
    (dict(prune_density=1.0, prune_end_step=10, update_every=5), "prune_density"),
    (dict(prune_density=0.5, prune_end_step=None, update_every=5), "prune_end_step"),
    (dict(prune_density=0.5, prune_begin_step=10, prune_end_step=10,
          update_every=5), "prune_end_step"),
    (dict(prune_density=0.5, prune_end_step=10, update_every=0), "update_every"),
])
def test_pruning_config_validation(kw, match):
  with pytest.raises(ValueError, match=match):
    SparseTrainingConfig(method="prune", **kw)
  with pytest.raises(ValueError, match="apply to method 'prune'"):
    SparseTrainingConfig(method="set", prune_density=0.5)


def _prune_config(**kw):
  return TrainConfig.from_flat(dict(**{**dict(
      hidden=(48, 24), topology="dense", density=None, optimizer="momentum",
      lr=0.05, batch_size=64, epochs=4, sparse_training="prune",
      prune_density=0.2, prune_begin_step=4, prune_end_step=30,
      update_every=4, progress=False), **kw}))


@pytest.mark.slow
def test_gradual_pruning_reaches_the_target_per_layer_and_keeps_largest(tmp_path):
  cfg = _prune_config()
  s = train_and_evaluate(cfg, str(tmp_path / "run"))
  model = restore_model(str(tmp_path / "run"))  # the kept blocks only
  for layer in model.layers:
    dense = layer.n_in * layer.n_out
    assert layer.nnz == dense - round(0.8 * dense)
    assert np.count_nonzero(np.asarray(layer.values.get_value())) == layer.nnz
  assert s["density"] == pytest.approx(0.2, abs=0.01)
  assert s["final_test_acc"] > 0.5
  rows = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
  nnz = [r["nnz_params"] for r in rows]
  assert nnz[0] < rows[0]["dense_params"] and nnz == sorted(nnz, reverse=True)


@pytest.mark.slow
def test_pruning_run_resumes_to_the_same_result(tmp_path):
  cfg = _prune_config()
  whole = train_and_evaluate(cfg, str(tmp_path / "whole"))
  train_and_evaluate(cfg, str(tmp_path / "parts"), stop_after_epoch=1)
  parts = train_and_evaluate(cfg, str(tmp_path / "parts"))
  assert parts["resumed_from_epoch"] == 1
  assert parts["final_test_acc"] == whole["final_test_acc"]
  a = restore_model(str(tmp_path / "whole")).topologies()
  b = restore_model(str(tmp_path / "parts")).topologies()
  assert a == b


# -- the workdir contract the paper-scale runs rely on -------------------------

def test_a_finished_run_is_recognised_without_its_checkpoints(tmp_path, capsys):
  wd = tmp_path / "run"
  cfg = TrainConfig(model=ModelConfig(hidden=(16,)),
                    run=RunConfig(epochs=2, batch_size=64, progress=False))
  first = train_and_evaluate(cfg, str(wd))
  shutil.rmtree(wd / "checkpoints")
  again = train_and_evaluate(cfg, str(wd))
  assert again == json.loads(json.dumps(first))
  assert "already complete" in capsys.readouterr().out


@pytest.mark.slow
def test_a_run_stopped_early_is_not_taken_for_finished(tmp_path):
  wd = str(tmp_path / "run")
  cfg = TrainConfig(model=ModelConfig(hidden=(16,)),
                    run=RunConfig(epochs=3, batch_size=64, progress=False))
  early = train_and_evaluate(cfg, wd, stop_after_epoch=1)
  assert early["epochs_completed"] == 1
  done = train_and_evaluate(cfg, wd)
  assert done["epochs_completed"] == 3 and done["resumed_from_epoch"] == 1


@pytest.mark.slow
def test_the_data_may_move_but_not_change(tmp_path, rng):
  src = tmp_path / "a"
  src.mkdir()
  ds = _arrays_dataset(rng)
  np.savez(src / "d.npz", x_train=ds.x_train, y_train=ds.y_train,
           x_test=ds.x_test, y_test=ds.y_test)
  moved = tmp_path / "b"
  shutil.copytree(src, moved)
  wd = str(tmp_path / "run")
  cfg = TrainConfig(data=DataConfig(name="mnist", data_dir=str(src / "d.npz")),
                    model=ModelConfig(hidden=(8,)),
                    run=RunConfig(epochs=2, batch_size=64, progress=False))
  train_and_evaluate(cfg, wd, stop_after_epoch=1)
  s = train_and_evaluate(cfg.override({"data.data_dir": str(moved / "d.npz")}),
                         wd)
  assert s["resumed_from_epoch"] == 1


@pytest.mark.slow
def test_validation_accuracy_is_reported_every_epoch(tmp_path, rng):
  cfg = TrainConfig(data=DataConfig(validation="last:100"),
                    model=ModelConfig(hidden=(16,)),
                    run=RunConfig(epochs=2, batch_size=50, progress=False))
  s = train_and_evaluate(cfg, str(tmp_path / "run"),
                         dataset=_arrays_dataset(rng))
  rows = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
  assert all(0 <= r["val_acc"] <= 1 for r in rows)
  assert s["final_val_acc"] == rows[-1]["val_acc"]
  assert s["data_fingerprint"]["split"]["validation"] == "last:100"


# -- Alford et al.'s LeNet-5 (the TensorFlow-tutorial network) -----------------

def test_local_response_norm_matches_its_definition(rng):
  from snn_jax.nn import local_response_norm
  x = rng.normal(size=(2, 3, 3, 12)).astype(np.float32)
  r, sq, want = 4, x ** 2, np.empty_like(x)
  for c in range(12):
    s = sq[..., max(0, c - r):c + r + 1].sum(-1)
    want[..., c] = x[..., c] / (1 + 0.001 / 9 * s) ** 0.75
  np.testing.assert_allclose(np.asarray(local_response_norm(jnp.asarray(x))),
                             want, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_alford_lenet5_convolutions_follow_their_weight_level_masks(rng):
  from snn_jax.nn import AlfordLeNet5
  from snn_jax.nn._alford_lenet5 import KERNEL
  stack = AlfordLeNet5.dense_topologies((50, 384), 10)
  stack[1] = topology.make("erdos_renyi", 500, 50, density=0.3, seed=1)
  model = AlfordLeNet5(stack, rngs=nnx.Rngs(params=0))
  layer = model.layers[1]
  h = jnp.asarray(rng.normal(size=(2, 14, 14, 20)).astype(np.float32))
  patches = jax.lax.conv_general_dilated_patches(
      h, KERNEL, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  for impl in ("dense",) + (("native_cpu",) if native_cpu.AVAILABLE else ()):
    np.testing.assert_allclose(np.asarray(layer.conv2d(h, KERNEL, impl=impl)),
                               np.asarray(layer(patches)), rtol=1e-4, atol=1e-5)
  x = jnp.asarray(rng.normal(size=(3, 784)).astype(np.float32))
  assert model(x).shape == (3, 10)
  if native_cpu.AVAILABLE:
    # The plane-major (CHWB) path of a natively run conv2: the same network.
    native = AlfordLeNet5(stack, conv_impl="native_cpu",
                          rngs=nnx.Rngs(params=0))
    dense = AlfordLeNet5(stack, conv_impl="dense", rngs=nnx.Rngs(params=0))
    np.testing.assert_allclose(np.asarray(native(x)), np.asarray(dense(x)),
                               rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="unknown conv_impl 'xla'"):
    AlfordLeNet5(stack, conv_impl="xla", rngs=nnx.Rngs(params=0))
  assert model.nnz == 500 + layer.nnz + 2450 * 384 + 3840
  biases = [float(np.asarray(l.bias.get_value())[0]) for l in model.layers]
  assert biases == [0.0, 0.0, pytest.approx(0.1), 0.0]
  with pytest.raises(ValueError, match="weight-level topologies"):
    AlfordLeNet5(stack[:3], rngs=nnx.Rngs(params=0))


@pytest.mark.parametrize("kw,match", [
    (dict(hidden=(50,)), "hidden=\\(conv2 channels"),
    (dict(init="dense_he"), "unset \\['init'\\]"),
    (dict(sparse_training="rigl", update_every=10, data_parallel=True),
     "unset \\['run.data_parallel'\\]"),
])
def test_alford_lenet5_config_errors(kw, match):
  with pytest.raises(ValueError, match=match):
    TrainConfig.from_flat({"model": "lenet5_alford", "hidden": (50, 384), **kw})


@pytest.mark.slow
def test_train_binary_takes_the_paper_setup_flags(tmp_path):
  import subprocess
  import sys
  out = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "train.py"),
       f"--workdir={tmp_path}", "--hidden=32,16", "--topology=dense",
       "--init=truncated_normal:0.05", "--bias_init=0.1",
       "--output_activation=relu", "--optimizer=sgd", "--lr=0.1",
       "--schedule=piecewise", "--lr_boundaries=10,20", "--lr_values=0.05,0.02",
       "--weight_decay=0.004", "--nodecay_biases", "--validation_split=first:200",
       "--sparse_training=prune", "--prune_density=0.25", "--prune_begin_step=5",
       "--prune_end_step=25", "--update_every=5", "--epochs=3",
       "--batch_size=64", "--snapshot_topologies", "--snapshot_epochs=0,3"],
      capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  with open(tmp_path / "summary.json") as f:
    s = json.load(f)
  assert s["density"] == pytest.approx(0.25, abs=0.01)
  assert s["config"]["optimizer"]["lr_boundaries"] == [10, 20] and "final_val_acc" in s
  assert sorted(os.listdir(tmp_path / "topologies")) == ["epoch_000", "epoch_003"]
  bad = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "train.py"),
       f"--workdir={tmp_path / 'bad'}", "--init=truncated_normal:x"],
      capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2 and "truncated_normal:0.04" in bad.stderr
