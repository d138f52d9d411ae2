"""``train_and_evaluate``: train a model from a config into a workdir.

Connections that change (SET, RigL, gradual pruning) change through one
engine, ``sparse_training.SparseOptimizer``, on device: inside the step
every ``update_every`` steps, or with ``update_every=0`` after each
epoch's evaluation.

Workdir contract:
  ``config.json``    the run's config; a restart with a different config is
                     refused unless ``overwrite`` (only ``epochs`` may grow;
                     the data's location may change, its fingerprint not);
  ``metrics.jsonl``, ``metrics.csv``  one row per epoch: epoch, step,
                     train_loss, train_acc, test_loss, test_acc, wall_s,
                     epoch_s, nnz_params, dense_params, lr, rewired_blocks
                     (blocks moved by SET/RigL, or pruned, during the
                     epoch; nnz_params leaves pruned blocks out); with
                     ``update_every=0`` the update after an epoch comes
                     after its evaluation (as SET's code evaluates before
                     it evolves the weights), so test_acc is the accuracy
                     of the trained, not the freshly rewired, network;
  ``checkpoints/``   orbax: model state (values, biases, norm statistics and
                     the topology index arrays), optimizer state, epoch --
                     one per completed epoch, so a killed run restarts at
                     the last completed epoch and loses at most one;
  ``topology/``      where the topologies were given as objects
                     (``topologies=``): them, ``layer_<l>.npz`` as
                     ``topology.save_stack`` writes (the run's record of
                     what it was given; ``load_stack`` reads it);
  ``topologies/``    optional per-epoch topology snapshots (NNSTD analysis):
                     ``epoch_<e>/layer_<l>.npz``, epoch 0 = at initialisation;
  ``summary.json``   final and best accuracy, timings, sizes, data source
                     and fingerprint, versions;
  ``diverged.json``  where the last attempt stopped at a non-finite loss:
                     epoch, step and message (``diverged_record``), so a
                     report over committed results tells a diverged run
                     from an unfinished one; removed when the run completes;
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
import functools
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
from snn_jax.nn import AlfordLeNet5, LeNet5, SparseMLP, TopologyVar
from snn_jax.sparse_training import DynamicSparsity, SparseOptimizer
from snn_jax.training import parallel
from snn_jax.training.config import (TrainConfig, flat_items,
                                     normalised_dict)
from snn_jax.training.checkpoint import Checkpointer
from snn_jax.training.metrics import MetricWriter
from snn_jax.utils import atomic_write, device_info, versions

def build_topologies(config: TrainConfig, input_dim: int,
                     num_classes: int) -> list[topology_lib.Topology]:
  """The config's per-layer topologies on data of ``input_dim`` features
  and ``num_classes`` classes (``ModelConfig.make_topologies`` seeded by
  the run's seed)."""
  return config.model.make_topologies(input_dim, num_classes,
                                      seed=config.run.seed)


def build_model(config: TrainConfig, topologies: Sequence[Topology]
                ) -> SparseMLP | LeNet5 | AlfordLeNet5:
  """The config's module on ``topologies``, initialised from the run's
  seed (``ModelConfig.build``)."""
  seed = config.run.seed
  return config.model.build(topologies, nnx.Rngs(params=seed, dropout=seed + 1))


def make_optimizer(config: TrainConfig, steps_per_epoch: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The config's optax optimiser and its learning-rate schedule
  (``OptimizerConfig.make`` over the run's epochs)."""
  return config.optimizer.make(epochs=config.run.epochs,
                               steps_per_epoch=steps_per_epoch)


def _loss_and_acc(model, x, y):
  logits = model(x)
  loss = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), y).mean()
  acc = (jnp.argmax(logits, -1) == y).mean()
  return loss, acc


def _gather(batch):
  """``(x, y)`` of a batch given as ``(x, y)`` or, for a training set held
  on the device, ``(x_all, y_all, indices)`` (gathered inside the step)."""
  if len(batch) == 3:
    x_all, y_all, sel = batch
    return x_all[sel], y_all[sel]
  return batch


def _step(model, optimizer: nnx.Optimizer, *batch):
  """One optimizer step on ``batch`` (see :func:`_gather`); returns (loss,
  accuracy, blocks moved by this step's rewiring -- 0 without one)."""
  x, y = _gather(batch)
  (loss, acc), grads = nnx.value_and_grad(
      lambda m: _loss_and_acc(m, x, y), has_aux=True)(model)
  if not isinstance(optimizer, SparseOptimizer):
    optimizer.update(model, grads)
    return loss, acc, jnp.zeros((), jnp.int32)
  before = optimizer.rewirings.get_value()
  in_step_gradient = (optimizer.dynamic.rules.needs_gradient
                      and not optimizer.dynamic.after_epoch)
  optimizer.update(model, grads, **(
      {"grow_loss": lambda m: _loss_and_acc(m, x, y)[0]}
      if in_step_gradient else {}))
  return loss, acc, _moved_since(optimizer, before)


def _rewire_after_epoch(model, optimizer: SparseOptimizer, *batch):
  """The update scheduled after the epoch's last step (``update_every=0``),
  after its evaluation; RigL scores its growth on ``batch``. Returns the
  blocks moved."""
  before = optimizer.rewirings.get_value()
  if optimizer.dynamic.rules.needs_gradient:
    x, y = _gather(batch)
    optimizer.rewire(model, grow_loss=lambda m: _loss_and_acc(m, x, y)[0])
  else:
    optimizer.rewire(model)
  return _moved_since(optimizer, before)


def _moved_since(optimizer: SparseOptimizer, rewirings_before):
  return ((optimizer.rewirings.get_value() - rewirings_before)
          * jnp.sum(optimizer.moved.get_value()))


@nnx.jit
def train_step(model, optimizer: nnx.Optimizer, x, y):
  """One step (plain ``nnx.Optimizer``, or ``SparseOptimizer`` with its
  scheduled rewiring); returns (loss, accuracy, blocks moved) of the
  batch. Donates nothing: a caller's references to the model's arrays
  stay valid."""
  return _step(model, optimizer, x, y)


# Training sets up to this size are held on the device for the whole run and
# each batch is gathered inside the step: that saves the host gather and
# transfer of every batch (a SET-MLP epoch in 0.96-0.97x the time on the
# 2-core CPU, BUILD_NOTES.md). Larger ones are batched on the host.
DEVICE_RESIDENT_MAX_BYTES = 1 << 30


# What fit() runs: the step with the model and the optimizer donated.
# Without donation every step wrote a fresh copy of each array it does not
# change -- above all the layers' index arrays, five per layer (a dense
# topology at block size 1 holds 2.8 M entries in each for the 784-1000-
# 1000-1000-10 MLP: 34 MB copied per step, a quarter of its step time) --
# because XLA may not hand an undonated input back as an output.
_fit_step = nnx.jit(_step, donate_argnums=(0, 1))
_fit_rewire_after_epoch = nnx.jit(_rewire_after_epoch, donate_argnums=(0, 1))


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


def build_optimizer(config: TrainConfig, model, tx: optax.GradientTransformation,
                    steps_per_epoch: int) -> nnx.Optimizer:
  """The run's optimizer: ``SparseOptimizer`` (the one rewiring engine) for
  a run whose connections change, else a plain ``nnx.Optimizer``."""
  if not config.sparse.dynamic:
    return nnx.Optimizer(model, tx, wrt=nnx.Param)
  return SparseOptimizer(model, DynamicSparsity(
      config.rewiring, total_steps=config.run.epochs * steps_per_epoch,
      steps_per_epoch=steps_per_epoch).wrap(tx))


def _restore(ckpt: Checkpointer, epoch: int, model, optimizer: nnx.Optimizer
             ) -> int:
  """Loads checkpoint ``epoch`` into model and optimizer; returns its epoch."""
  target = {"model": nnx.to_pure_dict(nnx.state(model, _ckpt_filter())),
            "opt": nnx.to_pure_dict(nnx.state(optimizer)),
            "epoch": 0}
  try:
    restored = ckpt.restore(epoch, jax.tree.map(ocp_abstract, target))
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(
        f"checkpoint {epoch} in {ckpt.directory} does not fit this run's "
        f"model and optimizer ({type(e).__name__}: {str(e)[:300]}). Runs "
        "whose connections changed on the host (SET, RigL and pruning of "
        "the MLP before the one rewiring engine, SparseOptimizer) or that "
        "were given topologies without recording them cannot be resumed or "
        "restored: rerun them (--overwrite)") from e
  ms = nnx.state(model, _ckpt_filter())
  nnx.replace_by_pure_dict(ms, restored["model"])
  nnx.update(model, ms)
  os_ = nnx.state(optimizer)
  nnx.replace_by_pure_dict(os_, restored["opt"])
  nnx.update(optimizer, os_)
  return int(restored["epoch"])


def restore_model(workdir: str, epoch: int | None = None):
  """The model a finished (or interrupted) run left in ``workdir``: rebuilt
  from its ``config.json`` and ``summary.json`` widths, loaded from the
  checkpoint of ``epoch`` (default: the latest), in eval mode. The topology
  is the checkpointed one, so SET/RigL runs give their evolved connections
  and pruning runs the blocks they kept (the pruned ones, stored at zero
  during training, are left out)."""
  paths = {n: os.path.join(workdir, n) for n in ("config.json", "summary.json")}
  for p in paths.values():
    if not os.path.exists(p):
      raise FileNotFoundError(f"{p} is missing: is {workdir!r} a finished "
                              "train_and_evaluate workdir?")
  with open(paths["config.json"]) as f:
    raw = json.load(f)
  # The starting weights only mattered at initialisation: the checkpoint
  # holds the trained ones, so a moved or deleted init file is no obstacle.
  nested = normalised_dict(raw)
  nested["model"]["init_weights"] = None
  config = TrainConfig.from_dict(nested)
  with open(paths["summary.json"]) as f:
    saved = json.load(f)
  # Summaries written before input_dim was recorded: the first width.
  input_dim = saved.get("input_dim", saved["widths"][0])
  recorded = os.path.join(workdir, "topology")
  if raw.get("given_topologies"):
    if not os.path.isdir(recorded):
      raise FileNotFoundError(
          f"{workdir!r} was trained on given topologies but holds no "
          f"record of them ({recorded}; runs of versions before 2026-12-03 "
          "did not write it): rerun it to restore its model")
    topologies = topology_lib.load_stack(recorded, chained=False)
  else:
    topologies = build_topologies(config, input_dim, saved["widths"][-1])
  model = build_model(config, topologies)
  ckpt = Checkpointer(workdir)
  try:
    epoch = ckpt.latest_epoch() if epoch is None else epoch
    if epoch is None:
      raise FileNotFoundError(f"no checkpoint in {ckpt.directory}")
    tx, _ = make_optimizer(config, 1)
    optimizer = build_optimizer(
        config, model, tx,
        _steps_per_epoch(workdir) if config.sparse.dynamic else 1)
    _restore(ckpt, epoch, model, optimizer)
  finally:
    ckpt.close()
  if getattr(optimizer, "alive", None) is not None:
    model = _without_pruned_blocks(config, model, optimizer)
  model.eval()
  return model


def _without_pruned_blocks(config: TrainConfig, model,
                           optimizer: SparseOptimizer):
  """A copy of a pruning run's ``model`` holding only its kept blocks
  (``optimizer.kept_topologies``), every other parameter as trained."""
  compact = build_model(config, optimizer.kept_topologies(model))
  trained = nnx.to_pure_dict(nnx.state(model, _ckpt_filter()))
  small = nnx.to_pure_dict(nnx.state(compact, _ckpt_filter()))
  for path, alive in zip(optimizer.layer_paths, optimizer.alive):
    keep = np.asarray(jax.device_get(alive.get_value()))
    full, kept = _at(trained, path), _at(small, path)
    for name in ("row_idx", "col_idx", "row_ptr", "col_order", "col_ptr"):
      full[name] = kept[name]
    full["values"] = jnp.asarray(np.asarray(full["values"])[keep])
  state = nnx.state(compact, _ckpt_filter())
  nnx.replace_by_pure_dict(state, trained)
  nnx.update(compact, state)
  return compact


def _at(tree: dict, path: tuple) -> dict:
  for key in path:
    tree = tree[key] if key in tree else tree[str(key)]
  return tree


def _steps_per_epoch(workdir: str) -> int:
  """Optimizer steps per epoch of the run in ``workdir``: the first
  metrics row's ``step`` (written before any checkpoint)."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    first = json.loads(f.readline())
  return int(first["step"]) // int(first["epoch"])


def _has_progress(workdir: str) -> bool:
  ckpts = os.path.join(workdir, "checkpoints")
  return (os.path.exists(os.path.join(workdir, "metrics.jsonl"))
          or (os.path.isdir(ckpts) and bool(os.listdir(ckpts))))


def _discard_run(workdir: str) -> None:
  for name in ("checkpoints", "topologies", "metrics.jsonl", "metrics.csv",
               "summary.json", DIVERGED_FILE):
    p = os.path.join(workdir, name)
    if os.path.isdir(p):
      shutil.rmtree(p)
    elif os.path.exists(p):
      os.remove(p)


# Fields a resumed run may change: epochs (to continue training), the
# progress bar, and where the data is read from -- the data's fingerprint,
# not its path, decides whether it is the same data (a clone in another
# place, a relative path instead of an absolute one).
_NOT_COMPARED = ("run.epochs", "run.progress", "data.data_dir",
                 "data.tfds_data_dir", "data.tfds_manual_dir")


def _prepare_workdir(config: TrainConfig, workdir: str, overwrite: bool,
                     fingerprint: dict[str, Any],
                     given_topologies: str | None = None) -> None:
  """Creates ``workdir`` or checks that the run there is this one: same
  config (``epochs`` may grow), same data (fingerprint ``id``) and, where
  the topologies were given as objects, the same topologies (their
  fingerprint, ``given_topologies`` in config.json). A different run is
  refused, or discarded with ``overwrite``. A stored config.json in the
  flat form of earlier versions compares field by field like a nested one
  and is left as it is while nothing changes."""
  path = os.path.join(workdir, "config.json")
  new = config.to_dict()
  if given_topologies is not None:
    new["given_topologies"] = given_topologies
  new_items = {**flat_items(new), "given_topologies": given_topologies}
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    old_fp = old.pop("data_fingerprint", None)
    # Fields added after a run was started compare at their defaults.
    old_items = {**flat_items(normalised_dict(old)),
                 "given_topologies": old.get("given_topologies")}
    changed = sorted(k for k in new_items if old_items[k] != new_items[k])
    diff = [k for k in changed if k not in _NOT_COMPARED]
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
    elif not changed and old_fp is not None:
      return  # the stored file already says this (in its own form)
  try:
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() == 0:
      with atomic_write(path) as f:
        json.dump({**new, "data_fingerprint": fingerprint}, f, indent=1)
  except OSError as e:
    raise WorkdirWriteError(
        e.errno, f"cannot write to workdir {workdir!r}: {e.strerror or e}; "
        "choose a writable --workdir (or free disk space)") from e


def _record_given_topologies(topologies: Sequence[Topology],
                              workdir: str) -> None:
  """Writes the given topologies to ``workdir/topology`` once (process 0;
  a resume was checked against their fingerprint in config.json), whole or
  not at all: into a temporary folder, then renamed."""
  path = os.path.join(workdir, "topology")
  if jax.process_index() != 0 or os.path.isdir(path):
    return
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    shutil.rmtree(tmp, ignore_errors=True)
    topology_lib.save_stack(topologies, tmp)
    os.replace(tmp, path)
  except OSError as e:
    shutil.rmtree(tmp, ignore_errors=True)
    raise WorkdirWriteError(
        e.errno, f"cannot write the given topologies to {path!r}: "
        f"{e.strerror or e}; free disk space or make the workdir writable, "
        "then run the same command again") from e


def _topologies(model, optimizer: nnx.Optimizer) -> list[Topology]:
  """The model's topologies as trained so far (a pruning run's without its
  pruned blocks)."""
  if isinstance(optimizer, SparseOptimizer):
    return optimizer.kept_topologies(model)
  return model.topologies()


def _snapshot(stack: Sequence[Topology], workdir: str, epoch: int) -> None:
  topology_lib.save_stack(stack, os.path.join(workdir, "topologies",
                                              f"epoch_{epoch:03d}"))


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
  ds = config.data.with_validation(
      (dataset or config.load_dataset()).flattened())
  batch_size = config.run.batch_size
  if len(ds.x_train) < batch_size:
    raise ValueError(f"batch_size {batch_size} exceeds the "
                     f"{len(ds.x_train)} training examples")
  given = None
  if topologies is not None:
    topologies = config.model.check_topologies(topologies, ds.input_dim,
                                               ds.num_classes)
    given = parallel.topology_fingerprint(topologies)
  else:
    topologies = build_topologies(config, ds.input_dim, ds.num_classes)
  model = build_model(config, topologies)
  _prepare_workdir(config, workdir, overwrite, ds.fingerprint, given)
  if given is not None:
    _record_given_topologies(topologies, workdir)
  steps_per_epoch = data_lib.num_batches(len(ds.x_train), batch_size)
  epochs = config.run.epochs
  tx, lr_schedule = make_optimizer(config, steps_per_epoch)
  optimizer = build_optimizer(config, model, tx, steps_per_epoch)
  dynamic = isinstance(optimizer, SparseOptimizer)
  rewires_after_epoch = dynamic and optimizer.dynamic.after_epoch

  summary_path = os.path.join(workdir, "summary.json")
  # The workdir holds this config and data (_prepare_workdir checked).
  finished = finished_summary(workdir, epochs)
  if finished is not None:
    print(f"{workdir}: already complete ({epochs} epochs), nothing to do",
          flush=True)
    return finished
  ckpt = Checkpointer(workdir)
  start_epoch = 0
  latest = ckpt.latest_epoch()
  if latest is not None:
    start_epoch = _restore(ckpt, latest, model, optimizer)
  if start_epoch >= epochs and os.path.exists(summary_path):
    ckpt.close()
    print(f"{workdir}: already complete ({epochs} epochs), nothing to do",
          flush=True)
    with open(summary_path) as f:
      return json.load(f)
  if start_epoch:
    print(f"resuming {workdir} from epoch {start_epoch}", flush=True)
  mesh, sharded_arrays = None, 0
  if config.run.data_parallel:
    mesh = parallel.data_mesh()
    parallel.check_batch_size(batch_size, mesh)
    sharded_arrays = parallel.place(mesh, model, optimizer,
                                    shard_blocks=config.run.shard_blocks)
  try:
    writer = MetricWriter(workdir, resume_epoch=start_epoch + 1)
  except OSError as e:
    ckpt.close()
    raise WorkdirWriteError(
        e.errno, f"cannot write the metrics in {workdir}: {e.strerror or e}"
        f"{f' ({e.filename})' if e.filename else ''}; nothing was changed -- "
        "free disk space or make the workdir writable, then run the same "
        "command again") from e
  if config.run.snapshots_at(0) and start_epoch == 0:
    _snapshot(_topologies(model, optimizer), workdir, 0)

  progress = None
  if config.run.progress:
    from tqdm.auto import tqdm
    progress = tqdm
  best_acc = max([r["test_acc"] for r in writer.rows] or [0.0])
  train_s = sum(r.get("epoch_s", 0.0) for r in writer.rows)
  step = start_epoch * steps_per_epoch
  eval_batch = eval_batch_size(model, batch_size)
  model.train()
  resident = mesh is None and (ds.x_train.nbytes + ds.y_train.nbytes
                               <= DEVICE_RESIDENT_MAX_BYTES)
  if resident:
    x_resident, y_resident = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  nnz = model.nnz - (optimizer.pruned_weights() if dynamic else 0)
  last_epoch = epochs if stop_after_epoch is None else min(
      epochs, stop_after_epoch)
  for epoch in range(start_epoch + 1, last_epoch + 1):
    t0 = time.perf_counter()
    losses, accs = [], []
    it = data_lib.batch_indices(len(ds.x_train), batch_size,
                                seed=config.run.seed * 100_003 + epoch)
    if progress is not None:
      it = progress(it, total=steps_per_epoch, desc=f"epoch {epoch}/{epochs}",
                    leave=False)
    moved = []
    # The step with the model and optimizer's graph traversal cached
    # (nnx.cached_partial: ~0.3 ms less Python per step, a few % of a
    # SET-MLP step on 2 cores); not where arrays are placed on a mesh.
    step_fn = (nnx.cached_partial(_fit_step, model, optimizer)
               if mesh is None else functools.partial(_fit_step, model,
                                                      optimizer))
    for sel in it:
      if resident:
        batch = (x_resident, y_resident, sel)
      elif mesh is None:
        batch = (jnp.asarray(ds.x_train[sel]), jnp.asarray(ds.y_train[sel]))
      else:
        batch = parallel.shard_batch(mesh, ds.x_train[sel], ds.y_train[sel])
      loss, acc, moved_now = step_fn(*batch)
      losses.append(loss)
      accs.append(acc)
      moved.append(moved_now)
      step += 1
    losses = np.asarray(jax.device_get(losses))
    if not np.isfinite(losses).all():
      bad = int(np.argmin(np.isfinite(losses)))
      good = ckpt.latest_epoch()
      ckpt.close()
      kept = (f"last good checkpoint: epoch {good} in {ckpt.directory}"
              if good is not None else "no epoch had completed, so there is "
              "no checkpoint")
      message = (
          f"non-finite training loss at epoch {epoch}, step {bad + 1} of the "
          f"epoch; training stopped and nothing was saved for this epoch "
          f"({kept}). Lower --lr or change --init/--optimizer.")
      if jax.process_index() == 0:
        with atomic_write(os.path.join(workdir, DIVERGED_FILE)) as f:
          json.dump({"epoch": epoch, "step_in_epoch": bad + 1,
                     "last_good_epoch": good, "error": message}, f, indent=1)
      raise FloatingPointError(message)
    epoch_s = time.perf_counter() - t0
    train_s += epoch_s
    test_loss, test_acc = evaluate(model, ds.x_test, ds.y_test, eval_batch)
    best_acc = max(best_acc, test_acc)
    val = {}
    if ds.x_val is not None:
      val_loss, val_acc = evaluate(model, ds.x_val, ds.y_val, eval_batch)
      val = {"val_loss": val_loss, "val_acc": val_acc}
    if rewires_after_epoch:  # SET's order: evaluate, then evolve
      # (RigL scores its growth on the epoch's last batch).
      moved.append(_fit_rewire_after_epoch(model, optimizer, *batch))
    rewired = int(np.sum(jax.device_get(moved)))
    nnz = model.nnz - (optimizer.pruned_weights() if dynamic else 0)
    stack = _topologies(model, optimizer) if dynamic else None
    if dynamic:  # every process rewired alike (a cheap fingerprint check)
      parallel.check_same_topology(stack, step=step)
    row = {"epoch": epoch, "step": step,
           "train_loss": float(losses.mean()),
           "train_acc": float(np.mean(jax.device_get(accs))),
           "test_loss": test_loss, "test_acc": test_acc,
           "epoch_s": epoch_s, "wall_s": train_s,
           "samples_per_s": steps_per_epoch * batch_size / epoch_s,
           "nnz_params": nnz, "dense_params": model.dense_equivalent,
           "lr": float(lr_schedule(step)), "rewired_blocks": rewired, **val,
           **(topology_stats(stack) if dynamic else {})}
    if config.run.snapshots_at(epoch):
      _snapshot(stack or model.topologies(), workdir, epoch)
    _save_epoch(ckpt, writer, workdir, epoch, row, losses,
                {"model": nnx.to_pure_dict(nnx.state(model, _ckpt_filter())),
                 "opt": nnx.to_pure_dict(nnx.state(optimizer)),
                 "epoch": epoch})
    print(f"epoch {epoch:3d}  train loss {row['train_loss']:.4f} acc "
          f"{row['train_acc']:.4f}  test loss {test_loss:.4f} acc {test_acc:.4f}"
          + (f"  val acc {val['val_acc']:.4f}" if val else "")
          + f"  {epoch_s:.1f}s  nnz {nnz:,}", flush=True)
  ckpt.close()
  writer.close()
  last = writer.rows[-1] if writer.rows else {}
  epochs_here = len(writer.rows) - start_epoch
  process_s = time.perf_counter() - t_start
  summary = {
      "final_test_acc": last.get("test_acc"), "best_test_acc": best_acc,
      "final_train_loss": last.get("train_loss"), "epochs": epochs,
      "epochs_completed": len(writer.rows),
      **({"final_val_acc": last.get("val_acc"),
          "best_val_acc": max(r["val_acc"] for r in writer.rows)}
         if ds.x_val is not None and writer.rows else {}),
      # Each epoch's time was measured by the process that ran it; the data
      # fingerprint check guarantees every epoch saw this data, so the
      # sample count per epoch is this one.
      "train_seconds": train_s,
      "samples_per_second": (steps_per_epoch * batch_size * len(writer.rows)
                             / train_s if train_s > 0 else None),
      "total_seconds": process_s if start_epoch == 0 else None,
      "resumed_from_epoch": start_epoch, "epochs_this_process": epochs_here,
      "process_seconds": process_s,
      "devices": 1 if mesh is None else int(mesh.devices.size),
      "processes": jax.process_count(),
      # Block-value arrays (and optimizer moments) stored split over the
      # devices at the start (--shard_blocks).
      "sharded_arrays": sharded_arrays,
      "nnz_params": nnz, "dense_params": model.dense_equivalent,
      "density": nnz / model.dense_equivalent,
      "widths": [topologies[0].n_in] + [t.n_out for t in topologies],
      "input_dim": int(ds.input_dim), "model": config.model.name,
      "data_source": ds.source, "data_fingerprint": ds.fingerprint,
      "config": config.to_dict(),
      **{f"device_{k}": v for k, v in device_info().items()},
      **{f"version_{k}": v for k, v in versions().items()},
  }
  if jax.process_index() == 0:
    with atomic_write(os.path.join(workdir, "summary.json")) as f:
      json.dump(summary, f, indent=1)
    if os.path.exists(os.path.join(workdir, DIVERGED_FILE)):
      os.remove(os.path.join(workdir, DIVERGED_FILE))
    plot_curves(writer.rows, os.path.join(workdir, "curves.png"),
                title=f"{config.model.name} {config.model.topology.name} on "
                f"{ds.name}")
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
  # Fixed margins: tight_layout measured every tick label and took half of
  # this function's 0.4 s, which every run of a study pays.
  fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15,
                      top=0.86 if title else 0.95, wspace=0.25)
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
  main thread can install signal handlers; elsewhere this does nothing. A
  process that ignores SIGINT (``nohup``, or started with ``&`` by a
  non-interactive shell) keeps ignoring it here too."""
  if (threading.current_thread() is not threading.main_thread()
      or signal.getsignal(signal.SIGINT) is signal.SIG_IGN):
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


DIVERGED_FILE = "diverged.json"


def diverged_record(workdir: str) -> dict[str, Any] | None:
  """What ``workdir/diverged.json`` says about the run's last attempt
  (``{"epoch", "step_in_epoch", "last_good_epoch", "error"}``, ``error``
  the ``FloatingPointError`` message) where it stopped at a non-finite loss
  and has not completed since; else None."""
  path = os.path.join(workdir, DIVERGED_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


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
