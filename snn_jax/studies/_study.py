"""The one skeleton every multi-run study runs on.

    grid -> runs (restart-safe: finished runs are skipped, interrupted ones
    resume; a report-only pass trains nothing) -> rows -> statistics ->
    plots -> summary with a declared schema, provenance

A study is what differs: its grid (``rows``: one row per run, built with
``guarded`` around ``train``/``train_stack`` so a failure becomes a row),
its statistics and its plots -- nothing else. :func:`run_study` does the
rest the same way for every study: the workdir, the dataset, the rows
table, the failed-run list, the schema check, ``provenance.json`` and
``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Sequence

from snn_jax import analysis
from snn_jax.studies import _runs

Rows = list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Study:
  """A study's own parts.

  Attributes:
    name: its label in ``provenance.json`` (e.g. ``"bourely2017"``).
    rows: ``(config, workdir, dataset) -> rows``: runs the grid into
      ``workdir`` (each run in its own folder) and returns one row per run;
      ``config`` is the study's own frozen dataclass.
    statistics: ``(config, rows, workdir) -> dict``: the summary's own
      fields, in order (it may write further tables into ``workdir``).
    schema: the keys ``statistics`` returns; a study that returns other
      keys fails loudly instead of writing a summary readers cannot rely on.
    rows_file: the rows table's name (``<rows_file>.csv`` / ``.json``).
    failed_keys: the row fields that say which run failed (``summary
      ["failed"]`` lists them with the error).
    plot: ``(config, rows, summary, workdir) -> None``, optional.
    load_dataset: ``config -> dataset``; default ``config.base``'s.
  """
  name: str
  rows: Callable[[Any, str, Any], Rows]
  statistics: Callable[[Any, Rows, str], dict[str, Any]]
  schema: tuple[str, ...]
  rows_file: str
  failed_keys: tuple[str, ...]
  plot: Callable[[Any, Rows, dict[str, Any], str], None] | None = None
  load_dataset: Callable[[Any], Any] | None = None


# Every summary ends with these, after the study's own fields.
COMMON_KEYS = ("runs", "runs_finished", "failed", "provenance")


def run_study(study: Study, config: Any, workdir: str, *, dataset=None,
              report_only: bool | None = None,
              from_committed_rows: bool = False) -> dict[str, Any]:
  """Runs ``study`` with ``config`` into ``workdir`` and returns its summary
  (also written to ``summary.json``): the study's ``schema`` fields, then
  ``runs`` (rows), ``failed`` (the ``failed_keys`` and error of each failed
  run; unfinished runs of a report-only pass are not failures) and
  ``provenance``, where ``runs`` counts the grid's rows and
  ``runs_finished`` those that trained to the end. ``report_only`` (None: as the enclosing
  :func:`~snn_jax.studies._runs.reporting_only` says) trains nothing and
  reports the runs that have finished. ``from_committed_rows`` reads no
  run at all: the statistics, plots and summary are computed again from
  the rows table a finished study wrote into ``workdir`` (:func:`load_rows`)
  -- for studies whose runs are not kept, only their rows (the reduced
  reproductions); ``provenance.json`` then says so. A pass that trained
  no run (report-only, from committed rows, or every run already finished)
  says ``trained_nothing`` and keeps the record of the pass before it --
  or the one that record kept -- as ``runs_provenance``, so the host,
  versions and wall time of the pass that trained survive resumes and
  regenerated reports."""
  committed = load_rows(study, workdir) if from_committed_rows else None
  os.makedirs(workdir, exist_ok=True)
  if dataset is None:
    dataset = (study.load_dataset(config) if study.load_dataset is not None
               else config.base.load_dataset())
  prov = _runs.Provenance(study.name, config, dataset)
  if report_only is None:
    report_only = _runs.report_only_now()
  extra: dict[str, Any] = {}
  old = os.path.join(workdir, "provenance.json")
  before = None
  if os.path.exists(old):
    with open(old) as f:
      before = json.load(f)
  if from_committed_rows:
    rows = committed
    report_only = True
    extra["statistics_from"] = f"{study.rows_file}.json (committed rows)"
    trained = []
  else:
    with _runs.reporting_only(report_only), _runs.counting_trained_runs() as trained:
      rows = study.rows(config, workdir, dataset)
  if not trained:
    # A pass that trained nothing (report-only, from committed rows, or
    # every run finished before) keeps the record of the pass that trained
    # the runs (its host, versions and wall time) beside its own.
    extra["trained_nothing"] = True
    if before is not None:
      extra["runs_provenance"] = before.get("runs_provenance", before)
  analysis.write_rows(rows, workdir, study.rows_file)
  own = study.statistics(config, rows, workdir)
  check_schema(study, own)
  summary = {**own, "runs": len(rows),
             "runs_finished": len(_runs.ok_rows(rows)),
             "failed": failed_entries(rows, study.failed_keys)}
  if study.plot is not None:
    study.plot(config, rows, summary, workdir)
  summary["provenance"] = prov.write(workdir, report_only=report_only,
                                    **extra)
  _runs.write_summary(summary, workdir)
  return summary


def load_rows(study: Study, workdir: str) -> Rows:
  """The rows a finished :func:`run_study` wrote into ``workdir``."""
  path = os.path.join(workdir, f"{study.rows_file}.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: run the {study.name} "
                            f"study into {workdir} first")
  with open(path) as f:
    return json.load(f)


def check_schema(study: Study, fields: dict[str, Any]) -> None:
  """Raises unless ``fields`` holds exactly ``study.schema``, in order."""
  if tuple(fields) != tuple(study.schema):
    raise ValueError(
        f"study {study.name!r} returned the summary fields {list(fields)}, "
        f"but declares {list(study.schema)}: change its statistics or its "
        "schema")
  clash = set(fields) & set(COMMON_KEYS)
  if clash:
    raise ValueError(f"study {study.name!r}: {sorted(clash)} are written by "
                     "run_study")


def failed_entries(rows: Sequence[dict[str, Any]],
                   keys: Sequence[str]) -> list[dict[str, Any]]:
  """Each failed run's identifying fields and its error."""
  return [{k: r.get(k) for k in (*keys, "error")}
          for r in _runs.failed_rows(rows)]
