"""``train_and_evaluate``: train a sparse MLP from a config into a workdir.

Workdir contract:
  ``config.json``    the run's config; a restart with a different config is
                     refused unless ``overwrite`` (only ``epochs`` may grow;
                     the data's location may change, its fingerprint not);
  ``metrics.jsonl``, ``metrics.csv``  one row per epoch: epoch, step,
                     train_loss, train_acc, test_loss, test_acc, wall_s,
                     epoch_s, nnz_params, dense_params, lr, rewired_blocks
                     (blocks moved by SET/RigL during the epoch); an
                     update due at the end of an epoch comes after the
                     epoch's evaluation (as SET's code evaluates before it
                     evolves the weights), so test_acc is the accuracy of
                     the trained, not the freshly rewired, network;
  ``checkpoints/``   orbax: model state (values, biases, norm statistics and
                     the topology index arrays), optimizer state, epoch --
                     one per completed epoch, so a killed run restarts at
                     the last completed epoch and loses at most one;
  ``topologies/``    optional per-epoch topology snapshots (NNSTD analysis):
                     ``epoch_<e>/layer_<l>.npz``, epoch 0 = at initialisation;
  ``summary.json``   final and best accuracy, timings, sizes, data source
                     and fingerprint, versions;
  ``curves.png``     loss and accuracy against epoch;
  ``tensorboard/``   the same metrics as TensorBoard events, and the
                     training loss of every step (``tensorboard --logdir``).
``config.json`` also records the data's fingerprint (``snn_jax.data``): a
workdir is never resumed, nor its summary rewritten, on other data than it
was trained on -- that is refused like a different config. Timings in the
summary come from the epochs' own measurements (``train_seconds``,
``samples_per_second``); ``total_seconds`` is written only by a process
that ran every epoch itself, and a finished run rerun as it is returns its
stored summary untouched.
A non-finite loss stops training with ``FloatingPointError`` before anything
is checkpointed, so the last good checkpoint survives. Every file is
written whole or not at all (metrics rows, summary and config through
``utils.atomic_write``; checkpoints by orbax's temporary-directory rename);
a workdir that cannot be written (full disk, read-only) stops the run with
``WorkdirWriteError`` saying which epochs are saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import threading
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from snn_jax import data as data_lib
from snn_jax import topology as topology_lib
from snn_jax.topology import Topology
from snn_jax.nn import (AlfordLeNet5, LeNet5, SparseMLP, TopologyVar,
                        load_dense_weights)
from snn_jax.sparse_training import Rewirer, SparseTrainingConfig
from snn_jax.training import parallel
from snn_jax.training.checkpoint import Checkpointer
from snn_jax.training.metrics import MetricWriter
from snn_jax.utils import atomic_write, device_info, versions

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "step", "piecewise")
MODELS = ("mlp", "lenet5", "lenet5_alford")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a training run depends on (saved as ``config.json``).

  Fields beyond the obvious ones:
    init: an initialiser name (``snn_jax.nn``), e.g. ``"sparse_he"`` or
      ``"truncated_normal:0.04"``; ``bias_init`` the biases' start value.
    output_activation: applied to the logits too (Alford et al. 2019: relu).
    schedule: ``"piecewise"`` uses ``lr`` before the first of
      ``lr_boundaries`` (optimizer steps) and ``lr_values[i]`` from
      boundary i on (Alford et al.: lr 0.2, boundaries (10000, 20000),
      values (0.1, 0.05)).
    decay_biases: whether ``weight_decay`` applies to biases too (False:
      weights only, as an L2 term ``wd·‖W‖²/2`` in the loss does under SGD).
    validation_split: ``"first:N"`` / ``"last:N"`` training examples held
      out (``Dataset.with_validation``); every epoch then also reports
      ``val_loss``/``val_acc`` on them.
    snapshot_epochs: with ``snapshot_topologies``, the epochs to snapshot
      (0 = at initialisation); empty = every epoch.
    sparse_training: ``"prune"`` is gradual magnitude pruning to
      ``prune_density`` between ``prune_begin_step`` and ``prune_end_step``
      every ``update_every`` steps (``snn_jax.sparse_training``).
  """
  dataset: str = "digits"
  model: str = "mlp"
  hidden: tuple[int, ...] = (256, 256)
  topology: str = "erdos_renyi"
  density: float | None = 0.1
  fan_in: int | None = None
  block_size: int | tuple[int, ...] = 1
  topology_params: dict[str, Any] = dataclasses.field(default_factory=dict)
  impl: str = "auto"
  init: str = "sparse_he"
  bias_init: float = 0.0
  activation: str = "relu"
  output_activation: str | None = None
  norm: str | None = None
  dropout: float = 0.0
  optimizer: str = "momentum"
  lr: float = 0.05
  schedule: str = "cosine"
  warmup_epochs: int = 0
  lr_boundaries: tuple[int, ...] = ()
  lr_values: tuple[float, ...] = ()
  momentum: float = 0.9
  weight_decay: float = 0.0
  decay_biases: bool = True
  batch_size: int = 128
  epochs: int = 10
  seed: int = 0
  data_dir: str | None = None
  tfds_data_dir: str | None = None
  tfds_manual_dir: str | None = None
  tfds_download: bool = False
  normalization: str = "global"
  data_split: str = "auto"
  validation_split: str | None = None
  split_seed: int | None = None
  snapshot_topologies: bool = False
  snapshot_epochs: tuple[int, ...] = ()
  progress: bool = True
  sparse_training: str = "static"
  zeta: float = 0.3
  update_every: int = 0
  regrow_init: str | None = None
  prune_density: float | None = None
  prune_begin_step: int = 0
  prune_end_step: int | None = None
  topology_dir: str | None = None
  init_weights: str | None = None
  data_parallel: bool = False
  shard_blocks: bool = False

  def __post_init__(self):
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"unknown optimizer {self.optimizer!r}; known: {OPTIMIZERS}")
    if self.schedule not in SCHEDULES:
      raise ValueError(f"unknown schedule {self.schedule!r}; known: {SCHEDULES}")
    if self.normalization not in data_lib.NORMALIZATIONS:
      raise ValueError(f"normalization must be one of {data_lib.NORMALIZATIONS}"
                       f", got {self.normalization!r}")
    if self.data_split not in data_lib.SPLITS:
      raise ValueError(f"data_split must be one of {data_lib.SPLITS}, got "
                       f"{self.data_split!r}")
    if self.dataset not in data_lib.DATASETS:
      raise ValueError(f"unknown dataset {self.dataset!r}; known: "
                       f"{', '.join(data_lib.DATASETS)}")
    topology_lib.spec(self.topology)  # unknown names raise, listing known
    if self.model not in MODELS:
      raise ValueError(f"unknown model {self.model!r}; known: {MODELS}")
    if self.model == "lenet5":
      unsupported = [n for n, bad in (
          ("sparse_training", self.sparse_training != "static"),
          ("norm", self.norm is not None), ("dropout", self.dropout != 0.0),
          ("data_parallel", self.data_parallel)) if bad]
      if unsupported:
        raise ValueError(f"model lenet5 supports static topologies without "
                         f"norm, dropout or data_parallel; unset {unsupported}")
    if self.model == "lenet5_alford":
      unsupported = [n for n, bad in (
          ("sparse_training", self.sparse_training not in ("static", "prune")),
          ("norm", self.norm is not None), ("dropout", self.dropout != 0.0),
          ("data_parallel", self.data_parallel),
          ("init", self.init != "sparse_he"), ("bias_init", self.bias_init),
          ("activation", self.activation != "relu"),
          ("output_activation", self.output_activation is not None)) if bad]
      if unsupported:
        raise ValueError(
            f"model lenet5_alford has the authors' fixed activations and "
            f"initialisation and trains static or gradually pruned topologies "
            f"without norm, dropout or data_parallel; unset {unsupported}")
      if len(self.hidden) != 2:
        raise ValueError(f"model lenet5_alford takes hidden=(conv2 channels, "
                         f"fully connected width), e.g. (50, 384); got "
                         f"{self.hidden}")
    from snn_jax.nn import get_activation, get_initializer
    get_initializer(self.init)  # unknown or malformed names raise
    get_activation(self.activation)
    if self.output_activation is not None:
      get_activation(self.output_activation)
    if self.validation_split is not None:
      data_lib.parse_validation_spec(self.validation_split)
    if self.schedule == "piecewise":
      b, v = tuple(self.lr_boundaries), tuple(self.lr_values)
      if not b or len(b) != len(v) or any(x < 1 for x in b) or list(b) != sorted(
          set(b)) or any(not x > 0 for x in v):
        raise ValueError(
            f"schedule 'piecewise' needs increasing positive lr_boundaries "
            f"(steps) and as many positive lr_values, got {b} and {v}")
    elif self.lr_boundaries or self.lr_values:
      raise ValueError("lr_boundaries/lr_values apply to schedule 'piecewise', "
                       f"not {self.schedule!r}")
    for name, v in (("batch_size", self.batch_size), ("epochs", self.epochs)):
      if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    if not self.lr > 0:
      raise ValueError(f"lr must be positive, got {self.lr}")
    if any(h < 1 for h in self.hidden):
      raise ValueError(f"hidden widths must be positive, got {self.hidden}")
    self.sparse_training_config()  # validates method, zeta, update_every
    if self.snapshot_epochs and (not self.snapshot_topologies or any(
        e < 0 for e in self.snapshot_epochs)):
      raise ValueError(f"snapshot_epochs {self.snapshot_epochs} need "
                       "snapshot_topologies and epochs >= 0")
    if self.shard_blocks and not self.data_parallel:
      raise ValueError("shard_blocks needs data_parallel")
    for name in ("topology_dir", "init_weights"):
      path = getattr(self, name)
      if path is not None and not os.path.exists(path):
        raise FileNotFoundError(f"{name} {path!r} does not exist")

  def snapshots_at(self, epoch: int) -> bool:
    """Whether the topology is snapshot after ``epoch`` (0: at start)."""
    return self.snapshot_topologies and (
        not self.snapshot_epochs or epoch in self.snapshot_epochs)

  @property
  def data_seed(self) -> int:
    """Seed of the train/held-out split for datasets split here (digits,
    the IDX test-set files): ``split_seed``, or ``seed`` when unset. Fix
    ``split_seed`` to compare seeds on one held-out set."""
    return self.seed if self.split_seed is None else self.split_seed

  def load_dataset(self) -> data_lib.Dataset:
    """The config's dataset (split with ``data_seed``), flattened."""
    ds = data_lib.load(
        self.dataset, data_dir=self.data_dir, tfds_data_dir=self.tfds_data_dir,
        manual_dir=self.tfds_manual_dir, download=self.tfds_download,
        seed=self.data_seed, normalization=self.normalization,
        split=self.data_split)
    return self.with_validation(ds)

  def with_validation(self, ds: data_lib.Dataset) -> data_lib.Dataset:
    """``ds`` with this config's validation part held out (unchanged when
    ``validation_split`` is None or ``ds`` already holds it); a dataset
    holding another validation part is refused."""
    if ds.validation_spec == self.validation_split:
      return ds
    if ds.validation_spec is not None:
      raise ValueError(f"the dataset holds validation part "
                       f"{ds.validation_spec!r}, the config asks for "
                       f"{self.validation_split!r}")
    return ds.with_validation(self.validation_split)

  def sparse_training_config(self) -> SparseTrainingConfig:
    return SparseTrainingConfig(
        method=self.sparse_training, zeta=self.zeta,
        update_every=self.update_every, regrow_init=self.regrow_init,
        seed=self.seed, prune_density=self.prune_density,
        prune_begin_step=self.prune_begin_step,
        prune_end_step=self.prune_end_step)

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    for name in _TUPLE_FIELDS:
      d[name] = list(getattr(self, name))
    if isinstance(self.block_size, tuple):
      d["block_size"] = list(self.block_size)
    return d


_TUPLE_FIELDS = ("hidden", "lr_boundaries", "lr_values", "snapshot_epochs")


def config_from_dict(raw: dict[str, Any]) -> TrainConfig:
  """The TrainConfig a ``config.json`` holds (JSON lists back to tuples;
  keys this version does not know are ignored, missing ones default)."""
  raw = dict(raw)
  for name in _TUPLE_FIELDS:
    if name in raw:
      raw[name] = tuple(raw[name])
  if isinstance(raw.get("block_size"), list):
    raw["block_size"] = tuple(raw["block_size"])
  known = {f.name for f in dataclasses.fields(TrainConfig)}
  return TrainConfig(**{k: v for k, v in raw.items() if k in known})


def build_topologies(config: TrainConfig, input_dim: int,
                     num_classes: int) -> list[topology_lib.Topology]:
  """The config's per-layer topologies: generated, or loaded from
  ``config.topology_dir`` (``layer_<l>.npz`` files, e.g. from prune.py).

  For ``model="lenet5"`` the two convolutions' channel graphs ``(1, 6)``
  and ``(6, 16)`` come first and are dense when generated; the generator
  builds the fully connected layers ``400 -> *hidden -> num_classes``."""
  if config.model == "lenet5_alford":
    return _alford_lenet5_topologies(config, input_dim, num_classes)
  lenet = config.model == "lenet5"
  if lenet and input_dim != 28 * 28:
    raise ValueError(f"model lenet5 needs 28x28 single-channel images (mnist, "
                     f"fashion_mnist); {config.dataset} has {input_dim} features")
  widths = [LeNet5.FC_INPUTS if lenet else input_dim, *config.hidden,
            num_classes]
  convs = [topology_lib.make("dense", a, b) for a, b in LeNet5.CONV_CHANNELS] \
      if lenet else []
  if config.topology_dir is not None:
    stack = topology_lib.load_stack(config.topology_dir, chained=not lenet)
    got = [(t.n_in, t.n_out) for t in stack]
    want = expected_layer_shapes(config, input_dim, num_classes)
    if got != want:
      raise ValueError(f"topology_dir {config.topology_dir!r} holds layers of "
                       f"shapes {got}, but the model, dataset and --hidden "
                       f"give {want}")
    return stack
  density = None if config.topology == "dense" else config.density
  fan_in = None if config.topology == "dense" else config.fan_in
  bs = list(config.block_size) if isinstance(config.block_size, (tuple, list)) \
      else config.block_size
  return convs + topology_lib.make_stack(
      config.topology, widths, density=density, fan_in=fan_in, block_size=bs,
      seed=config.seed, **config.topology_params)


def expected_layer_shapes(config: TrainConfig, input_dim: int,
                          num_classes: int) -> list[tuple[int, int]]:
  """``(n_in, n_out)`` of every weight layer the config's model has on data
  of ``input_dim`` features and ``num_classes`` classes."""
  if config.model == "lenet5_alford":
    return AlfordLeNet5.layer_shapes(config.hidden, num_classes)
  lenet = config.model == "lenet5"
  widths = [LeNet5.FC_INPUTS if lenet else input_dim, *config.hidden,
            num_classes]
  return (list(LeNet5.CONV_CHANNELS) if lenet else []) + list(
      zip(widths[:-1], widths[1:]))


def given_topologies(config: TrainConfig, topologies, input_dim: int,
                     num_classes: int) -> list[topology_lib.Topology]:
  """Checks topologies handed to ``train_and_evaluate`` against the model
  the config builds; returns them as a list."""
  stack = list(topologies)
  if not stack or not all(isinstance(t, topology_lib.Topology) for t in stack):
    raise TypeError("topologies must be a non-empty sequence of "
                    "snn_jax.topology.Topology")
  if config.topology_dir is not None:
    raise ValueError("give the topologies either as objects or as "
                     "config.topology_dir, not both")
  got = [(t.n_in, t.n_out) for t in stack]
  want = expected_layer_shapes(config, input_dim, num_classes)
  if got != want:
    raise ValueError(
        f"the given topologies have layer shapes {got}, but model "
        f"{config.model!r} with hidden={tuple(config.hidden)} on "
        f"{config.dataset} needs {want}: set the config's hidden widths to "
        "the topologies'")
  return stack


def _alford_lenet5_topologies(config: TrainConfig, input_dim: int,
                              num_classes: int) -> list[topology_lib.Topology]:
  """Weight-level topologies of ``AlfordLeNet5`` with ``hidden = (conv2
  channels, fully connected width)``: loaded from ``topology_dir``, or
  generated -- conv1 and the logits dense, conv2 and the fully connected
  layer from the config's topology and density."""
  if input_dim != 28 * 28:
    raise ValueError(f"model lenet5_alford needs 28x28 single-channel images "
                     f"(mnist, fashion_mnist); {config.dataset} has "
                     f"{input_dim} features")
  want = expected_layer_shapes(config, input_dim, num_classes)
  if config.topology_dir is not None:
    stack = topology_lib.load_stack(config.topology_dir, chained=False)
    got = [(t.n_in, t.n_out) for t in stack]
    if got != want:
      raise ValueError(f"topology_dir {config.topology_dir!r} holds layers of "
                       f"shapes {got}, but lenet5_alford with hidden="
                       f"{config.hidden} needs {want}")
    return stack
  sparse = {} if config.topology == "dense" else dict(
      density=config.density, fan_in=config.fan_in)
  out = []
  for l, (a, b) in enumerate(want):
    if l in (1, 2):
      out.append(topology_lib.make(config.topology, a, b, seed=config.seed + l,
                                   **sparse, **config.topology_params))
    else:
      out.append(topology_lib.make("dense", a, b))
  return out


def build_model(config: TrainConfig, topologies,
                rngs: nnx.Rngs) -> SparseMLP | LeNet5 | AlfordLeNet5:
  if config.model == "lenet5_alford":
    return AlfordLeNet5(topologies, impl=config.impl, rngs=rngs)
  if config.model == "lenet5":
    return LeNet5(topologies, init=config.init, impl=config.impl,
                  activation=config.activation, rngs=rngs)
  return SparseMLP(topologies, activation=config.activation, norm=config.norm,
                   dropout=config.dropout, init=config.init,
                   bias_init=config.bias_init,
                   output_activation=config.output_activation,
                   impl=config.impl, rngs=rngs)


def make_optimizer(config: TrainConfig, steps_per_epoch: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The config's optax optimiser and its learning-rate schedule."""
  total = config.epochs * steps_per_epoch
  warm = config.warmup_epochs * steps_per_epoch
  if config.schedule == "constant":
    lr = optax.constant_schedule(config.lr)
  elif config.schedule == "cosine":
    lr = optax.cosine_decay_schedule(config.lr, max(total, 1))
  elif config.schedule == "warmup_cosine":
    lr = optax.warmup_cosine_decay_schedule(0.0, config.lr, max(warm, 1),
                                            max(total, warm + 1))
  elif config.schedule == "step":  # x0.1 at 50% and 75% of training
    lr = optax.piecewise_constant_schedule(
        config.lr, {int(total * 0.5): 0.1, int(total * 0.75): 0.1})
  else:  # piecewise: absolute values from absolute steps
    values = (config.lr,) + tuple(config.lr_values)
    lr = optax.piecewise_constant_schedule(
        config.lr, {b: values[i + 1] / values[i]
                    for i, b in enumerate(config.lr_boundaries)})
  if config.optimizer == "sgd":
    tx = optax.sgd(lr)
  elif config.optimizer == "momentum":
    tx = optax.sgd(lr, momentum=config.momentum, nesterov=True)
  elif config.optimizer == "adam":
    tx = optax.adam(lr)
  mask = None if config.decay_biases else _weights_only
  if config.optimizer == "adamw":
    tx = optax.adamw(lr, weight_decay=config.weight_decay, mask=mask)
  elif config.weight_decay:
    tx = optax.chain(optax.add_decayed_weights(config.weight_decay, mask=mask),
                     tx)
  return tx, lr


def _weights_only(params):
  """Weight-decay mask: True for every parameter but biases."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: not any(getattr(k, "key", None) == "bias" for k in path),
      params)


def _loss_and_acc(model, x, y):
  logits = model(x)
  loss = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), y).mean()
  acc = (jnp.argmax(logits, -1) == y).mean()
  return loss, acc


@nnx.jit
def train_step(model: SparseMLP, optimizer: nnx.Optimizer, x, y):
  """One SGD step; returns (loss, accuracy) of the batch."""
  def loss_fn(model):
    return _loss_and_acc(model, x, y)
  (loss, acc), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
  optimizer.update(model, grads)
  return loss, acc


@nnx.jit
def eval_step(model: SparseMLP, x, y):
  loss, acc = _loss_and_acc(model, x, y)
  return loss * x.shape[0], acc * x.shape[0]


# Evaluation batches hold at most this many floats in the widest layer's
# activations (64 MiB of float32): 1024 examples up to width 16,384, fewer
# beyond (1024 examples through a 65,536-wide layer are 268 MB per
# activation; the giant benchmark's peak fell from 3.12 to 1.90 GB).
EVAL_ACTIVATION_FLOATS = 1 << 24


def eval_batch_size(model, train_batch_size: int) -> int:
  """Examples per evaluation batch: 1024, fewer where the widest layer
  would hold more than ``EVAL_ACTIVATION_FLOATS`` activations, never fewer
  than the training batch (whose activations fit already)."""
  widest = max(max(layer.n_in, layer.n_out) for layer in model.layers)
  return max(train_batch_size, min(1024, EVAL_ACTIVATION_FLOATS // widest))


def evaluate(model: SparseMLP, x: np.ndarray, y: np.ndarray,
             batch_size: int) -> tuple[float, float]:
  """Mean loss and accuracy over all of (x, y) (last partial batch included)."""
  model.eval()
  tot_loss = tot_acc = 0.0
  for xb, yb in data_lib.batches(x, y, batch_size, drop_remainder=False):
    l, a = eval_step(model, jnp.asarray(xb), jnp.asarray(yb))
    tot_loss += float(l)
    tot_acc += float(a)
  model.train()
  return tot_loss / len(x), tot_acc / len(x)


def _ckpt_filter():
  return nnx.Any(nnx.Param, nnx.BatchStat, TopologyVar)


def _restore(ckpt: Checkpointer, epoch: int, model: SparseMLP,
             optimizer: nnx.Optimizer) -> int:
  """Loads checkpoint ``epoch`` into model and optimizer; returns its epoch."""
  target = {"model": nnx.to_pure_dict(nnx.state(model, _ckpt_filter())),
            "opt": nnx.to_pure_dict(nnx.state(optimizer)),
            "epoch": 0}
  restored = ckpt.restore(epoch, jax.tree.map(ocp_abstract, target))
  ms = nnx.state(model, _ckpt_filter())
  nnx.replace_by_pure_dict(ms, restored["model"])
  nnx.update(model, ms)
  os_ = nnx.state(optimizer)
  nnx.replace_by_pure_dict(os_, restored["opt"])
  nnx.update(optimizer, os_)
  return int(restored["epoch"])


def restore_model(workdir: str, epoch: int | None = None) -> SparseMLP:
  """The model a finished (or interrupted) run left in ``workdir``: rebuilt
  from its ``config.json`` and ``summary.json`` widths, loaded from the
  checkpoint of ``epoch`` (default: the latest), in eval mode. The topology
  is the checkpointed one, so SET/RigL runs give their evolved connections."""
  paths = {n: os.path.join(workdir, n) for n in ("config.json", "summary.json")}
  for p in paths.values():
    if not os.path.exists(p):
      raise FileNotFoundError(f"{p} is missing: is {workdir!r} a finished "
                              "train_and_evaluate workdir?")
  with open(paths["config.json"]) as f:
    raw = json.load(f)
  # The starting weights only mattered at initialisation: the checkpoint
  # holds the trained ones, so a moved or deleted init file is no obstacle.
  raw["init_weights"] = None
  config = config_from_dict(raw)
  with open(paths["summary.json"]) as f:
    saved = json.load(f)
  # Summaries written before input_dim was recorded: the first width.
  input_dim = saved.get("input_dim", saved["widths"][0])
  topologies = build_topologies(config, input_dim, saved["widths"][-1])
  model = build_model(config, topologies, nnx.Rngs(params=config.seed,
                                                   dropout=config.seed + 1))
  ckpt = Checkpointer(workdir)
  try:
    epoch = ckpt.latest_epoch() if epoch is None else epoch
    if epoch is None:
      raise FileNotFoundError(f"no checkpoint in {ckpt.directory}")
    # Layers shrank during training (pruning), or the run was given
    # topologies that the config alone does not rebuild: take the
    # checkpoint's block counts (its indices then restore the structure).
    if config.sparse_training == "prune" or raw.get("given_topologies"):
      _match_checkpoint_shapes(ckpt, epoch, model)
    tx, _ = make_optimizer(config, 1)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    _restore(ckpt, epoch, model, optimizer)
  finally:
    ckpt.close()
  model.eval()
  return model


def _match_checkpoint_shapes(ckpt: Checkpointer, epoch: int, model) -> None:
  """Gives every layer of a ``SparseMLP`` the stored block count of the
  checkpoint (pruning shrinks layers during training; a freshly built
  model has the starting counts). Values are placeholders until the
  checkpoint is restored; build the optimizer after this call."""
  layers = ckpt.metadata(epoch)["model"]["layers"]
  for l, layer in enumerate(model.layers):
    stored = layers[str(l)] if str(l) in layers else layers[l]
    nnzb = int(stored["values"].shape[0])
    if nnzb == layer.nnz // (layer.block_size ** 2):
      continue
    bs = layer.block_size
    # Any valid structure with nnzb blocks (the first nnzb positions in
    # row-major order): the restore overwrites it.
    topo = layer.topology()
    rows, cols = np.divmod(np.arange(nnzb, dtype=np.int64), topo.n_col_blocks)
    placeholder = Topology(topo.n_in, topo.n_out, rows.astype(np.int32),
                           cols.astype(np.int32), block_size=bs,
                           name=topo.name, assume_sorted=True)
    layer.set_topology(placeholder, jnp.zeros((nnzb, bs, bs),
                                              layer.values.get_value().dtype),
                       allow_resize=True)


def _has_progress(workdir: str) -> bool:
  ckpts = os.path.join(workdir, "checkpoints")
  return (os.path.exists(os.path.join(workdir, "metrics.jsonl"))
          or (os.path.isdir(ckpts) and bool(os.listdir(ckpts))))


def _discard_run(workdir: str) -> None:
  for name in ("checkpoints", "topologies", "metrics.jsonl", "metrics.csv",
               "summary.json"):
    p = os.path.join(workdir, name)
    if os.path.isdir(p):
      shutil.rmtree(p)
    elif os.path.exists(p):
      os.remove(p)


# Fields a resumed run may change: epochs (to continue training), the
# progress bar, and where the data is read from -- the data's fingerprint,
# not its path, decides whether it is the same data (a clone in another
# place, a relative path instead of an absolute one).
_NOT_COMPARED = ("epochs", "progress", "data_dir", "tfds_data_dir",
                 "tfds_manual_dir")


def _prepare_workdir(config: TrainConfig, workdir: str, overwrite: bool,
                     fingerprint: dict[str, Any],
                     given_topologies: str | None = None) -> None:
  """Creates ``workdir`` or checks that the run there is this one: same
  config (``epochs`` may grow), same data (fingerprint ``id``) and, where
  the topologies were given as objects, the same topologies (their
  fingerprint, ``given_topologies`` in config.json). A different run is
  refused, or discarded with ``overwrite``."""
  path = os.path.join(workdir, "config.json")
  new = config.to_dict()
  if given_topologies is not None:
    new["given_topologies"] = given_topologies
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    old_fp = old.pop("data_fingerprint", None)
    # Fields added after a run was started compare at their defaults.
    defaults = TrainConfig().to_dict()
    diff = sorted(k for k in set(old) | set(new)
                  if k not in _NOT_COMPARED
                  and old.get(k, defaults.get(k)) != new.get(k, defaults.get(k)))
    data_problem = None
    if old_fp is None and _has_progress(workdir):
      data_problem = ("was started before data fingerprints were recorded, so "
                      "its data cannot be checked against this data "
                      f"(fingerprint {fingerprint['id']})")
    elif old_fp is not None and old_fp["id"] != fingerprint["id"]:
      data_problem = (f"was trained on data {old_fp['id']}, but this data is "
                      f"{fingerprint['id']} "
                      f"({data_lib.describe_difference(old_fp, fingerprint)})")
    if (diff or data_problem) and not overwrite:
      what = (f"holds a run with a different config (fields {diff})" if diff
              else data_problem)
      raise FileExistsError(
          f"workdir {workdir!r} {what}; use another --workdir or pass "
          "--overwrite to discard it")
    if diff or data_problem:
      _discard_run(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() == 0:
      with atomic_write(path) as f:
        json.dump({**new, "data_fingerprint": fingerprint}, f, indent=1)
  except OSError as e:
    raise WorkdirWriteError(
        e.errno, f"cannot write to workdir {workdir!r}: {e.strerror or e}; "
        "choose a writable --workdir (or free disk space)") from e


def _snapshot(model: SparseMLP, workdir: str, epoch: int) -> None:
  topology_lib.save_stack(model.topologies(),
                          os.path.join(workdir, "topologies", f"epoch_{epoch:03d}"))


def train_and_evaluate(config: TrainConfig, workdir: str, *,
                       overwrite: bool = False,
                       dataset: data_lib.Dataset | None = None,
                       topologies: Sequence[topology_lib.Topology] | None = None,
                       stop_after_epoch: int | None = None) -> dict[str, Any]:
  """Trains ``config`` into ``workdir`` (module docstring); resumes from the
  last checkpoint there. ``dataset`` overrides loading (tests, notebooks);
  ``topologies`` (one ``Topology`` per weight layer, shapes as the config's
  model needs) replace the config's topology fields -- recorded in
  config.json by fingerprint, so a resume with other topologies is refused;
  ``stop_after_epoch`` returns early after that epoch (a time-sliced or
  preemptible job continues later with the same call). Raising ``epochs`` on
  a finished run continues it, with the schedule recomputed for the new
  total.

  Returns the summary dict (also written to ``summary.json``).
  """
  t_start = time.perf_counter()
  # Everything that can fail on bad input happens before the workdir is
  # touched, so a corrected rerun into the same workdir is not refused.
  ds = config.with_validation((dataset or config.load_dataset()).flattened())
  if len(ds.x_train) < config.batch_size:
    raise ValueError(f"batch_size {config.batch_size} exceeds the "
                     f"{len(ds.x_train)} training examples")
  given = None
  if topologies is not None:
    topologies = given_topologies(config, topologies, ds.input_dim,
                                  ds.num_classes)
    given = parallel.topology_fingerprint(topologies)
  else:
    topologies = build_topologies(config, ds.input_dim, ds.num_classes)
  model = build_model(config, topologies, nnx.Rngs(params=config.seed,
                                                   dropout=config.seed + 1))
  if config.init_weights is not None:
    load_dense_weights(model, config.init_weights)
  _prepare_workdir(config, workdir, overwrite, ds.fingerprint, given)
  steps_per_epoch = data_lib.num_batches(len(ds.x_train), config.batch_size)
  tx, lr_schedule = make_optimizer(config, steps_per_epoch)
  rewirer = Rewirer(config.sparse_training_config(),
                    total_steps=config.epochs * steps_per_epoch)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  summary_path = os.path.join(workdir, "summary.json")
  # The workdir holds this config and data (_prepare_workdir checked).
  finished = finished_summary(workdir, config.epochs)
  if finished is not None:
    print(f"{workdir}: already complete ({config.epochs} epochs), nothing to do",
          flush=True)
    return finished
  ckpt = Checkpointer(workdir)
  start_epoch = 0
  latest = ckpt.latest_epoch()
  if latest is not None:
    if rewirer.changes_shapes:
      _match_checkpoint_shapes(ckpt, latest, model)
      optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    start_epoch = _restore(ckpt, latest, model, optimizer)
  if start_epoch >= config.epochs and os.path.exists(summary_path):
    ckpt.close()
    print(f"{workdir}: already complete ({config.epochs} epochs), nothing to do",
          flush=True)
    with open(summary_path) as f:
      return json.load(f)
  if start_epoch:
    print(f"resuming {workdir} from epoch {start_epoch}", flush=True)
  mesh, sharded_arrays = None, 0
  if config.data_parallel:
    mesh = parallel.data_mesh()
    parallel.check_batch_size(config.batch_size, mesh)
    sharded_arrays = parallel.place(mesh, model, optimizer,
                                    shard_blocks=config.shard_blocks)
  try:
    writer = MetricWriter(workdir, resume_epoch=start_epoch + 1)
  except OSError as e:
    ckpt.close()
    raise WorkdirWriteError(
        e.errno, f"cannot write the metrics in {workdir}: {e.strerror or e}"
        f"{f' ({e.filename})' if e.filename else ''}; nothing was changed -- "
        "free disk space or make the workdir writable, then run the same "
        "command again") from e
  if config.snapshots_at(0) and start_epoch == 0:
    _snapshot(model, workdir, 0)

  progress = None
  if config.progress:
    from tqdm.auto import tqdm
    progress = tqdm
  best_acc = max([r["test_acc"] for r in writer.rows] or [0.0])
  train_s = sum(r.get("epoch_s", 0.0) for r in writer.rows)
  step = start_epoch * steps_per_epoch
  eval_batch = eval_batch_size(model, config.batch_size)
  model.train()
  last_epoch = config.epochs if stop_after_epoch is None else min(
      config.epochs, stop_after_epoch)
  for epoch in range(start_epoch + 1, last_epoch + 1):
    t0 = time.perf_counter()
    losses, accs = [], []
    it = data_lib.batches(ds.x_train, ds.y_train, config.batch_size,
                          seed=config.seed * 100_003 + epoch)
    if progress is not None:
      it = progress(it, total=steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}",
                    leave=False)
    rewired = 0
    rewire_after_eval = None

    def rewire(xb, yb):
      n = sum(s["dropped"] for s in rewirer.update(model, optimizer, step,
                                                   xb, yb))
      if mesh is not None:  # rewired arrays come back on one device
        parallel.check_same_topology(model.topologies(), step=step)
        parallel.place(mesh, model, optimizer, shard_blocks=config.shard_blocks)
      return n
    for i, (xb, yb) in enumerate(it):
      if mesh is None:
        xb, yb = jnp.asarray(xb), jnp.asarray(yb)
      else:
        xb, yb = parallel.shard_batch(mesh, xb, yb)
      loss, acc = train_step(model, optimizer, xb, yb)
      losses.append(loss)
      accs.append(acc)
      step += 1
      end_of_epoch = i + 1 == steps_per_epoch
      if rewirer.due(step, end_of_epoch=end_of_epoch,
                     last_epoch=epoch == config.epochs):
        if end_of_epoch:  # the epoch's accuracy is measured before it
          rewire_after_eval = (xb, yb)
        else:
          rewired += rewire(xb, yb)
    losses = np.asarray(jax.device_get(losses))
    if not np.isfinite(losses).all():
      bad = int(np.argmin(np.isfinite(losses)))
      good = ckpt.latest_epoch()
      ckpt.close()
      kept = (f"last good checkpoint: epoch {good} in {ckpt.directory}"
              if good is not None else "no epoch had completed, so there is "
              "no checkpoint")
      raise FloatingPointError(
          f"non-finite training loss at epoch {epoch}, step {bad + 1} of the "
          f"epoch; training stopped and nothing was saved for this epoch "
          f"({kept}). Lower --lr or change --init/--optimizer.")
    epoch_s = time.perf_counter() - t0
    train_s += epoch_s
    test_loss, test_acc = evaluate(model, ds.x_test, ds.y_test, eval_batch)
    best_acc = max(best_acc, test_acc)
    val = {}
    if ds.x_val is not None:
      val_loss, val_acc = evaluate(model, ds.x_val, ds.y_val, eval_batch)
      val = {"val_loss": val_loss, "val_acc": val_acc}
    if rewire_after_eval is not None:
      rewired += rewire(*rewire_after_eval)
    row = {"epoch": epoch, "step": step,
           "train_loss": float(losses.mean()),
           "train_acc": float(np.mean(jax.device_get(accs))),
           "test_loss": test_loss, "test_acc": test_acc,
           "epoch_s": epoch_s, "wall_s": train_s,
           "samples_per_s": steps_per_epoch * config.batch_size / epoch_s,
           "nnz_params": model.nnz, "dense_params": model.dense_equivalent,
           "lr": float(lr_schedule(step)), "rewired_blocks": rewired, **val,
           **(topology_stats(model.topologies()) if rewirer.active else {})}
    if config.snapshots_at(epoch):
      _snapshot(model, workdir, epoch)
    _save_epoch(ckpt, writer, workdir, epoch, row, losses,
                {"model": nnx.to_pure_dict(nnx.state(model, _ckpt_filter())),
                 "opt": nnx.to_pure_dict(nnx.state(optimizer)),
                 "epoch": epoch})
    print(f"epoch {epoch:3d}  train loss {row['train_loss']:.4f} acc "
          f"{row['train_acc']:.4f}  test loss {test_loss:.4f} acc {test_acc:.4f}"
          + (f"  val acc {val['val_acc']:.4f}" if val else "")
          + f"  {epoch_s:.1f}s  nnz {model.nnz:,}", flush=True)
  ckpt.close()
  writer.close()
  last = writer.rows[-1] if writer.rows else {}
  epochs_here = len(writer.rows) - start_epoch
  process_s = time.perf_counter() - t_start
  summary = {
      "final_test_acc": last.get("test_acc"), "best_test_acc": best_acc,
      "final_train_loss": last.get("train_loss"), "epochs": config.epochs,
      "epochs_completed": len(writer.rows),
      **({"final_val_acc": last.get("val_acc"),
          "best_val_acc": max(r["val_acc"] for r in writer.rows)}
         if ds.x_val is not None and writer.rows else {}),
      # Each epoch's time was measured by the process that ran it; the data
      # fingerprint check guarantees every epoch saw this data, so the
      # sample count per epoch is this one.
      "train_seconds": train_s,
      "samples_per_second": (steps_per_epoch * config.batch_size * len(writer.rows)
                             / train_s if train_s > 0 else None),
      "total_seconds": process_s if start_epoch == 0 else None,
      "resumed_from_epoch": start_epoch, "epochs_this_process": epochs_here,
      "process_seconds": process_s,
      "devices": 1 if mesh is None else int(mesh.devices.size),
      "processes": jax.process_count(),
      # Block-value arrays (and optimizer moments) stored split over the
      # devices at the start (--shard_blocks).
      "sharded_arrays": sharded_arrays,
      "nnz_params": model.nnz, "dense_params": model.dense_equivalent,
      "density": model.nnz / model.dense_equivalent,
      "widths": [topologies[0].n_in] + [t.n_out for t in topologies],
      "input_dim": int(ds.input_dim), "model": config.model,
      "data_source": ds.source, "data_fingerprint": ds.fingerprint,
      "config": config.to_dict(),
      **{f"device_{k}": v for k, v in device_info().items()},
      **{f"version_{k}": v for k, v in versions().items()},
  }
  if jax.process_index() == 0:
    with atomic_write(os.path.join(workdir, "summary.json")) as f:
      json.dump(summary, f, indent=1)
    plot_curves(writer.rows, os.path.join(workdir, "curves.png"),
                title=f"{config.model} {config.topology} on {ds.name}")
  return summary


def plot_curves(rows: list[dict[str, Any]], path: str, title: str = "") -> None:
  """``curves.png``: training and held-out loss (left) and accuracy
  (right) against epoch, from the metrics rows of a run (validation too
  where the run has a validation part)."""
  if not rows:
    return
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  epochs = [r["epoch"] for r in rows]
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
  for key, label in (("train", "training (mean over the epoch)"),
                     ("test", "test"), ("val", "validation")):
    if f"{key}_loss" in rows[0]:
      ax_loss.plot(epochs, [r[f"{key}_loss"] for r in rows], marker=".",
                   label=label)
      ax_acc.plot(epochs, [r[f"{key}_acc"] for r in rows], marker=".",
                  label=label)
  ax_loss.set_ylabel("loss")
  ax_loss.set_yscale("log")
  ax_acc.set_ylabel("accuracy")
  for ax in (ax_loss, ax_acc):
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def topology_stats(stack: list[Topology]) -> dict[str, float]:
  """Per-layer statistics of a dynamic run's topology after an epoch's
  updates (metrics row and TensorBoard): the spread of the output units'
  fan-in (``layer<l>_fan_in_std``; SET/RigL concentrate connections on
  useful inputs, Liu et al. 2020) and how many output units have no input
  left (``layer<l>_zero_fan_in``)."""
  out = {}
  for l, t in enumerate(stack):
    fan_in = t.fan_in()
    out[f"layer{l}_fan_in_std"] = float(fan_in.std())
    out[f"layer{l}_zero_fan_in"] = int((fan_in == 0).sum())
  return out


class WorkdirWriteError(OSError):
  """The workdir could not be written (disk full, read-only, permissions).
  The message says what was saved and how to resume; ``__cause__`` is the
  original error."""

  def __str__(self) -> str:
    return self.strerror or super().__str__()


def _save_epoch(ckpt: Checkpointer, writer: MetricWriter, workdir: str,
                epoch: int, row: dict[str, Any], step_losses: np.ndarray,
                state: dict[str, Any]) -> None:
  """Saves one finished epoch: its metrics row, then its checkpoint.

  The row goes first (written atomically), so a crash or kill between the
  two leaves a row without a checkpoint, which a restart drops and redoes
  -- never a checkpoint whose row is missing. Ctrl-C waits until both are
  written. A write that fails (full disk, read-only workdir) raises
  :class:`WorkdirWriteError` saying which epochs are saved."""
  try:
    with _interrupts_deferred():
      writer.write(row, step_losses=step_losses)
      ckpt.save(epoch, state)
  except OSError as e:
    try:
      saved = ckpt.latest_epoch()
    except Exception:  # the checkpoint directory itself may be unreadable
      saved = None
    saved = saved if saved is not None and saved < epoch else None
    what = (f"epochs 1-{saved} are saved" if saved else "no epoch is saved")
    resume = f"resume from epoch {(saved or 0) + 1}"
    raise WorkdirWriteError(
        e.errno, f"could not save epoch {epoch} in {workdir}: "
        f"{e.strerror or e}{f' ({e.filename})' if e.filename else ''}; "
        f"{what} -- free disk space or make the workdir writable, then run "
        f"the same command again to {resume}") from e


@contextlib.contextmanager
def _interrupts_deferred():
  """Ctrl-C (SIGINT) inside the block takes effect when it ends, so a
  checkpoint and its metrics row are written together or not at all (an
  interrupted orbax save leaves worker threads failing noisily). Only the
  main thread can install signal handlers; elsewhere this does nothing."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  caught = []
  previous = signal.signal(signal.SIGINT, lambda *a: caught.append(a))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
  if caught:
    raise KeyboardInterrupt


def finished_summary(workdir: str, epochs: int) -> dict[str, Any] | None:
  """The stored summary of the ``train_and_evaluate`` run in ``workdir``
  when it completed ``epochs`` epochs, else None. Checkpoints are not
  needed: a result committed without them is still recognised as complete.
  (Summaries from before ``epochs_completed`` existed give None; resuming
  decides those by their checkpoint.)"""
  path = os.path.join(workdir, "summary.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    summary = json.load(f)
  if summary.get("epochs_completed") == epochs == summary.get("epochs"):
    return summary
  return None


def ocp_abstract(x):
  """ShapeDtypeStruct of an array leaf (plain Python values pass through)."""
  if isinstance(x, (jax.Array, np.ndarray)):
    return jax.ShapeDtypeStruct(x.shape, x.dtype)
  return x
