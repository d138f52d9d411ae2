"""The nested TrainConfig: each part's rules, dotted overrides, JSON round
trips, the flat form of earlier config.json files, and flag names."""

import json
import os
import subprocess
import sys

import jax
import pytest

from snn_jax.data import DataConfig
from snn_jax.nn import ModelConfig
from snn_jax.sparse_training import SparseTrainingConfig
from snn_jax.topology import TopologyConfig
from snn_jax.training import (FLAT_NAMES, OptimizerConfig, RunConfig,
                              TrainConfig, train_and_evaluate)
from snn_jax.training.config import leaf_paths, normalised_dict
from tests.conftest import REPO_ROOT



pytestmark = pytest.mark.standard_promotion


def _unusual_config() -> TrainConfig:
  """Every part away from its defaults."""
  return TrainConfig(
      data=DataConfig("digits", normalization="per_feature",
                      validation="last:100", split_seed=3),
      model=ModelConfig(
          "mlp", hidden=(48, 24),
          topology=TopologyConfig("erdos_renyi", fan_in=8, block_size=(4, 4, 2),
                                  params={}),
          init="truncated_normal:0.04", bias_init=0.1, activation="tanh",
          output_activation="relu", norm="layer", dropout=0.1),
      optimizer=OptimizerConfig("sgd", lr=0.2, schedule="piecewise",
                                lr_boundaries=(10, 20), lr_values=(0.1, 0.05),
                                weight_decay=4e-3, decay_biases=False),
      sparse=SparseTrainingConfig("rigl", zeta=0.2, update_every=5,
                                  zeta_schedule="constant", end_fraction=0.5),
      run=RunConfig(epochs=3, batch_size=32, seed=7, progress=False,
                    snapshot_topologies=True, snapshot_epochs=(0, 3)))


def test_json_round_trip_is_exact():
  cfg = _unusual_config()
  text = json.dumps(cfg.to_dict())
  back = TrainConfig.from_dict(json.loads(text))
  assert back == cfg
  assert back.model.topology.block_size == (4, 4, 2)  # tuples come back
  assert back.optimizer.lr_boundaries == (10, 20)
  assert set(cfg.to_dict()) == {"data", "model", "optimizer", "sparse", "run"}


def test_parts_given_as_dicts_become_their_dataclasses():
  cfg = TrainConfig(model={"hidden": [8], "topology": {"name": "dense"}},
                    run={"epochs": 2})
  assert isinstance(cfg.model, ModelConfig) and cfg.model.hidden == (8,)
  assert cfg.model.topology == TopologyConfig("dense")
  with pytest.raises(TypeError, match="TrainConfig.run must be a RunConfig"):
    TrainConfig(run=3)


def test_override_sets_leaves_and_checks_the_rules_again():
  cfg = TrainConfig().override({"run.epochs": 3, "model.topology.density": 0.05,
                                "optimizer.lr": 0.1})
  assert (cfg.run.epochs, cfg.model.topology.density, cfg.optimizer.lr) == (
      3, 0.05, 0.1)
  assert cfg.model.hidden == TrainConfig().model.hidden  # the rest kept
  whole = cfg.override({"model.topology": TopologyConfig("dense")})
  assert whole.model.topology.is_dense
  with pytest.raises(KeyError, match="model.topology has no field 'densty'"):
    cfg.override({"model.topology.densty": 0.1})
  with pytest.raises(KeyError, match="TrainConfig has no field 'training'"):
    cfg.override({"training.epochs": 1})
  with pytest.raises(ValueError, match="epochs must be >= 1"):
    cfg.override({"run.epochs": 0})
  # One call may change several leaves that only make sense together.
  dense = cfg.override({"model.topology.name": "dense",
                        "model.topology.density": None})
  assert dense.model.topology.density is None


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="dense", density=0.5), "takes no density or fan_in"),
    (dict(name="erdos_renyi", density=0.1, fan_in=4), "not both"),
    (dict(name="erdos_renyi", density=1.5), "density must be in"),
    (dict(name="erdos_renyi", params={"epsilon": 20, "nonsense": 1}),
     "unknown parameter"),
    (dict(name="no_such_family"), "unknown topology"),
    (dict(name="erdos_renyi", density=0.1, block_size=0), "block sizes"),
])
def test_topology_config_rules(kwargs, match):
  with pytest.raises(ValueError, match=match):
    TopologyConfig(**kwargs)


@pytest.mark.parametrize("make,match", [
    (lambda: DataConfig("no_such_data"), "unknown dataset"),
    (lambda: DataConfig(validation="middle:5"), "first:N"),
    (lambda: ModelConfig("lenet5", norm="layer"), "no norm or dropout"),
    (lambda: ModelConfig("lenet5_alford", hidden=(50,)), "conv2 channels"),
    (lambda: ModelConfig(impl="cuda_magic"), "unknown impl"),
    (lambda: OptimizerConfig("sgd", schedule="piecewise"), "piecewise"),
    (lambda: RunConfig(shard_blocks=True), "needs data_parallel"),
    (lambda: TrainConfig(model=ModelConfig("lenet5", hidden=(120, 84)),
                         sparse=SparseTrainingConfig(
                             "prune", prune_density=0.1, prune_end_step=9,
                             update_every=3)),
     "trains static, set, rigl"),
    (lambda: TrainConfig(model=ModelConfig("lenet5", hidden=(120, 84)),
                         run=RunConfig(data_parallel=True)),
     "unset \\['run.data_parallel'\\]"),
])
def test_each_part_validates_its_own_rules(make, match):
  with pytest.raises((ValueError, KeyError), match=match):
    make()


def test_sparse_seed_defaults_to_the_run_seed():
  cfg = TrainConfig(sparse=SparseTrainingConfig("set"), run=RunConfig(seed=5))
  assert cfg.rewiring.seed == 5
  fixed = cfg.override({"sparse.seed": 9})
  assert fixed.rewiring.seed == 9


def test_flat_names_map_onto_leaves():
  leaves = set(leaf_paths())
  assert set(FLAT_NAMES.values()) <= leaves
  # Every leaf is --config.<leaf>; these newer ones have no short name.
  assert leaves - set(FLAT_NAMES.values()) == {
      "sparse.zeta_schedule", "sparse.end_fraction", "sparse.seed",
      "optimizer.nesterov", "optimizer.restart_every_epoch",
      "model.dense_output", "model.conv_impl"}
  cfg = TrainConfig.from_flat({"topology": "biregular", "density": 0.2,
                               "epochs": 4, "dataset": "digits"})
  assert cfg.model.topology.name == "biregular" and cfg.run.epochs == 4
  with pytest.raises(KeyError, match="unknown flat config names"):
    TrainConfig.from_flat({"epoch": 4})


def _flat_form(cfg: TrainConfig) -> dict:
  """``cfg`` as the flat config.json of versions before nesting."""
  nested = cfg.to_dict()
  out = {}
  for name, path in FLAT_NAMES.items():
    value = nested
    for key in path.split("."):
      value = value[key]
    out[name] = value
  return out


def test_the_flat_form_of_earlier_versions_reads_back():
  cfg = _unusual_config()
  assert TrainConfig.from_dict(_flat_form(cfg)) == cfg.override(
      {"sparse.zeta_schedule": None, "sparse.end_fraction": None})
  # Earlier versions stored a density beside dense (the default 0.1) and
  # beside SET's epsilon; it never took effect, and is dropped.
  old = {"topology": "dense", "density": 0.1, "hidden": [64]}
  assert TrainConfig.from_dict(old).model.topology == TopologyConfig("dense")
  old = {"topology": "erdos_renyi", "density": 0.1,
         "topology_params": {"epsilon": 20}}
  assert TrainConfig.from_dict(old).model.topology.density is None
  # Unknown keys (and run records) are ignored, missing ones default.
  assert normalised_dict({"data_fingerprint": {}, "future_field": 1}) == \
      TrainConfig().to_dict()


@pytest.mark.slow
def test_a_workdir_with_a_flat_config_json_resumes(tmp_path):
  cfg = TrainConfig(model=ModelConfig(hidden=(32,),
                                      topology=TopologyConfig("erdos_renyi",
                                                              density=0.3)),
                    run=RunConfig(epochs=1, batch_size=64, progress=False))
  wd = str(tmp_path / "run")
  train_and_evaluate(cfg, wd)
  path = os.path.join(wd, "config.json")
  with open(path) as f:
    stored = json.load(f)
  flat = {**_flat_form(cfg), "data_fingerprint": stored["data_fingerprint"]}
  with open(path, "w") as f:
    json.dump(flat, f)
  # Same run: the stored file stays as it is.
  again = train_and_evaluate(cfg, wd)
  assert again["epochs_completed"] == 1
  with open(path) as f:
    assert json.load(f) == flat
  # More epochs continue it; the file is then written in the nested form.
  longer = train_and_evaluate(cfg.override({"run.epochs": 2}), wd)
  assert longer["epochs_completed"] == 2 and longer["resumed_from_epoch"] == 1
  with open(path) as f:
    assert json.load(f)["run"]["epochs"] == 2
  with pytest.raises(FileExistsError, match="model.topology.density"):
    train_and_evaluate(cfg.override({"run.epochs": 2,
                                     "model.topology.density": 0.5}), wd)


@pytest.mark.slow
def test_train_flags_fill_the_nested_config(tmp_path):
  common = [sys.executable, os.path.join(REPO_ROOT, "experiments", "train.py"),
            "--hidden=16", "--epochs=1", "--noprogress"]
  bad = subprocess.run(common + [f"--workdir={tmp_path / 'bad'}",
                                 "--topology=dense", "--density=0.5"],
                       capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2 and "takes no density" in bad.stderr
  ok = subprocess.run(common + [f"--workdir={tmp_path / 'ok'}",
                                "--topology=dense", "--lr=0.02"],
                      capture_output=True, text=True, timeout=300)
  assert ok.returncode == 0, ok.stderr[-2000:]
  with open(tmp_path / "ok" / "config.json") as f:
    stored = TrainConfig.from_dict(json.load(f))
  assert stored.model.topology == TopologyConfig("dense")
  assert stored.model.hidden == (16,) and stored.optimizer.lr == 0.02


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "adamw"])
@pytest.mark.parametrize("schedule, extra", [
    ("cosine", {}), ("warmup_cosine", {"warmup_epochs": 1}), ("step", {}),
    ("piecewise", {"lr_boundaries": (3,), "lr_values": (0.01,)})])
def test_optimizer_schedule_computed_once_gives_the_schedules_updates(
    rng, name, schedule, extra):
  """The optimiser evaluates its schedule once per step (a conditional XLA
  does not fuse into every parameter's update), with the updates of the
  plain optax optimiser on the same schedule, step by step."""
  import jax.numpy as jnp
  import numpy as np
  import optax
  cfg = OptimizerConfig(name=name, schedule=schedule, lr=0.1,
                        weight_decay=1e-3 if name == "adamw" else 0.0, **extra)
  tx, lr = cfg.make(epochs=2, steps_per_epoch=4)
  plain = {"sgd": lambda: optax.sgd(lr),
           "momentum": lambda: optax.sgd(lr, momentum=0.9, nesterov=True),
           "adam": lambda: optax.adam(lr),
           "adamw": lambda: optax.adamw(lr, weight_decay=1e-3)}[name]()
  params = {"w": jnp.asarray(rng.standard_normal((50, 3)), jnp.float32)}
  states = [tx.init(params), plain.init(params)]
  for _ in range(8):
    g = {"w": jnp.asarray(rng.standard_normal((50, 3)), jnp.float32)}
    outs = [jax.jit(t.update)(g, s, params) for t, s in zip((tx, plain), states)]
    np.testing.assert_allclose(outs[0][0]["w"], outs[1][0]["w"], rtol=1e-6,
                               atol=1e-9)
    states = [o[1] for o in outs]
    params = optax.apply_updates(params, outs[0][0])


def test_cosine_schedule_is_evaluated_once_in_the_compiled_update(rng):
  """Regression: XLA had fused the cosine into every parameter's update
  fusion (one cosine per parameter array, evaluated per element)."""
  import re
  import jax.numpy as jnp
  tx, _ = OptimizerConfig(name="momentum", schedule="cosine").make(
      epochs=2, steps_per_epoch=4)
  params = {f"p{i}": jnp.asarray(rng.standard_normal(40 + i), jnp.float32)
            for i in range(6)}
  state = tx.init(params)
  hlo = jax.jit(tx.update).lower(params, state, params).compile().as_text()
  computations = hlo.split("\n\n")
  with_cosine = [c for c in computations if " cosine(" in c]
  assert with_cosine, "no cosine at all: the test no longer sees the schedule"
  for c in with_cosine:  # only scalar computations (the conditional's branches)
    root = re.search(r"ROOT %\S+ = (\S+) ", c).group(1)
    assert root in ("f32[]", "(f32[])"), c


# -- configs as files, dotted overrides --------------------------------------------

def test_config_from_a_python_file_and_a_json_file(tmp_path):
  py = tmp_path / "mine.py"
  py.write_text("from snn_jax.training import TrainConfig\n"
                "def get_config():\n"
                "  return TrainConfig().override({'run.epochs': 4, "
                "'model.hidden': (16,)})\n")
  cfg = TrainConfig.from_file(str(py))
  assert cfg.run.epochs == 4 and cfg.model.hidden == (16,)
  js = tmp_path / "config.json"
  js.write_text(json.dumps(cfg.to_dict()))
  assert TrainConfig.from_file(str(js)) == cfg


@pytest.mark.parametrize("content, name, match", [
    ("x = 1\n", "a.py", "defines no get_config"),
    ("def get_config():\n  return 3\n", "b.py", "returned int"),
    ("{not json", "c.json", "is not JSON"),
    ("[1, 2]", "d.json", "must hold a JSON object"),
    ("", "e.yaml", "expected a .py file"),
])
def test_config_file_errors_say_what_is_wrong(tmp_path, content, name, match):
  path = tmp_path / name
  path.write_text(content)
  with pytest.raises(ValueError, match=match):
    TrainConfig.from_file(str(path))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    TrainConfig.from_file(str(tmp_path / "missing.py"))


def test_shipped_config_files_load():
  configs = os.path.join(REPO_ROOT, "configs")
  names = sorted(f for f in os.listdir(configs) if f.endswith(".py"))
  assert "digits.py" in names and "set_mlp_keras_mask.py" in names
  for name in names:
    cfg = TrainConfig.from_file(os.path.join(configs, name))
    assert isinstance(cfg, TrainConfig), name
  assert TrainConfig.from_file(os.path.join(configs, "digits.py")) == TrainConfig()


@pytest.mark.parametrize("changes, density, fan_in", [
    ({"model.topology.name": "dense"}, None, None),
    ({"model.topology.fan_in": 8}, None, 8),
    ({"model.topology.params": {"epsilon": 20}}, None, None),
    ({"model.topology.name": "radixnet"}, 0.1, None),
    ({"model.topology.fan_in": 8, "model.topology.density": None}, None, 8),
])
def test_a_density_nobody_set_yields_to_other_sizing(changes, density, fan_in):
  cfg = TrainConfig().override(changes)
  assert cfg.model.topology.density == density
  assert cfg.model.topology.fan_in == fan_in
  with pytest.raises(ValueError, match="takes no density"):
    TrainConfig().override({"model.topology.name": "dense",
                            "model.topology.density": 0.5})


def test_a_config_is_data_without_the_file_system(tmp_path):
  """Paths in a config are checked where they are read, so a config made
  (or loaded) elsewhere does not need them."""
  cfg = TrainConfig().override({
      "model.topology.directory": str(tmp_path / "nowhere"),
      "model.init_weights": str(tmp_path / "none.npz")})
  assert cfg.model.topology.directory.endswith("nowhere")
