"""Pieces the paper reproductions share: the reduced data split, a dense
output layer for a given stack, and -- re-exported from the studies tier,
where they live -- how runs are run and recorded (``studies._runs``) and
the statistics over seeds (``studies._stats``)."""

from __future__ import annotations

from typing import Sequence

from snn_jax import data as data_lib
from snn_jax import topology as topology_lib
# How the runs of a study are run, reported and recorded (the studies
# tier's; the reproductions use them through this module).
from snn_jax.studies._runs import (  # noqa: F401
    NOT_FINISHED, NotFinished, Provenance, failed_rows, guarded, ok_rows,
    note_training, report_only_now, reporting_only, run_row, stack_of, train,
    train_stack, write_summary)
from snn_jax.studies._stats import (  # noqa: F401
    ACCURACY, accuracy_verdict, bootstrap_mean_ci, collapsed_runs,
    comparison_verdict, errorbar_ci, group_stats,
    mean_ci, paired_difference, seed_bootstrap_corr, write_markdown_table)
from snn_jax.training import TrainConfig


def reduced_data(base: TrainConfig) -> TrainConfig:
  """The data of a reduced configuration: from an IDX ``--data_dir`` with
  ``data_split="auto"``, the seeded 8,000/2,000 split of the 10,000 test
  images (``"test_only"``) on which the reduced results were committed --
  whether or not the folder also holds the training files. A split chosen
  explicitly (``"canonical"``) is kept."""
  data = base.data
  if data_lib.reads_idx_dir(data.name, data.data_dir) and data.split == "auto":
    return base.override({"data.split": "test_only"})
  return base


def with_dense_output(hidden_stack: Sequence[topology_lib.Topology],
                      num_classes: int) -> list[topology_lib.Topology]:
  """``hidden_stack`` followed by a dense ``n_last -> num_classes`` layer."""
  last = hidden_stack[-1].n_out
  return list(hidden_stack) + [topology_lib.make("dense", last, num_classes)]


def read_data_csv(name: str) -> list[dict[str, str]]:
  """The rows of ``snn_jax/reproduce/data/<name>``: the papers' own numbers,
  kept as data files (each says where its numbers come from in the module
  that reads it)."""
  import csv
  from importlib import resources
  with resources.files("snn_jax.reproduce").joinpath("data", name).open(
      newline="") as f:
    return list(csv.DictReader(f))
