"""``TrainConfig``: everything a training run depends on, as nested frozen
dataclasses, each validating its own rules once at construction.

    TrainConfig
      data       DataConfig            (snn_jax.data)       what is read, how
      model      ModelConfig           (snn_jax.nn)         network, widths, init
        topology TopologyConfig        (snn_jax.topology)   family, density, blocks
      optimizer  OptimizerConfig       (here)               optax optimiser, schedule
      sparse     SparseTrainingConfig  (snn_jax.sparse_training)  SET/RigL/prune
      run        RunConfig             (here)               epochs, batch, seed, ...

Change a config with ``dataclasses.replace`` on its parts, or with dotted
paths: ``config.override({"run.epochs": 3, "model.topology.density": 0.05})``.
``to_dict``/``from_dict`` round-trip it through JSON exactly (``config.json``);
``from_dict`` also reads the flat ``config.json`` files written before the
config was nested, through ``FLAT_NAMES`` -- the same table that maps the
binaries' flag names onto the config.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from snn_jax.data import DataConfig
from snn_jax.nn import ModelConfig
from snn_jax.sparse_training import SparseTrainingConfig
from snn_jax.topology import TopologyConfig
from snn_jax.utils.config import ConfigPart

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "step", "piecewise")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig(ConfigPart):
  """The optax optimiser and its learning-rate schedule.

  Attributes:
    name: ``"sgd"``, ``"momentum"`` (SGD with momentum; Nesterov's unless
      ``nesterov=False``), ``"adam"`` or ``"adamw"``.
    lr: peak (or constant) learning rate.
    schedule: ``"constant"``, ``"cosine"`` (to 0 over training),
      ``"warmup_cosine"`` (``warmup_epochs`` linear warm-up), ``"step"``
      (x0.1 at 50 % and 75 % of training) or ``"piecewise"``: ``lr`` before
      the first of ``lr_boundaries`` (optimizer steps), ``lr_values[i]``
      from boundary i on (Alford et al. 2019: lr 0.2, boundaries
      (10000, 20000), values (0.1, 0.05)).
    momentum, nesterov: for ``"momentum"``; ``nesterov=False`` is the
      heavy-ball form (Keras' and PyTorch's ``SGD(momentum=...)``).
    restart_every_epoch: the optimizer's state (momentum, Adam's moments)
      starts afresh at every epoch, as in SET's Keras-mask code, which
      rebuilds its model and SGD after each epoch's rewiring
      (:func:`restart_every`).
    weight_decay: decoupled for ``"adamw"``, else added to the gradient;
      ``decay_biases=False`` applies it to weights only (an L2 term
      ``wd·‖W‖²/2`` in the loss under SGD).
  """
  name: str = "momentum"
  lr: float = 0.05
  schedule: str = "cosine"
  warmup_epochs: int = 0
  lr_boundaries: tuple[int, ...] = ()
  lr_values: tuple[float, ...] = ()
  momentum: float = 0.9
  nesterov: bool = True
  restart_every_epoch: bool = False
  weight_decay: float = 0.0
  decay_biases: bool = True

  def __post_init__(self):
    object.__setattr__(self, "lr_boundaries",
                       tuple(int(b) for b in self.lr_boundaries))
    object.__setattr__(self, "lr_values", tuple(float(v) for v in self.lr_values))
    if self.name not in OPTIMIZERS:
      raise ValueError(f"unknown optimizer {self.name!r}; known: {OPTIMIZERS}")
    if self.schedule not in SCHEDULES:
      raise ValueError(f"unknown schedule {self.schedule!r}; known: {SCHEDULES}")
    if not self.lr > 0:
      raise ValueError(f"lr must be positive, got {self.lr}")
    if self.warmup_epochs < 0 or self.weight_decay < 0:
      raise ValueError(f"warmup_epochs and weight_decay must be >= 0, got "
                       f"{self.warmup_epochs} and {self.weight_decay}")
    b, v = self.lr_boundaries, self.lr_values
    if self.schedule == "piecewise":
      if not b or len(b) != len(v) or any(x < 1 for x in b) or list(b) != sorted(
          set(b)) or any(not x > 0 for x in v):
        raise ValueError(
            f"schedule 'piecewise' needs increasing positive lr_boundaries "
            f"(steps) and as many positive lr_values, got {b} and {v}")
    elif b or v:
      raise ValueError("lr_boundaries/lr_values apply to schedule 'piecewise', "
                       f"not {self.schedule!r}")
    if self.restart_every_epoch and self.schedule != "constant":
      raise ValueError(
          "restart_every_epoch re-initialises the whole optimizer state, a "
          f"schedule's step count included: use schedule 'constant', not "
          f"{self.schedule!r}")

  def make(self, *, epochs: int, steps_per_epoch: int
           ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax optimiser and its learning-rate schedule for a run of
    ``epochs`` epochs of ``steps_per_epoch`` steps."""
    total = epochs * steps_per_epoch
    warm = self.warmup_epochs * steps_per_epoch
    if self.schedule == "constant":
      lr = optax.constant_schedule(self.lr)
    elif self.schedule == "cosine":
      lr = optax.cosine_decay_schedule(self.lr, max(total, 1))
    elif self.schedule == "warmup_cosine":
      lr = optax.warmup_cosine_decay_schedule(0.0, self.lr, max(warm, 1),
                                              max(total, warm + 1))
    elif self.schedule == "step":  # x0.1 at 50% and 75% of training
      lr = optax.piecewise_constant_schedule(
          self.lr, {int(total * 0.5): 0.1, int(total * 0.75): 0.1})
    else:  # piecewise: absolute values from absolute steps
      values = (self.lr,) + self.lr_values
      lr = optax.piecewise_constant_schedule(
          self.lr, {b: values[i + 1] / values[i]
                    for i, b in enumerate(self.lr_boundaries)})
    mask = None if self.decay_biases else _weights_only
    step_size = lr if self.schedule == "constant" else _computed_once(lr)
    if self.name == "adamw":
      return self._restarted(optax.adamw(
          step_size, weight_decay=self.weight_decay, mask=mask),
          steps_per_epoch), lr
    if self.name == "sgd":
      tx = optax.sgd(step_size)
    elif self.name == "momentum":
      tx = optax.sgd(step_size, momentum=self.momentum,
                     nesterov=self.nesterov)
    else:
      tx = optax.adam(step_size)
    if self.weight_decay:
      tx = optax.chain(optax.add_decayed_weights(self.weight_decay, mask=mask),
                       tx)
    return self._restarted(tx, steps_per_epoch), lr

  def _restarted(self, tx, steps_per_epoch: int):
    return (restart_every(tx, steps_per_epoch) if self.restart_every_epoch
            else tx)





class RestartState(NamedTuple):
  """:func:`restart_every`'s state: updates so far and the inner state."""
  count: jax.Array
  inner: optax.OptState


def restart_every(tx: optax.GradientTransformation, steps: int
                  ) -> optax.GradientTransformation:
  """``tx`` whose state is re-initialised (``tx.init(params)``) before
  every ``steps``-th update after the first, i.e. at the start of every
  epoch of ``steps`` updates: SET's Keras-mask code (Mocanu et al. 2018,
  ``set_mlp_keras_cifar10.py``) compiles a fresh ``SGD(momentum=0.9)``
  after each epoch, so momentum restarts at zero. Everything in ``tx``'s
  state restarts, a learning-rate schedule's step count too (the config
  allows it with a constant rate only); the updates need ``params``."""
  if not (isinstance(steps, int) and steps >= 1):
    raise ValueError(f"restart_every needs a positive number of steps, got "
                     f"{steps!r}")

  def init(params):
    return RestartState(jnp.zeros((), jnp.int32), tx.init(params))

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("restart_every re-initialises the state from the "
                       "parameters: pass params to update()")
    restart = (state.count > 0) & (state.count % steps == 0)
    inner = jax.lax.cond(restart, lambda: tx.init(params),
                         lambda: state.inner)
    updates, inner = tx.update(updates, inner, params)
    return updates, RestartState(state.count + 1, inner)

  return optax.GradientTransformation(init, update)


def _computed_once(schedule: optax.Schedule) -> optax.Schedule:
  """``schedule``, evaluated once per step inside a compiled update.

  XLA fuses the learning-rate scalar into every parameter's update and, on
  CPU, evaluates it there for each element: a cosine schedule cost 0.26-0.48
  ms of a 2.6 ms SET-MLP step (130,000 cosines;
  ``benchmarks/lr_schedule_step.py``, BUILD_NOTES.md). A
  conditional's result is not fused into its consumers, so the scalar is
  computed once and passed in. Both branches are the schedule: the values
  are the schedule's own. (``lax.optimization_barrier`` would say this
  directly, but XLA's CPU pipeline drops it before fusion.)"""
  def once(count):
    return jax.lax.cond(count >= 0, schedule, schedule, count)
  return once


def _weights_only(params):
  """Weight-decay mask: True for every parameter but biases."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: not any(getattr(k, "key", None) == "bias" for k in path),
      params)


@dataclasses.dataclass(frozen=True)
class RunConfig(ConfigPart):
  """How long, in what batches, from which seed, and where it runs.

  Attributes:
    epochs, batch_size: training length and batch.
    seed: seeds the topology, the initial weights, the data order, the
      data split (unless ``DataConfig.split_seed``) and the random growth
      of SET/RigL (unless ``SparseTrainingConfig.seed``).
    progress: show a progress bar.
    snapshot_topologies: save the topology at ``snapshot_epochs`` (0 = at
      initialisation; empty = every epoch) for NNSTD analysis.
    data_parallel: split every batch over all devices (and processes);
      ``shard_blocks`` also splits large layers' blocks over them.
  """
  epochs: int = 30
  batch_size: int = 128
  seed: int = 0
  progress: bool = True
  snapshot_topologies: bool = False
  snapshot_epochs: tuple[int, ...] = ()
  data_parallel: bool = False
  shard_blocks: bool = False

  def __post_init__(self):
    object.__setattr__(self, "snapshot_epochs",
                       tuple(int(e) for e in self.snapshot_epochs))
    for name in ("batch_size", "epochs"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.snapshot_epochs and (not self.snapshot_topologies or any(
        e < 0 for e in self.snapshot_epochs)):
      raise ValueError(f"snapshot_epochs {self.snapshot_epochs} need "
                       "snapshot_topologies and epochs >= 0")
    if self.shard_blocks and not self.data_parallel:
      raise ValueError("shard_blocks needs data_parallel")

  def snapshots_at(self, epoch: int) -> bool:
    """Whether the topology is snapshot after ``epoch`` (0: at start)."""
    return self.snapshot_topologies and (
        not self.snapshot_epochs or epoch in self.snapshot_epochs)





# The config's parts by dotted path, outermost first.
SECTIONS: dict[str, type] = {
    "data": DataConfig, "model": ModelConfig, "model.topology": TopologyConfig,
    "optimizer": OptimizerConfig, "sparse": SparseTrainingConfig,
    "run": RunConfig}


def _fields(path: str) -> list[str]:
  return [f.name for f in dataclasses.fields(SECTIONS[path])]


def leaf_paths() -> list[str]:
  """Every settable leaf of a TrainConfig as a dotted path."""
  out = []
  for section in SECTIONS:
    for name in _fields(section):
      path = f"{section}.{name}"
      if path not in SECTIONS:
        out.append(path)
  return out


# Flat names -- the binaries' flags, and the fields of config.json files
# written before the config was nested -- and the path each one sets.
FLAT_NAMES: dict[str, str] = {
    "dataset": "data.name", "data_dir": "data.data_dir",
    "tfds_data_dir": "data.tfds_data_dir",
    "tfds_manual_dir": "data.tfds_manual_dir",
    "tfds_download": "data.tfds_download",
    "normalization": "data.normalization", "data_split": "data.split",
    "validation_split": "data.validation", "split_seed": "data.split_seed",
    "model": "model.name", "hidden": "model.hidden",
    "topology": "model.topology.name", "density": "model.topology.density",
    "fan_in": "model.topology.fan_in",
    "block_size": "model.topology.block_size",
    "topology_params": "model.topology.params",
    "topology_dir": "model.topology.directory", "impl": "model.impl",
    "init": "model.init", "bias_init": "model.bias_init",
    "activation": "model.activation",
    "output_activation": "model.output_activation", "norm": "model.norm",
    "dropout": "model.dropout", "init_weights": "model.init_weights",

    "optimizer": "optimizer.name", "lr": "optimizer.lr",
    "schedule": "optimizer.schedule",
    "warmup_epochs": "optimizer.warmup_epochs",
    "lr_boundaries": "optimizer.lr_boundaries",
    "lr_values": "optimizer.lr_values", "momentum": "optimizer.momentum",
    "weight_decay": "optimizer.weight_decay",
    "decay_biases": "optimizer.decay_biases",

    "sparse_training": "sparse.method", "zeta": "sparse.zeta",
    "update_every": "sparse.update_every", "regrow_init": "sparse.regrow_init",
    "prune_density": "sparse.prune_density",
    "prune_begin_step": "sparse.prune_begin_step",
    "prune_end_step": "sparse.prune_end_step",
    "epochs": "run.epochs", "batch_size": "run.batch_size", "seed": "run.seed",
    "progress": "run.progress",
    "snapshot_topologies": "run.snapshot_topologies",
    "snapshot_epochs": "run.snapshot_epochs",
    "data_parallel": "run.data_parallel", "shard_blocks": "run.shard_blocks",
}


@dataclasses.dataclass(frozen=True)
class TrainConfig(ConfigPart):
  """A training run (``train_and_evaluate``; saved as ``config.json``):
  its data, model, optimiser, sparse training and run settings (module
  docstring). Parts may be given as dicts (``from_dict`` of that part).
  Rules that span parts are checked here: LeNet-5 trains static
  topologies or SET/RigL, and Alford's LeNet-5 also gradual pruning,
  without ``data_parallel``."""
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
  sparse: SparseTrainingConfig = dataclasses.field(
      default_factory=SparseTrainingConfig)
  run: RunConfig = dataclasses.field(default_factory=RunConfig)

  def __post_init__(self):
    for name in ("data", "model", "optimizer", "sparse", "run"):
      cls, part = SECTIONS[name], getattr(self, name)
      if isinstance(part, Mapping):
        object.__setattr__(self, name, cls.from_dict(part))
      elif not isinstance(part, cls):
        raise TypeError(f"TrainConfig.{name} must be a {cls.__name__}, got "
                        f"{type(part).__name__}")
    allowed = {"mlp": None, "lenet5": ("static", "set", "rigl"),
               "lenet5_alford": ("static", "prune", "set", "rigl")
               }[self.model.name]
    if allowed is not None:
      bad = [n for n, b in (("sparse.method", self.sparse.method not in allowed),
                            ("run.data_parallel", self.run.data_parallel)) if b]
      if bad:
        raise ValueError(f"model {self.model.name} trains {', '.join(allowed)}"
                         f" topologies without data_parallel; unset {bad}")

  @property
  def rewiring(self) -> SparseTrainingConfig:
    """``sparse`` with its seed resolved (None: the run's seed)."""
    if self.sparse.seed is not None:
      return self.sparse
    return self.sparse.replace(seed=self.run.seed)

  def load_dataset(self):
    """The config's dataset (``DataConfig.load`` with the run's seed)."""
    return self.data.load(self.run.seed)


  def override(self, changes: Mapping[str, Any]) -> "TrainConfig":
    """A copy with leaves (or whole parts) set by dotted path, e.g.
    ``{"run.epochs": 3, "model.topology": TopologyConfig("dense")}``; each
    changed part is rebuilt, so its rules are checked again. Unknown paths
    raise ``KeyError`` naming the part's fields.

    Where the changes make the topology dense, or size it by ``fan_in`` or
    SET's ``epsilon``, without setting ``model.topology.density``, the
    density kept from before is dropped (:func:`sized_otherwise`):
    ``{"model.topology.name": "dense"}`` works on a config whose topology
    had a density."""
    changes = dict(changes)
    topology_keys = {"model.topology.name", "model.topology.fan_in",
                     "model.topology.params"}
    if (topology_keys & set(changes)
        and "model.topology.density" not in changes
        and "model.topology" not in changes):
      topo = self.model.topology
      after = {"name": changes.get("model.topology.name", topo.name),
               "fan_in": changes.get("model.topology.fan_in", topo.fan_in),
               "params": changes.get("model.topology.params", topo.params)}
      if sized_otherwise(after):
        changes["model.topology.density"] = None
        if after["name"] == "dense":
          changes["model.topology.fan_in"] = None
    return _override(self, "", changes)

  @classmethod
  def from_file(cls, path: str) -> "TrainConfig":
    """A config kept as a file: ``.json`` (``to_dict``'s form, as
    ``config.json``) or ``.py`` defining ``get_config()`` that returns a
    ``TrainConfig`` (or its dict), as the Flax examples keep theirs
    (``configs/`` has the paper setups). Raises ``FileNotFoundError`` or
    ``ValueError`` saying what is wrong with the file."""
    import importlib.util
    import json
    import os
    if not os.path.isfile(path):
      raise FileNotFoundError(f"config file {path!r} does not exist")
    if path.endswith(".json"):
      with open(path) as f:
        try:
          raw = json.load(f)
        except json.JSONDecodeError as e:
          raise ValueError(f"config file {path!r} is not JSON: {e}") from None
      if not isinstance(raw, Mapping):
        raise ValueError(f"config file {path!r} must hold a JSON object")
      return cls.from_dict(raw)
    if not path.endswith(".py"):
      raise ValueError(f"config file {path!r}: expected a .py file with "
                       "get_config() or a .json file")
    spec = importlib.util.spec_from_file_location(
        f"_snn_jax_config_{abs(hash(os.path.abspath(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
      raise ValueError(f"config file {path!r} defines no get_config()")
    config = get_config()
    if isinstance(config, Mapping):
      config = cls.from_dict(config)
    if not isinstance(config, cls):
      raise ValueError(f"get_config() in {path!r} returned "
                       f"{type(config).__name__}, not a TrainConfig")
    return config


  @classmethod
  def from_dict(cls, raw: Mapping[str, Any]) -> "TrainConfig":
    """The config a ``config.json`` holds: nested (``to_dict``) or the flat
    form written before nesting. Keys this version does not know (and
    run records such as ``data_fingerprint``) are ignored; missing ones
    take their defaults."""
    nested = normalised_dict(raw)
    return cls(**{name: SECTIONS[name].from_dict(part)
                  for name, part in nested.items()})

  @classmethod
  def from_flat(cls, values: Mapping[str, Any],
                base: "TrainConfig | None" = None) -> "TrainConfig":
    """``base`` (default: the defaults) with ``values`` given by flat name
    (``FLAT_NAMES``: the binaries' flag names) set."""
    unknown = sorted(set(values) - set(FLAT_NAMES))
    if unknown:
      raise KeyError(f"unknown flat config names {unknown}; known: "
                     f"{', '.join(sorted(FLAT_NAMES))}")
    return (base or cls()).override({FLAT_NAMES[k]: v for k, v in values.items()})


def _override(obj, prefix: str, changes: dict[str, Any]):
  direct, nested = {}, {}
  names = [f.name for f in dataclasses.fields(obj)]
  for path, value in changes.items():
    head, _, rest = path.partition(".")
    if head not in names:
      where = prefix.rstrip(".") or "TrainConfig"
      raise KeyError(f"{where} has no field {head!r} (in {prefix + path!r}); "
                     f"its fields: {', '.join(names)}")
    if rest:
      nested.setdefault(head, {})[rest] = value
    else:
      direct[head] = value
  for head, sub in nested.items():
    base = direct.get(head, getattr(obj, head))
    if isinstance(base, Mapping):
      base = SECTIONS[prefix + head].from_dict(base)
    direct[head] = _override(base, f"{prefix}{head}.", sub)
  return dataclasses.replace(obj, **direct)


def _get(nested: Mapping[str, Any], path: str):
  for key in path.split("."):
    nested = nested[key]
  return nested


def _set(nested: dict[str, Any], path: str, value: Any) -> None:
  *heads, last = path.split(".")
  for key in heads:
    nested = nested[key]
  nested[last] = value


def normalised_dict(raw: Mapping[str, Any]) -> dict[str, Any]:
  """``raw`` (nested or flat ``config.json`` content) as a complete nested
  dict: defaults where a key is missing, unknown keys dropped, flat names
  mapped through ``FLAT_NAMES``. Nothing is validated (a stored path may no
  longer exist), so stored runs can be compared field by field."""
  out = TrainConfig().to_dict()
  # The flat form has "model" and "optimizer" too, as names (strings).
  if any(isinstance(raw.get(name), Mapping)
         for name in ("data", "model", "optimizer", "sparse", "run")):
    for path in leaf_paths():
      try:
        value = _get(raw, path)
      except (KeyError, TypeError):
        continue
      _set(out, path, value)
    return out
  # The flat form: density was not cleared for dense, nor where fan_in or
  # SET's epsilon sized the layers (the generators ignored it there).
  for name, value in raw.items():
    if name in FLAT_NAMES:
      _set(out, FLAT_NAMES[name], value)
  topo = out["model"]["topology"]
  if sized_otherwise(topo):
    topo["density"] = None
    if topo["name"] == "dense":
      topo["fan_in"] = None
  return out


def sized_otherwise(topology: Mapping[str, Any]) -> bool:
  """Whether a topology (``name``, ``fan_in``, ``params``) is sized by
  something other than a density -- dense, a fan-in, or SET's epsilon --
  so that a density nobody set for it yields."""
  return (topology["name"] == "dense" or topology.get("fan_in") is not None
          or "epsilon" in (topology.get("params") or {}))


def flat_items(config_dict: Mapping[str, Any]) -> dict[str, Any]:
  """``{dotted path: value}`` of every leaf of a nested config dict."""
  return {path: _get(config_dict, path) for path in leaf_paths()}
