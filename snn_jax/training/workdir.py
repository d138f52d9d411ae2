"""The workdir a training run owns (``train_and_evaluate``): what is in it,
how a run is refused, resumed or discarded there, and how every file is
written whole or not at all.

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
import json
import os
import shutil
import signal
import threading
from typing import Any, Sequence

import jax
import numpy as np

from snn_jax import data as data_lib
from snn_jax import topology as topology_lib
from snn_jax.topology import Topology
from snn_jax.training.checkpoint import Checkpointer
from snn_jax.training.config import TrainConfig, flat_items, normalised_dict
from snn_jax.training.metrics import MetricWriter
from snn_jax.utils import atomic_write


def has_progress(workdir: str) -> bool:
  ckpts = os.path.join(workdir, "checkpoints")
  return (os.path.exists(os.path.join(workdir, "metrics.jsonl"))
          or (os.path.isdir(ckpts) and bool(os.listdir(ckpts))))


def discard_run(workdir: str) -> None:
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


def prepare(config: TrainConfig, workdir: str, overwrite: bool,
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
    if old_fp is None and has_progress(workdir):
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
      discard_run(workdir)
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


def record_given_topologies(topologies: Sequence[Topology],
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


def snapshot(stack: Sequence[Topology], workdir: str, epoch: int) -> None:
  topology_lib.save_stack(stack, os.path.join(workdir, "topologies",
                                              f"epoch_{epoch:03d}"))


class WorkdirWriteError(OSError):
  """The workdir could not be written (disk full, read-only, permissions).
  The message says what was saved and how to resume; ``__cause__`` is the
  original error."""

  def __str__(self) -> str:
    return self.strerror or super().__str__()


def save_epoch(ckpt: Checkpointer, writer: MetricWriter, workdir: str,
                epoch: int, row: dict[str, Any], step_losses: np.ndarray,
                state: dict[str, Any]) -> None:
  """Saves one finished epoch: its metrics row, then its checkpoint.

  The row goes first (written atomically), so a crash or kill between the
  two leaves a row without a checkpoint, which a restart drops and redoes
  -- never a checkpoint whose row is missing. Ctrl-C waits until both are
  written. A write that fails (full disk, read-only workdir) raises
  :class:`WorkdirWriteError` saying which epochs are saved."""
  try:
    with interrupts_deferred():
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
def interrupts_deferred():
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
