"""Running the runs of a study: training that resumes and can stand aside
for a report-only pass, failures as rows, provenance and summaries.

A study trains each grid point through :func:`train` (a config) or
:func:`train_stack` (a given topology stack); both skip finished runs and
resume interrupted ones. Inside :func:`reporting_only` they train nothing:
finished runs give their summaries, unfinished ones raise
:class:`NotFinished`, which :func:`guarded` turns into a row -- how a study
of many runs is reported while, or between sessions in which, its runs
continue.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from snn_jax import topology as topology_lib
from snn_jax.nn import LeNet5
from snn_jax.training import (TrainConfig, diverged_record, finished_summary,
                              train_and_evaluate)
from snn_jax.training.config import normalised_dict

class NotFinished(Exception):
  """A report-only pass met a run that has not finished (it is left out of
  the report, not counted as failed)."""


NOT_FINISHED = "not finished (report-only pass)"
_REPORT_ONLY = contextvars.ContextVar("report_only", default=False)


@contextlib.contextmanager
def reporting_only(enabled: bool = True):
  """Within the block, :func:`train` and :func:`train_stack` train nothing:
  they return finished runs' summaries, raise ``FloatingPointError`` for
  runs whose last attempt diverged (``diverged.json``; the same row as the
  training pass gave) and :class:`NotFinished` for the others (which
  :func:`guarded` turns into rows with ``error == NOT_FINISHED``) -- how a study of many runs is reported while, or between
  sessions in which, its runs continue."""
  token = _REPORT_ONLY.set(bool(enabled))
  try:
    yield
  finally:
    _REPORT_ONLY.reset(token)


def report_only_now() -> bool:
  """Whether the current pass only reports (:func:`reporting_only`)."""
  return _REPORT_ONLY.get()


_TRAINED = contextvars.ContextVar("trained_runs", default=None)


@contextlib.contextmanager
def counting_trained_runs():
  """Within the block, :func:`train` and :func:`train_stack` note every
  run they train (started or resumed; not one found finished); yields the
  list of those runs' directories, filled as they start."""
  trained: list[str] = []
  token = _TRAINED.set(trained)
  try:
    yield trained
  finally:
    _TRAINED.reset(token)


def note_training(run_dir: str, epochs: int, overwrite: bool = False) -> None:
  """Notes ``run_dir`` as trained in this pass (:func:`counting_trained_runs`)
  unless it has already finished ``epochs`` (and is not to be overwritten);
  for code that calls ``train_and_evaluate`` itself."""
  trained = _TRAINED.get()
  if trained is not None and (overwrite or finished_summary(run_dir, epochs) is None):
    trained.append(run_dir)


def _finished_or_raise(run_dir: str, workdir: str, epochs: int
                       ) -> dict[str, Any]:
  """A report-only pass's view of the run in ``run_dir``: its summary when
  finished; ``FloatingPointError`` with the recorded message where its last
  attempt diverged (the same row a training pass gives); else
  ``NotFinished``."""
  s = finished_summary(run_dir, epochs)
  if s is not None:
    return s
  record = diverged_record(run_dir)
  if record is not None:
    raise FloatingPointError(record["error"])
  raise NotFinished(workdir)


def train(config: TrainConfig, workdir: str, dataset, *,
          report_only: bool | None = None,
          overwrite: bool = False) -> dict[str, Any]:
  """``train_and_evaluate`` (``overwrite`` passed on), or with
  ``report_only`` the finished run's summary (``NotFinished`` when it has
  not finished): a long study can be reported while, or between sessions
  in which, its runs continue. None: as :func:`reporting_only` says."""
  if report_only is None:
    report_only = _REPORT_ONLY.get()
  if report_only:
    return _finished_or_raise(workdir, workdir, config.run.epochs)
  note_training(workdir, config.run.epochs, overwrite)
  return train_and_evaluate(config, workdir, dataset=dataset,
                            overwrite=overwrite)


def train_stack(base: TrainConfig, stack: Sequence[topology_lib.Topology],
                workdir: str, dataset, *, seed: int,
                report_only: bool | None = None) -> dict[str, Any]:
  """Trains ``base`` on the given topology stack into ``workdir/train``,
  the stack passed to ``train_and_evaluate`` as objects (which records it
  in ``train/topology`` and, by fingerprint, in config.json; the model's
  widths and topology name follow the stack). :func:`stack_of` reads the
  stack back. Returns train_and_evaluate's summary (``report_only``: see
  :func:`train`).

  Runs started before the stack went into ``train/topology``, which passed
  it as a saved folder (``workdir/topology``, named in config.json), continue that
  way: they resume, and are recognised as finished, as they were started.
  """
  run_dir = os.path.join(workdir, "train")
  if report_only is None:
    report_only = _REPORT_ONLY.get()
  if report_only:
    return _finished_or_raise(run_dir, workdir, base.run.epochs)
  note_training(run_dir, base.run.epochs)
  name = stack[0].name if stack[0].name in topology_lib.names() else "pruned"
  model = base.model.name
  if model == "lenet5_alford":  # (conv2 channels, fully connected width)
    hidden = (stack[1].n_out, stack[2].n_out)
  else:
    fc = stack[len(LeNet5.CONV_CHANNELS):] if model == "lenet5" else stack
    hidden = tuple(t.n_out for t in fc[:-1])
  overrides = {"model.hidden": hidden, "run.seed": seed,
               "run.progress": False}
  legacy = _legacy_topology_dir(workdir)
  if legacy is None:
    cfg = base.override({**overrides,
                         "model.topology": topology_lib.TopologyConfig(name)})
    return train_and_evaluate(cfg, run_dir, dataset=dataset, topologies=stack)
  if os.path.isdir(legacy):
    if topology_lib.load_stack(legacy, chained=False) != list(stack):
      raise ValueError(f"{legacy} holds a different topology than this run; "
                       "use a fresh workdir")
  else:  # not committed with the results: regenerated
    topology_lib.save_stack(stack, legacy)
  cfg = base.override({**overrides, "model.topology":
                       topology_lib.TopologyConfig(name, directory=legacy)})
  return train_and_evaluate(cfg, run_dir, dataset=dataset)


def _legacy_topology_dir(workdir: str) -> str | None:
  """``workdir/topology`` where the run in ``workdir/train`` was started by
  an earlier version with its stack passed through that folder (its
  config.json, flat or nested, names a topology directory); else None."""
  path = os.path.join(workdir, "train", "config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    named = normalised_dict(json.load(f))["model"]["topology"]["directory"]
  return os.path.join(workdir, "topology") if named else None


def stack_of(workdir: str, *, chained: bool = False
             ) -> list[topology_lib.Topology]:
  """The topology stack a :func:`train_stack` run in ``workdir`` was given
  (``train/topology``, or ``topology`` for runs started that way by an
  earlier version)."""
  for path in (os.path.join(workdir, "train", "topology"),
               os.path.join(workdir, "topology")):
    if os.path.isdir(path):
      return topology_lib.load_stack(path, chained=chained)
  raise FileNotFoundError(f"no topology of a train_stack run in {workdir!r} "
                          "(has it started?)")


def run_row(summary: dict[str, Any]) -> dict[str, Any]:
  """The fields of a train_and_evaluate summary that go into result rows."""
  return {"final_test_acc": summary["final_test_acc"],
          "best_test_acc": summary["best_test_acc"],
          "final_train_loss": summary["final_train_loss"],
          "density": summary["density"], "nnz_params": summary["nnz_params"],
          "train_seconds": summary["train_seconds"]}


def guarded(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
  """Runs one grid point; a topology that cannot be built (ValueError) or a
  run that diverges (FloatingPointError) becomes a row with ``error`` set
  instead of ending the grid. Rows without error have ``error == ""``."""
  try:
    row = fn()
    row.setdefault("error", "")
  except (ValueError, FloatingPointError) as e:
    row = {"error": f"{type(e).__name__}: {e}"[:300]}
  except NotFinished:
    row = {"error": NOT_FINISHED}
  return row


def failed_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """Rows whose run failed (unfinished runs of a report-only pass are not
  failures)."""
  return [r for r in rows if r.get("error") and r["error"] != NOT_FINISHED]


def ok_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  return [r for r in rows if not r.get("error")]


def _data_record(dataset) -> dict[str, Any]:
  return {"source": getattr(dataset, "source", str(dataset)),
          "name": dataset.name,
          "train_examples": int(len(dataset.y_train)),
          "test_examples": int(len(dataset.y_test)),
          "fingerprint": getattr(dataset, "fingerprint", None)}


class Provenance:
  """Records what a reproduction ran on and how long it took; ``write``
  puts ``provenance.json`` next to the results.

  >>> prov = Provenance("bourely2017", config, dataset)
  >>> ...  # run
  >>> prov.write(workdir, summary)
  """

  def __init__(self, paper: str, config: Any, dataset):
    """``dataset``: the loaded dataset, or a mapping of names to datasets
    for a study over several (each one's record under its name)."""
    self.paper = paper
    self.config = config
    if isinstance(dataset, Mapping):
      self.data = {name: _data_record(ds) for name, ds in dataset.items()}
    else:
      self.data = _data_record(dataset)
    self.started = datetime.datetime.now(datetime.timezone.utc)
    self._t0 = time.perf_counter()

  def record(self) -> dict[str, Any]:
    from snn_jax.utils import device_info, versions
    cfg = self.config
    if dataclasses.is_dataclass(cfg):
      cfg = _jsonable(dataclasses.asdict(cfg))
    return {
        "paper": self.paper,
        "command": " ".join(sys.argv),
        "started_utc": self.started.isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - self._t0, 1),
        "host": {"platform": platform.platform(), **device_info()},
        "versions": versions(),
        "data": self.data,
        "config": cfg,
    }

  def write(self, workdir: str, **extra: Any) -> dict[str, Any]:
    """Writes ``provenance.json`` (``extra`` fields added, e.g.
    ``report_only=True`` for a pass that trained nothing)."""
    rec = {**self.record(), **extra}
    with open(os.path.join(workdir, "provenance.json"), "w") as f:
      json.dump(rec, f, indent=1)
    return rec


def _jsonable(x):
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.integer, np.floating)):
    return x.item()
  return x


def write_summary(summary: dict[str, Any], workdir: str) -> None:
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(_jsonable(summary), f, indent=1)
