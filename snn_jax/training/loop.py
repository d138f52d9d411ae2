"""``train_and_evaluate``: train a model from a config into a workdir.

Connections that change (SET, RigL, gradual pruning) change through one
engine, ``sparse_training.SparseOptimizer``, on device: inside the step
every ``update_every`` steps, or with ``update_every=0`` after each
epoch's evaluation.

The workdir it writes is described in :mod:`snn_jax.training.workdir`;
checkpoints are read back by :mod:`snn_jax.training.restore`.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from snn_jax import data as data_lib
from snn_jax.sparse_training import SparseOptimizer
from snn_jax.topology import Topology
from snn_jax.training import parallel
from snn_jax.training import workdir as workdir_lib
from snn_jax.training.build import (build_model, build_optimizer,
                                    build_topologies, make_optimizer)
from snn_jax.training.checkpoint import Checkpointer
from snn_jax.training.config import TrainConfig
from snn_jax.training.metrics import MetricWriter, plot_curves, topology_stats
from snn_jax.training.restore import checkpoint_filter, restore_checkpoint
from snn_jax.utils import atomic_write, device_info, versions

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
def eval_step(model: nnx.Module, x, y):
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


def evaluate(model: nnx.Module, x: np.ndarray, y: np.ndarray,
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


def _topologies(model, optimizer: nnx.Optimizer) -> list[Topology]:
  """The model's topologies as trained so far (a pruning run's without its
  pruned blocks)."""
  if isinstance(optimizer, SparseOptimizer):
    return optimizer.kept_topologies(model)
  return model.topologies()


def train_and_evaluate(config: TrainConfig, workdir: str, *,
                       overwrite: bool = False,
                       dataset: data_lib.Dataset | None = None,
                       topologies: Sequence[Topology] | None = None,
                       stop_after_epoch: int | None = None) -> dict[str, Any]:
  """Trains ``config`` into ``workdir`` (:mod:`snn_jax.training.workdir`
  says what it holds); resumes from the last checkpoint there. ``dataset``
  overrides loading (tests, notebooks); ``topologies`` (one ``Topology``
  per weight layer, shapes as the config's model needs) replace the
  config's topology fields -- recorded in config.json by fingerprint, so a
  resume with other topologies is refused; ``stop_after_epoch`` returns
  early after that epoch (a time-sliced or preemptible job continues later
  with the same call). Raising ``epochs`` on a finished run continues it,
  with the schedules recomputed for the new total.

  Returns the summary dict (also written to ``summary.json``).
  """
  t_start = time.perf_counter()
  # Everything that can fail on bad input happens before the workdir is
  # touched, so a corrected rerun into the same workdir is not refused.
  ds, topologies, given = _inputs(config, dataset, topologies)
  model = build_model(config, topologies)
  workdir_lib.prepare(config, workdir, overwrite, ds.fingerprint, given)
  if given is not None:
    workdir_lib.record_given_topologies(topologies, workdir)
  epochs = config.run.epochs
  steps_per_epoch = data_lib.num_batches(len(ds.x_train),
                                         config.run.batch_size)
  tx, lr_schedule = make_optimizer(config, steps_per_epoch)
  optimizer = build_optimizer(config, model, tx, steps_per_epoch)
  finished = workdir_lib.finished_summary(workdir, epochs)
  if finished is not None:
    print(f"{workdir}: already complete ({epochs} epochs), nothing to do",
          flush=True)
    return finished
  ckpt = Checkpointer(workdir)
  latest = ckpt.latest_epoch()
  start_epoch = (0 if latest is None else
                 restore_checkpoint(ckpt, latest, model, optimizer))
  summary_path = os.path.join(workdir, "summary.json")
  if start_epoch >= epochs and os.path.exists(summary_path):
    ckpt.close()
    print(f"{workdir}: already complete ({epochs} epochs), nothing to do",
          flush=True)
    with open(summary_path) as f:
      return json.load(f)
  if start_epoch:
    print(f"resuming {workdir} from epoch {start_epoch}", flush=True)
  run = _Run(config, workdir, ds, model, optimizer, ckpt, steps_per_epoch,
             lr_schedule, start_epoch)
  last_epoch = epochs if stop_after_epoch is None else min(
      epochs, stop_after_epoch)
  for epoch in range(start_epoch + 1, last_epoch + 1):
    run.train_epoch(epoch)
  return run.finish(topologies, time.perf_counter() - t_start)


def _inputs(config: TrainConfig, dataset: data_lib.Dataset | None,
            topologies: Sequence[Topology] | None
            ) -> tuple[data_lib.Dataset, list[Topology], str | None]:
  """The run's data, its topologies, and their fingerprint where they were
  given (else None); raises on bad input before anything is written."""
  ds = config.data.with_validation(
      (dataset or config.load_dataset()).flattened())
  if len(ds.x_train) < config.run.batch_size:
    raise ValueError(f"batch_size {config.run.batch_size} exceeds the "
                     f"{len(ds.x_train)} training examples")
  if topologies is None:
    return ds, build_topologies(config, ds.input_dim, ds.num_classes), None
  topologies = config.model.check_topologies(topologies, ds.input_dim,
                                             ds.num_classes)
  return ds, topologies, parallel.topology_fingerprint(topologies)


class _Run:
  """One process's share of a run, from its first epoch here to its
  summary: where the batches come from, the metrics written so far, and
  one epoch (train, check for divergence, evaluate, rewire after it,
  record, checkpoint) at a time."""

  def __init__(self, config: TrainConfig, workdir: str, ds, model,
               optimizer: nnx.Optimizer, ckpt: Checkpointer,
               steps_per_epoch: int, lr_schedule, start_epoch: int):
    self.config, self.workdir, self.ds = config, workdir, ds
    self.model, self.optimizer, self.ckpt = model, optimizer, ckpt
    self.steps_per_epoch, self.lr_schedule = steps_per_epoch, lr_schedule
    self.start_epoch = start_epoch
    self.dynamic = isinstance(optimizer, SparseOptimizer)
    self.batch_size = config.run.batch_size
    self.mesh, self.sharded_arrays = None, 0
    if config.run.data_parallel:
      self.mesh = parallel.data_mesh()
      parallel.check_batch_size(self.batch_size, self.mesh)
      self.sharded_arrays = parallel.place(
          self.mesh, model, optimizer, shard_blocks=config.run.shard_blocks)
    try:
      self.writer = MetricWriter(workdir, resume_epoch=start_epoch + 1)
    except OSError as e:
      ckpt.close()
      raise workdir_lib.WorkdirWriteError(
          e.errno, f"cannot write the metrics in {workdir}: "
          f"{e.strerror or e}{f' ({e.filename})' if e.filename else ''}; "
          "nothing was changed -- free disk space or make the workdir "
          "writable, then run the same command again") from e
    if config.run.snapshots_at(0) and start_epoch == 0:
      workdir_lib.snapshot(_topologies(model, optimizer), workdir, 0)
    self.best_acc = max([r["test_acc"] for r in self.writer.rows] or [0.0])
    self.train_s = sum(r.get("epoch_s", 0.0) for r in self.writer.rows)
    self.step = start_epoch * steps_per_epoch
    self.eval_batch = eval_batch_size(model, self.batch_size)
    self.nnz = model.nnz - self._pruned()
    self.resident = None
    if self.mesh is None and (ds.x_train.nbytes + ds.y_train.nbytes
                              <= DEVICE_RESIDENT_MAX_BYTES):
      self.resident = (jnp.asarray(ds.x_train), jnp.asarray(ds.y_train))
    model.train()

  def _pruned(self) -> int:
    return self.optimizer.pruned_weights() if self.dynamic else 0

  def _batches(self, epoch: int):
    """The epoch's batches, as the step takes them."""
    ds = self.ds
    it = data_lib.batch_indices(len(ds.x_train), self.batch_size,
                                seed=self.config.run.seed * 100_003 + epoch)
    if self.config.run.progress:
      from tqdm.auto import tqdm
      it = tqdm(it, total=self.steps_per_epoch, leave=False,
                desc=f"epoch {epoch}/{self.config.run.epochs}")
    for sel in it:
      if self.resident is not None:
        yield (*self.resident, sel)
      elif self.mesh is None:
        yield jnp.asarray(ds.x_train[sel]), jnp.asarray(ds.y_train[sel])
      else:
        yield parallel.shard_batch(self.mesh, ds.x_train[sel],
                                   ds.y_train[sel])

  def train_epoch(self, epoch: int) -> None:
    model, optimizer = self.model, self.optimizer
    t0 = time.perf_counter()
    # The step with the model and optimizer's graph traversal cached
    # (nnx.cached_partial: ~0.3 ms less Python per step, a few % of a
    # SET-MLP step on 2 cores); not where arrays are placed on a mesh.
    step_fn = (nnx.cached_partial(_fit_step, model, optimizer)
               if self.mesh is None else
               functools.partial(_fit_step, model, optimizer))
    losses, accs, moved = [], [], []
    for batch in self._batches(epoch):
      loss, acc, moved_now = step_fn(*batch)
      losses.append(loss)
      accs.append(acc)
      moved.append(moved_now)
      self.step += 1
    losses = np.asarray(jax.device_get(losses))
    if not np.isfinite(losses).all():
      self._diverged(epoch, int(np.argmin(np.isfinite(losses))))
    epoch_s = time.perf_counter() - t0
    self.train_s += epoch_s
    ds = self.ds
    test_loss, test_acc = evaluate(model, ds.x_test, ds.y_test,
                                   self.eval_batch)
    self.best_acc = max(self.best_acc, test_acc)
    val = {}
    if ds.x_val is not None:
      val_loss, val_acc = evaluate(model, ds.x_val, ds.y_val, self.eval_batch)
      val = {"val_loss": val_loss, "val_acc": val_acc}
    if self.dynamic and optimizer.dynamic.after_epoch:
      # SET's order: evaluate, then evolve (RigL scores its growth on the
      # epoch's last batch).
      moved.append(_fit_rewire_after_epoch(model, optimizer, *batch))
    self.nnz = model.nnz - self._pruned()
    stack = _topologies(model, optimizer) if self.dynamic else None
    if self.dynamic:  # every process rewired alike (a fingerprint check)
      parallel.check_same_topology(stack, step=self.step)
    row = {"epoch": epoch, "step": self.step,
           "train_loss": float(losses.mean()),
           "train_acc": float(np.mean(jax.device_get(accs))),
           "test_loss": test_loss, "test_acc": test_acc,
           "epoch_s": epoch_s, "wall_s": self.train_s,
           "samples_per_s": self.steps_per_epoch * self.batch_size / epoch_s,
           "nnz_params": self.nnz, "dense_params": model.dense_equivalent,
           "lr": float(self.lr_schedule(self.step)),
           "rewired_blocks": int(np.sum(jax.device_get(moved))), **val,
           **(topology_stats(stack) if self.dynamic else {})}
    if self.config.run.snapshots_at(epoch):
      workdir_lib.snapshot(stack or model.topologies(), self.workdir, epoch)
    workdir_lib.save_epoch(
        self.ckpt, self.writer, self.workdir, epoch, row, losses,
        {"model": nnx.to_pure_dict(nnx.state(model, checkpoint_filter())),
         "opt": nnx.to_pure_dict(nnx.state(optimizer)), "epoch": epoch})
    print(f"epoch {epoch:3d}  train loss {row['train_loss']:.4f} acc "
          f"{row['train_acc']:.4f}  test loss {test_loss:.4f} acc "
          f"{test_acc:.4f}" + (f"  val acc {val['val_acc']:.4f}" if val
                               else "")
          + f"  {epoch_s:.1f}s  nnz {self.nnz:,}", flush=True)

  def _diverged(self, epoch: int, bad: int) -> None:
    """Records a non-finite loss at step ``bad`` (0-based) of ``epoch``
    (``diverged.json``) and raises ``FloatingPointError``; nothing of the
    epoch is saved."""
    good = self.ckpt.latest_epoch()
    self.ckpt.close()
    kept = (f"last good checkpoint: epoch {good} in {self.ckpt.directory}"
            if good is not None else "no epoch had completed, so there is "
            "no checkpoint")
    message = (
        f"non-finite training loss at epoch {epoch}, step {bad + 1} of the "
        f"epoch; training stopped and nothing was saved for this epoch "
        f"({kept}). Lower --lr or change --init/--optimizer.")
    if jax.process_index() == 0:
      with atomic_write(os.path.join(self.workdir,
                                     workdir_lib.DIVERGED_FILE)) as f:
        json.dump({"epoch": epoch, "step_in_epoch": bad + 1,
                   "last_good_epoch": good, "error": message}, f, indent=1)
    raise FloatingPointError(message)

  def finish(self, topologies: Sequence[Topology], process_s: float
             ) -> dict[str, Any]:
    """Closes the run's files and writes ``summary.json`` (process 0),
    ``curves.png``, and removes ``diverged.json``; returns the summary."""
    self.ckpt.close()
    self.writer.close()
    rows, ds, model, config = self.writer.rows, self.ds, self.model, self.config
    last = rows[-1] if rows else {}
    summary = {
        "final_test_acc": last.get("test_acc"), "best_test_acc": self.best_acc,
        "final_train_loss": last.get("train_loss"),
        "epochs": config.run.epochs, "epochs_completed": len(rows),
        **({"final_val_acc": last.get("val_acc"),
            "best_val_acc": max(r["val_acc"] for r in rows)}
           if ds.x_val is not None and rows else {}),
        # Each epoch's time was measured by the process that ran it; the
        # data fingerprint check guarantees every epoch saw this data, so
        # the sample count per epoch is this one.
        "train_seconds": self.train_s,
        "samples_per_second": (self.steps_per_epoch * self.batch_size
                               * len(rows) / self.train_s
                               if self.train_s > 0 else None),
        "total_seconds": process_s if self.start_epoch == 0 else None,
        "resumed_from_epoch": self.start_epoch,
        "epochs_this_process": len(rows) - self.start_epoch,
        "process_seconds": process_s,
        "devices": 1 if self.mesh is None else int(self.mesh.devices.size),
        "processes": jax.process_count(),
        # Block-value arrays (and optimizer moments) stored split over the
        # devices at the start (--shard_blocks).
        "sharded_arrays": self.sharded_arrays,
        "nnz_params": self.nnz, "dense_params": model.dense_equivalent,
        "density": self.nnz / model.dense_equivalent,
        "widths": [topologies[0].n_in] + [t.n_out for t in topologies],
        "input_dim": int(ds.input_dim), "model": config.model.name,
        "data_source": ds.source, "data_fingerprint": ds.fingerprint,
        "config": config.to_dict(),
        **{f"device_{k}": v for k, v in device_info().items()},
        **{f"version_{k}": v for k, v in versions().items()},
    }
    if jax.process_index() == 0:
      with atomic_write(os.path.join(self.workdir, "summary.json")) as f:
        json.dump(summary, f, indent=1)
      diverged = os.path.join(self.workdir, workdir_lib.DIVERGED_FILE)
      if os.path.exists(diverged):
        os.remove(diverged)
      plot_curves(rows, os.path.join(self.workdir, "curves.png"),
                  title=f"{config.model.name} {config.model.topology.name} "
                  f"on {ds.name}")
    return summary
